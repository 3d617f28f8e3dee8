import secrets
import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models

from newsletter.db_indexes import BrinOnPostgresIndex
from papers.models import Paper, Topic


def new_token_key() -> str:
    return secrets.token_hex(16)


def validate_timezone(value: str) -> None:
    if value not in available_timezones():
        raise ValidationError(f"Unknown time zone: {value}")


def available_timezones() -> set[str]:
    return zoneinfo.available_timezones()


class Subscriber(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for confirmation"
        ACTIVE = "active", "Active"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    class Frequency(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        OFF = "off", "Paused"

    class Format(models.TextChoices):
        HTML = "html", "HTML (with plain-text alternative)"
        TEXT = "text", "Plain text only"

    class Weekday(models.IntegerChoices):
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    # Stored normalized (newsletter.services.addresses.email_normalize): one row per mailbox.
    email = models.EmailField(max_length=254, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)

    topics = models.ManyToManyField(Topic, blank=True, related_name="subscribers")
    interests = models.TextField(max_length=1000, blank=True)
    excluded_keywords = models.CharField(max_length=500, blank=True)
    # Comma- or line-separated author names; their papers are always in the digest (matched by
    # papers.services.parsers.author_key, so "Łukasz Kaiser" follows "lukasz kaiser").
    followed_authors = models.TextField(max_length=1000, blank=True)
    frequency = models.CharField(max_length=8, choices=Frequency.choices, default=Frequency.DAILY)
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices, default=Weekday.MONDAY)
    send_hour = models.PositiveSmallIntegerField(default=8)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    papers_per_digest = models.PositiveSmallIntegerField(default=10)
    email_format = models.CharField(max_length=8, choices=Format.choices, default=Format.HTML)
    # Weekly subscribers may ask to hear "nothing new this week" instead of silence.
    notify_empty = models.BooleanField(default=False)

    # The schedule lives on the row (healthchecks' next_report_date): the dispatcher only compares.
    next_send_at = models.DateTimeField(null=True, blank=True)
    # Papers ingested after this instant are candidates for the next digest.
    last_digest_at = models.DateTimeField(null=True, blank=True)

    # Part of every signed link; rotating it revokes all links sent so far.
    token_key = models.CharField(max_length=32, default=new_token_key)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # Start of the current unconfirmed sign-up; unconfirmed sign-ups expire after a week.
    pending_since = models.DateTimeField(null=True, blank=True)
    # Preferences of a sign-up for an unsubscribed address, applied only when the address owner
    # confirms it: until then the row, its preferences and its links stay as they were.
    pending_preferences = models.JSONField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_send_at"],
                name="subscriber_due_idx",
                condition=models.Q(status="active"),
            ),
            models.Index(fields=["status", "created_at"], name="subscriber_status_idx"),
        ]

    def __str__(self) -> str:
        return self.email


