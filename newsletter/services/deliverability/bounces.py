"""Bounces and complaints without an ESP: read the bounce mailbox, suppress what bounced, by the same
rules as the ESP webhooks (services/deliverability/events.py: hard at once, soft ones counted,
complaints unsubscribe).

Beat runs `bounce_mailbox_process` every NEWSLETTER_BOUNCE_CHECK_MINUTES when NEWSLETTER_BOUNCE_MAILBOX
is set (`imaps://user:password@host/INBOX`, `imap://...` with STARTTLS or on loopback, or
`maildir:///path`: deliverability/mailbox.py). Each message in the folder:

1. is bounded and parsed (deliverability/trust.py: size, parts and nesting are checked first);
2. is classified: an ARF feedback report (RFC 5965: a complaint), a delivery status notification or a
   provider's bounce (flufl.bounce, Mailman's detectors: permanent failures are hard bounces, temporary
   ones soft), an auto-reply or out-of-office note (RFC 3834 headers and the usual subjects: ignored),
   or nothing of ours;
3. acts only on the subscribers it proves we sent to (trust.py: a signed VERP address or Message-ID);
   the subscribers it names without proof are recorded as unverified events that change nothing;
4. becomes one EmailEvent per address, keyed by the report's Message-ID, processed by
   `event_process` like a webhook's: processing the same report twice changes nothing;
5. is moved to the folder "Processed". Any failure on one message (unreadable, over the bounds, a
   detector or a value that breaks) logs it and moves it to "Malformed", so it is never retried in a
   loop and the messages behind it are read. Only a lost database connection stops the run (the
   message stays for the next run).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses

from anymail.signals import EventType
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from flufl.bounce import all_failures

from newsletter.services.deliverability.events import event_insert, event_process
from newsletter.services.deliverability.mailbox import MALFORMED, PROCESSED, mailbox_open
from newsletter.services.deliverability.trust import (
    MAX_MESSAGE_BYTES,
    MalformedMessage,
    db_text,
    message_read,
    unverified_emails,
    verified_emails,
)

logger = logging.getLogger("newsletter.bounces")

_AUTO_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit|vacation|absence)",
    re.IGNORECASE,
)
# RFC 5965 feedback types that say "this is spam" (auth-failure and not-spam are no complaint).
COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other"}


@dataclass(frozen=True)
class BounceReport:
    kind: str  # "hard", "soft", "complaint", "autoreply" or "none" (not a report of ours)
    message_id: str
    emails: tuple[str, ...] = ()  # verified: acted on
    description: str = ""
    unverified: tuple[str, ...] = ()  # named without proof: recorded, acted on never


def bounce_parse(raw: bytes) -> BounceReport:
    """Classify one message of the bounce mailbox and name the subscribers it is about."""
    message = message_read(raw)
    message_id = db_text(message.get("Message-ID", ""), 255).strip() or hashlib.sha256(raw).hexdigest()
    if _is_feedback_report(message):
        kind, named = _complaint(message)
    else:
        kind, named = _bounce(message)
    if kind in ("autoreply", "none"):
        return BounceReport(kind, message_id)
    verified = verified_emails(raw, message)
    unverified = unverified_emails(named, verified)
    if not (verified or unverified):
        return BounceReport("none", message_id)
    return BounceReport(kind, message_id, verified, _description(message, kind), unverified)


def _bounce(message: Message) -> tuple[str, set[str]]:
    is_report = message.get_content_type() == "multipart/report"
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # a detector tripping over odd structure: unreadable, set aside
        raise MalformedMessage(f"bounce detectors failed: {type(exc).__name__}: {exc}") from exc
    if not (temporary or permanent) and not is_report and _is_autoreply(message):
        return "autoreply", set()
    if not (temporary or permanent or is_report or _looks_like_bounce(message)):
        return "none", set()
    named = {address.decode(errors="replace") for address in (permanent or temporary)}
    return ("hard" if permanent else "soft"), named


def _is_feedback_report(message: Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == "feedback-report"
    )


def _complaint(message: Message) -> tuple[str, set[str]]:
    """An ARF report: "complaint" for the spam feedback types, and the addresses it names (providers
    often redact them: the signed tokens of the returned original are what counts)."""
    fields = _feedback_fields(message)
    feedback_type = str(fields.get("Feedback-Type", "")).strip().lower() if fields else ""
    named = {a for _, a in getaddresses(fields.get_all("Original-Rcpt-To", []) if fields else []) if a}
    for part in message.walk():
        if part.get_content_type() == "message/rfc822" and isinstance(part.get_payload(), list):
            for original in part.get_payload():
                named |= {a for _, a in getaddresses(original.get_all("To", [])) if a}
    return ("complaint" if feedback_type in COMPLAINT_TYPES else "none"), named


def _feedback_fields(message: Message) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
    return None


def _is_autoreply(message: Message) -> bool:
    # RFC 3834; then the headers and subjects the common responders use.
    auto_submitted = str(message.get("Auto-Submitted", "")).lower()
    return (
        auto_submitted.startswith("auto-replied")
        or any(message.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"))
        or str(message.get("Precedence", "")).lower() == "auto_reply"
        or bool(_AUTO_SUBJECT.match(str(message.get("Subject", "")).strip()))
    )


def _looks_like_bounce(message: Message) -> bool:
    sender = str(message.get("From", "")).lower()
    subject = str(message.get("Subject", "")).lower()
    return any(s in sender for s in ("mailer-daemon", "postmaster")) or any(
        s in subject for s in ("undeliver", "delivery status", "delivery failure", "returned mail")
    )


def _description(message: Message, kind: str) -> str:
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            for block in part.get_payload() or []:
                status = block.get("Status") if isinstance(block, Message) else None
                diagnostic = block.get("Diagnostic-Code") if isinstance(block, Message) else None
                if status or diagnostic:
                    return db_text(f"bounce mailbox ({kind}): {status or ''} {diagnostic or ''}".strip(), 500)
    return db_text(f"bounce mailbox ({kind}): {message.get('Subject', '')}", 500)


def bounce_handle(*, raw: bytes) -> str:
    """Apply one message of the bounce mailbox once, all or nothing: returns "hard", "soft",
    "complaint", "unverified" (it proved nothing: recorded only), "autoreply", "none" or "duplicate".
    Raises MalformedMessage for what cannot be read."""
    report = bounce_parse(raw)
    if not (report.emails or report.unverified):
        return report.kind
    event_type = EventType.COMPLAINED if report.kind == "complaint" else EventType.BOUNCED
    outcome = "duplicate"
    with transaction.atomic():
        for address in report.emails:
            stored = _event(report, address, event_type, verified=True)
            if stored is not None:
                event_process(event_id=stored)  # the webhooks' rules (events.bounce_apply, _apply)
                outcome = report.kind
        for address in report.unverified:
            if _event(report, address, event_type, verified=False) is not None and outcome == "duplicate":
                outcome = "unverified"
    if report.unverified:
        logger.warning(
            "bounce mailbox: %s report %s names %s without proof of our mail (recorded, not applied)",
            report.kind,
            report.message_id,
            ", ".join(report.unverified),
        )
    return outcome


def _event(report: BounceReport, address: str, event_type: str, *, verified: bool) -> int | None:
    key = hashlib.sha256(f"{report.message_id}\n{address}".encode()).hexdigest()
    stored = event_insert(
        event_id=f"mailbox:{key}" if verified else f"mailbox-unverified:{key}",
        event_type=event_type,
        email=address,
        message_id=report.message_id,
        esp_name="mailbox",
        timestamp=None,
        description=report.description,
        bounce_kind=report.kind if event_type == EventType.BOUNCED else "",
        verified=verified,
    )
    return stored.pk if stored is not None else None


@dataclass
class MailboxRun:
    counts: Counter = field(default_factory=Counter)


def bounce_mailbox_process(*, url: str | None = None) -> MailboxRun:
    """Read every message of the bounce mailbox once (see the module docstring)."""
    url = url if url is not None else settings.NEWSLETTER_BOUNCE_MAILBOX
    run = MailboxRun()
    if not url:
        return run
    box = mailbox_open(url)
    try:
        for key, raw in box.messages(max_bytes=MAX_MESSAGE_BYTES):
            try:
                if raw is None:
                    raise MalformedMessage(f"message larger than {MAX_MESSAGE_BYTES} bytes (not downloaded)")
                outcome = bounce_handle(raw=raw)
            except (OperationalError, InterfaceError):
                raise  # the database is gone, not this message: left in the folder for the next run
            except Exception as exc:  # one message must not stop the run (module docstring)
                logger.warning(
                    "bounce mailbox: message moved to %s: %s: %s",
                    MALFORMED,
                    type(exc).__name__,
                    exc,
                    exc_info=not isinstance(exc, MalformedMessage),
                )
                box.move(key, MALFORMED)
                run.counts["malformed"] += 1
                continue
            box.move(key, PROCESSED)
            run.counts[outcome] += 1
    finally:
        box.close()
    if run.counts:
        logger.info("bounce mailbox: %s", ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items())))
    return run
