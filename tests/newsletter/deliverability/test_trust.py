"""What a message of the bounce mailbox must prove before it acts (deliverability.trust, bounces):
forged reports, bad and foreign signatures, reports naming several readers, ARF complaints, the
brake counting only what is verified, and the bounds a poison message meets before it is parsed."""

from __future__ import annotations

import pytest
from anymail.signals import EventType
from django.utils import timezone
from django.utils.http import int_to_base36

from newsletter.models import Delivery, EmailEvent, Subscriber, Suppression
from newsletter.services.deliverability.bounces import bounce_handle, bounce_parse
from newsletter.services.deliverability.brake import brake_check
from newsletter.services.deliverability.trust import MalformedMessage, db_text, message_read
from newsletter.services.deliverability.verp import verp_address
from newsletter.services.emails import build_email
from tests.factories import DeliveryFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

BOUNCE_ADDRESS = "bounces@digest.example.org"


@pytest.fixture(autouse=True)
def verp(settings) -> None:
    settings.NEWSLETTER_BOUNCE_ADDRESS = BOUNCE_ADDRESS


def sent_message_id(subscriber: Subscriber) -> str:
    """The Message-ID of an email we really sent to this subscriber (the one email builder's)."""
    message = build_email(
        "confirm", to=subscriber.email, context={"confirm_url": "https://x/"}, bounce_id=subscriber.pk
    )
    return message.message()["Message-ID"]


def dsn(*recipients: str, to: str = BOUNCE_ADDRESS, returned: str = "", message_id: str = "r1") -> bytes:
    """A plain RFC 3464 report anyone can write: it fails each of `recipients` permanently; `returned`
    is the header block of the "original" message it carries back."""
    blocks = "\n".join(
        f"Final-Recipient: rfc822; {r}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{r}>: User unknown\n"
        for r in recipients
    )
    returned_part = f"--B\nContent-Type: text/rfc822-headers\n\n{returned}\n" if returned else ""
    return (
        f"From: MAILER-DAEMON@mx.example\nTo: {to}\nSubject: Undelivered Mail Returned to Sender\n"
        f"Message-ID: <{message_id}@mx.example>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        f"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n{blocks}\n"
        f"{returned_part}--B--\n"
    ).encode()


def arf(
    *, to: str = BOUNCE_ADDRESS, returned: str, recipient: str = "", feedback_type: str = "abuse"
) -> bytes:
    """An RFC 5965 feedback report (a mailbox provider's feedback loop: "this is spam")."""
    rcpt = f"Original-Rcpt-To: {recipient}\n" if recipient else ""
    return (
        f"From: feedbackloop@provider.example\nTo: {to}\nSubject: Abuse report\n"
        "Message-ID: <arf-1@provider.example>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\n\n'
        "--F\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
        f"--F\nContent-Type: message/feedback-report\n\nFeedback-Type: {feedback_type}\n"
        f"User-Agent: FBL/1.0\nVersion: 1\n{rcpt}\n"
        f"--F\nContent-Type: message/rfc822\n\n{returned}\n\nThe digest.\n\n--F--\n"
    ).encode()


def suppressed() -> dict[str, str]:
    return dict(Suppression.objects.values_list("email", "reason"))


# --- item 1: a bounce acts only on a delivery we sent ------------------------------------------


def test_a_forged_report_naming_a_reader_suppresses_no_one_and_is_counted_apart() -> None:
    victim = SubscriberFactory(email="victim@example.com")

    assert bounce_handle(raw=dsn(victim.email)) == "unverified"

    assert suppressed() == {}
    event = EmailEvent.objects.get()
    assert (event.email, event.verified, event.bounce_kind) == (victim.email, False, "hard")
    assert event.processed_at is not None  # nothing left to apply


def test_a_verp_address_with_a_bad_signature_proves_nothing() -> None:
    victim = SubscriberFactory()
    genuine = verp_address(subscriber_id=victim.pk)
    local, _, domain = genuine.partition("@")
    forged = f"{local[:-6]}AAAAAA@{domain}"

    assert bounce_handle(raw=dsn(victim.email, to=forged)) == "unverified"
    assert suppressed() == {}


def test_a_valid_verp_address_acts_on_its_own_reader_only_not_on_the_one_the_report_names() -> None:
    attacker, victim = SubscriberFactory(), SubscriberFactory()

    outcome = bounce_handle(raw=dsn(victim.email, to=verp_address(subscriber_id=attacker.pk)))

    # The envelope names the reader the email went to (a forwarded address may fail under another
    # name); the address the report names has no proof, so it stays.
    assert outcome == "hard"
    assert suppressed() == {attacker.email: Suppression.Reason.HARD_BOUNCE}
    unverified = EmailEvent.objects.get(verified=False)
    assert unverified.email == victim.email


def test_a_report_naming_four_readers_suppresses_none_of_them() -> None:
    readers = SubscriberFactory.create_batch(4)

    assert bounce_handle(raw=dsn(*(r.email for r in readers))) == "unverified"

    assert suppressed() == {}
    assert sorted(EmailEvent.objects.filter(verified=False).values_list("email", flat=True)) == sorted(
        r.email for r in readers
    )