class Suppression(models.Model):
    """Addresses we must never mail again (bounces, complaints, unsubscribes). Checked on every send."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        SOFT_BOUNCES = "soft_bounces", "Repeated soft bounces"
        COMPLAINT = "complaint", "Spam complaint"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed at the provider"
        REJECTED = "rejected", "Rejected by the provider"
        MANUAL = "manual", "Suppressed by an operator"

    email = models.EmailField(max_length=254, unique=True)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"


class Delivery(models.Model):
    """One digest for one subscriber and one period: the source of truth for exactly-once sending."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        # Nothing to send (no new paper), or the reader left or was suppressed after the dispatch;
        # last_error says which.
        SKIPPED = "skipped", "Skipped (see last error)"

    class Kind(models.TextChoices):
        DIGEST = "digest", "Digest"
        EMPTY = "empty", "Nothing new notice"

    # No index of its own: the unique (subscriber, period) constraint's index serves subscriber lookups.
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    # The subscriber's local date ("2026-11-23") or ISO week ("2026-W48"): at most one digest each.
    period = models.CharField(max_length=16)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.DIGEST)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # The subscriber's first digest (since confirming): it says so instead of "since your last digest".
    first = models.BooleanField(default=False)
    scheduled_for = models.DateTimeField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    papers = models.ManyToManyField(Paper, through="DeliveryItem", related_name="deliveries")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the delivery's current task was due to run: set by the dispatcher, and pushed to the retry
    # time when a send is deferred. The sweeper re-queues a PENDING row only well past it.
    queued_at = models.DateTimeField(null=True, blank=True)
    # When a worker claimed it, renewed while that worker sends (the lease; see services/outcomes.py).
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    # Set by ESP webhooks (newsletter.services.deliverability.events) after the send.
    bounced = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "period"], name="uniq_delivery_period"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="delivery_status_idx"),
            # The brake's counts of SENT rows of the last 7 days and 24 hours (deliverability/brake.py),
            # every minute: index-only scans of this index (once vacuum has set the visibility map).
            models.Index(
                fields=["sent_at"], condition=models.Q(status="sent"), name="delivery_sent_at_sent_idx"
            ),
            # The stats page's last 30 days (stats_selectors.py): rows arrive in created_at order, so
            # a BRIN index (a few pages) gives the page ranges of those days, not the whole history.
            BrinOnPostgresIndex(fields=["created_at"], name="delivery_created_brin"),
            # The sweeper's two queries, every minute: only the few unfinished rows are indexed.
            models.Index(
                fields=["status", "claimed_at", "queued_at"],
                condition=models.Q(status__in=["pending", "sending"]),
                name="delivery_unfinished_idx",
            ),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.subscriber_id}/{self.period} ({self.status})"


class DeliveryItem(models.Model):
    """A paper in a delivery. Unique per subscriber: the database enforces "never the same paper twice"."""

    # No foreign keys in the database on this table: each was a per-row trigger at commit (a look-up
    # and a FOR KEY SHARE row lock) on the largest write of a chunk, about a third of its PostgreSQL
    # CPU (docs/benchmark/lever-pg.md). Integrity is the application's: Django's CASCADE deletes the
    # rows with their delivery, subscriber or paper (emulated in Python, as for every relation here);
    # the picks INSERT stores only rows whose delivery and paper exist (digest.picks_record);
    # subscriber_delete deletes the subscriber's rows once more; and the sweeper deletes what a delete
    # racing an INSERT left (digest.picks_orphans_delete). Readers skip a pick whose paper is gone.
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="items", db_constraint=False
    )
    # A copy of delivery.subscriber, for the unique (subscriber, paper) constraint, whose index it is
    # (a second index would only slow inserts).
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    position = models.PositiveSmallIntegerField()
    score = models.FloatField()
    reasons = models.JSONField(default=list)

    class Meta:
        ordering = ["delivery", "position"]
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "paper"], name="uniq_paper_per_subscriber"),
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id}#{self.position}: {self.paper_id}"


class EmailEvent(models.Model):
    """An ESP tracking event (anymail), stored once by its event id and processed in Celery."""

    event_id = models.CharField(max_length=255, unique=True)
    event_type = models.CharField(max_length=32)
    email = models.EmailField(max_length=254, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    esp_name = models.CharField(max_length=32, blank=True)
    timestamp = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=500, blank=True)
    bounce_kind = models.CharField(max_length=16, blank=True)
    # False for a report of the bounce mailbox that proved no delivery of ours (no valid VERP address,
    # no Message-ID we sent: services/deliverability/trust.py): kept to be seen, applied to no one,
    # and not counted by the brake. ESP webhooks (behind basic auth) are trusted.
    verified = models.BooleanField(default=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The brake's last 24 hours / 7 days, every minute, and the stats page's 30 days, on a
            # table that keeps every bounce and complaint: rows arrive in received_at order.
            BrinOnPostgresIndex(fields=["received_at"], name="emailevent_received_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class Feedback(models.Model):
    """A reader's "More like this" / "Not for me" on one paper; one row per pair, the latest choice wins."""

    class Choice(models.TextChoices):
        MORE = "more", "More like this"
        LESS = "less", "Not for me"

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="feedback")
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="+")
    choice = models.CharField(max_length=4, choices=Choice.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "paper"], name="uniq_feedback_per_paper"),
        ]

    def __str__(self) -> str:
        return f"{self.subscriber_id}:{self.paper_id} {self.choice}"


