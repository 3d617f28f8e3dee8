from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from newsletter.models import (
    Delivery,
    DeliveryItem,
    EmailEvent,
    SendingPause,
    Subscriber,
    Suppression,
    WarmupDay,
)
from newsletter.services.deliverability.brake import brake_release
from newsletter.services.operator import (
    deliveries_resend,
    digest_test_send,
    digests_test_send_to_subscribers,
    subscribers_links_revoke,
    subscribers_suppress,
    subscribers_unsuppress,
)
from newsletter.tasks import send_digest_chunk, sweep_deliveries


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ["email", "status", "frequency", "timezone", "send_hour", "next_send_at", "confirmed_at"]
    list_filter = ["status", "frequency", "email_format", "topics"]
    search_fields = ["email"]
    filter_horizontal = ["topics"]
    readonly_fields = [
        "token_key",
        "created_at",
        "updated_at",
        "confirmed_at",
        "pending_since",
        "unsubscribed_at",
    ]
    actions = [
        "send_test_digest_to_me",
        "send_test_digest_to_subscriber",
        "suppress",
        "unsuppress",
        "revoke_links",
    ]

    @admin.action(description="Send a test digest of the selected subscribers to my address")
    def send_test_digest_to_me(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not request.user.email:
            self.message_user(request, "Your admin user has no email address.", messages.ERROR)
            return
        for subscriber in queryset[:20]:
            count = digest_test_send(subscriber=subscriber, to=request.user.email)
            self.message_user(request, f"Test digest of {subscriber.pk} ({count} papers) sent to you.")

    @admin.action(description="Send a test digest to the selected subscribers")
    def send_test_digest_to_subscriber(self, request: HttpRequest, queryset: QuerySet) -> None:
        sent = digests_test_send_to_subscribers(subscriber_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Sent {sent} test digest(s) to active, unsuppressed subscribers.")

    @admin.action(description="Suppress the selected addresses")
    def suppress(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = subscribers_suppress(subscriber_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Suppressed {count} address(es).")

    @admin.action(description="Remove the selected addresses from the suppression list")
    def unsuppress(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = subscribers_unsuppress(subscriber_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Unsuppressed {count} address(es).")

    @admin.action(description="Revoke every link emailed to the selected subscribers")
    def revoke_links(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = subscribers_links_revoke(subscriber_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Revoked the links of {count} subscriber(s).")


class DeliveryItemInline(admin.TabularInline):
    model = DeliveryItem
    extra = 0
    can_delete = False
    fields = ["position", "paper", "score", "reasons"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "subscriber", "period", "kind", "status", "attempts", "sent_at", "bounced"]
    list_filter = ["status", "kind", "bounced", "created_at"]
    search_fields = ["subscriber__email", "message_id", "period"]
    raw_id_fields = ["subscriber"]
    readonly_fields = ["created_at", "queued_at", "claimed_at", "sent_at", "message_id", "last_error"]
    date_hierarchy = "created_at"
    inlines = [DeliveryItemInline]
    actions = ["resend"]

    @admin.action(description="Resend the selected failed deliveries (same papers)")
    def resend(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = deliveries_resend(delivery_ids=list(queryset.values_list("id", flat=True)))
        if ids:
            send_digest_chunk.delay_on_commit(ids)
        self.message_user(request, f"Queued {len(ids)} failed deliverie(s) again; others were left alone.")


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["email", "reason", "detail", "created_at"]
    list_filter = ["reason", "created_at"]
    search_fields = ["email"]


@admin.register(EmailEvent)
class EmailEventAdmin(admin.ModelAdmin):
    # verified=No: a bounce-mailbox report that proved no mail of ours (forged?); it changed nothing.
    list_display = ["event_type", "bounce_kind", "email", "esp_name", "verified", "timestamp", "processed_at"]
    list_filter = ["event_type", "verified", "bounce_kind", "esp_name"]
    search_fields = ["email", "event_id", "message_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(SendingPause)
class SendingPauseAdmin(admin.ModelAdmin):
    """The brake's pauses: open ones stop all sending until resumed here."""

    list_display = ["started_at", "is_open", "reason", "events", "sent", "resumed_at", "resumed_by"]
    list_filter = ["is_open"]
    actions = ["resume"]

    @admin.action(description="Resume sending (close the selected pauses)")
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        closed = brake_release(
            pause_ids=list(queryset.values_list("id", flat=True)), by=request.user.get_username()
        )
        if closed:
            # The sweeper queues the deliveries that waited; run it now rather than within a minute.
            sweep_deliveries.delay_on_commit()
        self.message_user(request, f"Resumed sending ({closed} pause(s) closed).")

    readonly_fields = [
        "started_at",
        "reason",
        "rate",
        "limit",
        "events",
        "sent",
        "is_open",
        "resumed_at",
        "resumed_by",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(WarmupDay)
class WarmupDayAdmin(admin.ModelAdmin):
    list_display = ["day", "cap", "used", "troubled"]
    ordering = ["-day"]