def test_a_report_with_a_valid_verp_address_and_four_names_suppresses_only_the_verp_reader() -> None:
    owner, *others = SubscriberFactory.create_batch(4)
    raw = dsn(owner.email, *(o.email for o in others), to=verp_address(subscriber_id=owner.pk))

    assert bounce_handle(raw=raw) == "hard"
    assert suppressed() == {owner.email: Suppression.Reason.HARD_BOUNCE}


def test_the_message_id_we_sent_in_the_returned_headers_verifies_a_report_without_verp() -> None:
    reader = SubscriberFactory()
    returned = f"From: digest@digest.example.org\nTo: {reader.email}\nMessage-ID: {sent_message_id(reader)}"

    report = bounce_parse(dsn(reader.email, returned=returned))

    assert (report.kind, report.emails, report.unverified) == ("hard", (reader.email,), ())
    assert bounce_handle(raw=dsn(reader.email, returned=returned)) == "hard"
    assert suppressed() == {reader.email: Suppression.Reason.HARD_BOUNCE}


def test_a_message_id_sent_to_someone_else_or_made_up_verifies_nobody_else() -> None:
    attacker, victim = SubscriberFactory(), SubscriberFactory()
    theirs = sent_message_id(attacker)
    prefix, _, nonce, signed = theirs.split(".", 3)
    signature, _, domain = signed.partition("@")
    made_up = f"{prefix}.{int_to_base36(victim.pk)}.{nonce}.{'x' * len(signature)}@{domain}"
    re_aimed = f"{prefix}.{int_to_base36(victim.pk)}.{nonce}.{signed}"
    for message_id in (made_up, re_aimed):
        returned = f"To: {victim.email}\nMessage-ID: {message_id}"
        assert bounce_parse(dsn(victim.email, returned=returned)).emails == ()
    assert bounce_handle(raw=dsn(victim.email, returned=f"Message-ID: {theirs}")) == "hard"
    assert victim.email not in suppressed()


def test_a_message_id_signed_before_a_key_rotation_still_verifies(settings) -> None:
    reader = SubscriberFactory()
    returned = f"Message-ID: {sent_message_id(reader)}"
    settings.SECRET_KEY_FALLBACKS, settings.SECRET_KEY = [settings.SECRET_KEY], "a-new-key-" + "x" * 50
    assert bounce_parse(dsn(reader.email, returned=returned)).emails == (reader.email,)
    settings.SECRET_KEY_FALLBACKS = []
    assert bounce_parse(dsn(reader.email, returned=returned)).emails == ()


def test_sixty_forged_reports_no_longer_trip_the_brake(settings) -> None:
    settings.NEWSLETTER_BRAKE_MIN_SENT = 1000
    attacker = SubscriberFactory(status=Subscriber.Status.PENDING)
    reader, now = SubscriberFactory(), timezone.now()
    Delivery.objects.bulk_create(
        Delivery(
            subscriber=reader,
            period=f"p{n}",
            status=Delivery.Status.SENT,
            sent_at=now,
            scheduled_for=now,
            window_start=now,
            window_end=now,
        )
        for n in range(1000)
    )
    for n in range(60):
        assert bounce_handle(raw=dsn(attacker.email, message_id=f"forged-{n}")) == "unverified"

    assert brake_check() is None
    assert EmailEvent.objects.filter(verified=False).count() == 60


def test_sixty_genuine_reports_for_one_address_count_once_toward_the_brake(settings) -> None:
    """The attacker's own confirmation email carries a valid VERP address: replaying it sixty times
    is still one address that bounced."""
    settings.NEWSLETTER_BRAKE_MIN_SENT = 20
    attacker = SubscriberFactory(status=Subscriber.Status.PENDING)
    for _ in range(20):
        DeliveryFactory(status=Delivery.Status.SENT, sent_at=timezone.now())
    own_verp = verp_address(subscriber_id=attacker.pk)
    for n in range(60):
        bounce_handle(raw=dsn(attacker.email, to=own_verp, message_id=f"replay-{n}"))

    assert EmailEvent.objects.filter(verified=True).count() == 60
    assert brake_check() is None  # 1 of 20 = 5%, not above 5%


# --- item 5: ARF complaints ----------------------------------------------------------------------


def test_a_verified_arf_complaint_unsubscribes_and_counts_toward_the_complaint_brake(settings) -> None:
    settings.NEWSLETTER_BRAKE_MIN_SENT = 20
    reader = SubscriberFactory(status=Subscriber.Status.ACTIVE)
    for _ in range(20):
        DeliveryFactory(status=Delivery.Status.SENT, sent_at=timezone.now())
    returned = (
        f"Return-Path: <{verp_address(subscriber_id=reader.pk)}>\nFrom: digest@digest.example.org\n"
        "To: redacted@provider.example\nSubject: Your paper digest"
    )

    assert bounce_handle(raw=arf(returned=returned)) == "complaint"

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    assert suppressed() == {reader.email: Suppression.Reason.COMPLAINT}
    event = EmailEvent.objects.get()
    assert (event.event_type, event.verified, event.bounce_kind) == (EventType.COMPLAINED, True, "")
    assert brake_check() is not None  # 1 of 20 is above 0.3%