class ReaderModel(models.Model):
    """A subscriber's fitted taste (learning.reader_model), stored so that ranking never fits.

    The weights are a sparse vector over the hashed text features (papers.services.text.N_FEATURES):
    `features` holds the int32 column numbers, `weights` the float32 values, both as raw bytes.
    """

    class Kind(models.TextChoices):
        ROCCHIO = "rocchio", "Rocchio centroids"
        CLASSIFIER = "classifier", "Linear classifier"

    subscriber = models.OneToOneField(
        Subscriber, on_delete=models.CASCADE, primary_key=True, related_name="reader_model"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    ratings = models.PositiveIntegerField()
    features = models.BinaryField()
    weights = models.BinaryField()
    # Liked paper ids, latest first: the reasons name the closest one ("Because you liked “…”").
    liked = models.JSONField(default=list)
    # The score at which the model alone makes a paper eligible, relative to the scores the model
    # gives the reader's own positives (learning.reader_model.ELIGIBLE_SHARE).
    threshold = models.FloatField(default=0.25)
    # 0..1: how much evidence the model has (likes, dismissals, papers shown and passed over);
    # ranking's weight of the model grows with it.
    confidence = models.FloatField(default=1.0)
    fitted_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.subscriber_id} ({self.kind}, {self.ratings} ratings)"


class LibraryEntry(models.Model):
    """A paper of the reader's library (learning.library): pasted as an id, a link or a title, or
    imported from a BibTeX or RIS export. What it does follows from what we know of it:

    - `paper` set (a paper of the database): a "More like this" Feedback row made at import;
    - otherwise with an abstract: a positive of the reader model, as a liked paper's text is;
    - otherwise with a title: part of the interest text ranking matches;
    - an id alone of a paper we don't have: nothing yet (shown as waiting).
    """

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="library")
    # Unique per subscriber: "arxiv:<id>", "doi:<doi>" or "title:<title key>" (learning.library.entry_key).
    key = models.CharField(max_length=520)
    arxiv_id = models.CharField(max_length=64, blank=True)
    doi = models.CharField(max_length=255, blank=True)
    title = models.CharField(max_length=500, blank=True)
    abstract = models.TextField(blank=True)
    paper = models.ForeignKey(Paper, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "key"], name="uniq_library_entry"),
        ]

    def __str__(self) -> str:
        return f"{self.subscriber_id}: {self.key}"


class SendingPause(models.Model):
    """The brake (deliverability.brake): while a pause is open (not resumed), nothing is sent and
    deliveries wait in PENDING. Kept after the resume as the record of what happened."""

    started_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=300)
    # The numbers that tripped it: the rate, its window's counts, and the limit it passed.
    rate = models.FloatField()
    limit = models.FloatField()
    events = models.PositiveIntegerField()
    sent = models.PositiveIntegerField()
    is_open = models.BooleanField(default=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    resumed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # At most one open pause: two brake checks at once cannot both trip it.
            models.UniqueConstraint(
                fields=["is_open"], condition=models.Q(is_open=True), name="one_open_sending_pause"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M} {self.reason}"


class WarmupDay(models.Model):
    """Warm-up of a new sending domain (deliverability.warmup): the cap of one UTC day and the
    emails counted against it. The next sending day's cap doubles unless `troubled`."""

    day = models.DateField(unique=True)
    cap = models.PositiveIntegerField()
    used = models.PositiveIntegerField(default=0)
    # The relay pushed back or the brake tripped that day: the cap does not grow after it.
    troubled = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.day}: {self.used}/{self.cap}"