def test_an_arf_complaint_sent_to_a_verp_address_is_a_complaint_not_a_soft_bounce() -> None:
    reader = SubscriberFactory(status=Subscriber.Status.ACTIVE)
    raw = arf(to=verp_address(subscriber_id=reader.pk), returned="To: redacted@provider.example")

    assert bounce_handle(raw=raw) == "complaint"
    assert suppressed() == {reader.email: Suppression.Reason.COMPLAINT}
    assert EmailEvent.objects.get().bounce_kind == ""


def test_an_arf_complaint_verified_by_the_message_id_works_without_verp(settings) -> None:
    settings.NEWSLETTER_BOUNCE_ADDRESS = ""
    reader = SubscriberFactory(status=Subscriber.Status.ACTIVE)
    returned = f"From: digest@digest.example.org\nTo: {reader.email}\nMessage-ID: {sent_message_id(reader)}"

    assert bounce_handle(raw=arf(returned=returned)) == "complaint"
    assert suppressed() == {reader.email: Suppression.Reason.COMPLAINT}


def test_an_unverified_arf_complaint_is_counted_apart_and_changes_nothing(settings) -> None:
    settings.NEWSLETTER_BRAKE_MIN_SENT = 20
    victim = SubscriberFactory(status=Subscriber.Status.ACTIVE)
    for _ in range(20):
        DeliveryFactory(status=Delivery.Status.SENT, sent_at=timezone.now())

    outcome = bounce_handle(raw=arf(returned=f"To: {victim.email}", recipient=victim.email))

    assert outcome == "unverified"
    victim.refresh_from_db()
    assert victim.status == Subscriber.Status.ACTIVE and suppressed() == {}
    event = EmailEvent.objects.get()
    assert (event.event_type, event.verified) == (EventType.COMPLAINED, False)
    assert brake_check() is None


def test_an_arf_report_that_is_not_a_complaint_changes_nothing() -> None:
    reader = SubscriberFactory()
    returned = f"Return-Path: <{verp_address(subscriber_id=reader.pk)}>"
    assert bounce_handle(raw=arf(returned=returned, feedback_type="auth-failure")) == "none"
    assert suppressed() == {} and EmailEvent.objects.count() == 0


# --- item 2: poison messages are bounded before they are parsed ---------------------------------

HEAD = b"From: MAILER-DAEMON@mx.example\nTo: bounces@digest.example.org\nMessage-ID: <p@mx.example>\n"


def nested(levels: int) -> bytes:
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (n, n) for n in range(levels)
    )
    closing = b"".join(b"\n--b%d--\n" % n for n in reversed(range(levels)))
    return HEAD + opening + b"Content-Type: text/plain\n\nx\n" + closing


def many_parts(count: int) -> bytes:
    parts = b"".join(b"--b\nContent-Type: text/plain\n\n%d\n" % n for n in range(count))
    return HEAD + b'Content-Type: multipart/mixed; boundary="b"\n\n' + parts + b"--b--\n"


def test_a_thousand_nested_multiparts_are_refused_before_the_parse() -> None:
    with pytest.raises(MalformedMessage, match="nest"):
        message_read(nested(1000))
    with pytest.raises(MalformedMessage, match="nest"):  # hidden behind lone CRs and folded headers
        message_read(nested(1000).replace(b"Content-Type: multipart", b"content-type:\r multipart"))
    with pytest.raises(MalformedMessage, match="nest"):  # deep, with few parts
        message_read(nested(60))


def test_a_message_of_120000_parts_is_refused_before_the_parse() -> None:
    # Today it is parsed, then walked by every detector: 55 s of CPU.
    with pytest.raises(MalformedMessage, match="larger"):  # 4.3 MB
        message_read(many_parts(120_000))
    with pytest.raises(MalformedMessage, match="parts"):  # 170 KB
        message_read(many_parts(5_000))


def test_an_ordinary_report_and_a_few_levels_pass_the_bounds() -> None:
    assert message_read(nested(5)).is_multipart()
    assert message_read(many_parts(200)).is_multipart()
    assert message_read(dsn("a@example.org")).get_content_type() == "multipart/report"


def test_values_are_cleaned_before_they_reach_the_database() -> None:
    assert db_text("<a\x00b@x>", 255) == "<ab@x>"
    assert db_text("caf\udcc3\udca9 \x07bell", 255) == "café bell"
    assert db_text("x" * 600, 500) == "x" * 500


def test_a_nul_byte_in_the_message_id_is_stored_without_it() -> None:
    reader = SubscriberFactory()
    raw = dsn(reader.email, to=verp_address(subscriber_id=reader.pk), message_id="nul\x00id")

    assert bounce_handle(raw=raw) == "hard"
    assert EmailEvent.objects.get().message_id == "<nulid@mx.example>"
