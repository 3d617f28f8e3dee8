"""Bounces without an ESP: read the bounce mailbox, suppress what bounced, by the same rules as the
ESP webhooks (services/deliverability/events.py: hard at once, soft ones counted).

Beat runs `bounce_mailbox_process` every NEWSLETTER_BOUNCE_CHECK_MINUTES when NEWSLETTER_BOUNCE_MAILBOX
is set (`imaps://user:password@host/INBOX`, `imap://...` on localhost only, or `maildir:///path`).
Each message in the folder:

1. is classified: a delivery status notification or a provider's bounce (flufl.bounce, Mailman's
   detectors: permanent failures are hard bounces, temporary ones soft), an auto-reply or
   out-of-office note (RFC 3834 headers and the usual subjects: ignored), or nothing of ours;
2. names its subscriber through the signed VERP token of the address it was sent to
   (deliverability/verp.py); without a valid token, only addresses flufl.bounce found that belong to a
   subscriber count, so a stray report cannot suppress a stranger;
3. becomes one EmailEvent per address, keyed by the report's Message-ID, processed by
   `event_process` like a webhook's: processing the same report twice changes nothing;
4. is moved to the folder "Processed"; one that cannot be read is logged and moved to "Malformed",
   so it is never retried in a loop.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import mailbox
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from anymail.signals import EventType
from django.conf import settings
from django.db import DatabaseError
from flufl.bounce import all_failures
from imapclient import IMAPClient

from newsletter.models import Subscriber
from newsletter.services.addresses import email_key
from newsletter.services.deliverability.events import event_insert, event_process
from newsletter.services.deliverability.verp import verp_subscriber_id

logger = logging.getLogger("newsletter.bounces")

PROCESSED, MALFORMED = "Processed", "Malformed"
MAX_MESSAGE_BYTES = 5 * 1024 * 1024
_AUTO_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit|vacation|absence)",
    re.IGNORECASE,
)
_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")


class MalformedMessage(Exception):
    """The message cannot be read as an email at all."""


@dataclass(frozen=True)
class BounceReport:
    kind: str  # "hard", "soft", "autoreply" or "none" (not a bounce)
    message_id: str
    emails: tuple[str, ...] = ()
    description: str = ""


def bounce_parse(raw: bytes) -> BounceReport:
    """Classify one message of the bounce mailbox and name the subscriber addresses it is about."""
    message = _message(raw)
    message_id = str(message.get("Message-ID", "")).strip() or hashlib.sha256(raw).hexdigest()
    is_report = message.get_content_type() == "multipart/report"
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # a detector tripping over odd structure: unreadable, set aside
        raise MalformedMessage(f"bounce detectors failed: {type(exc).__name__}: {exc}") from exc
    if not (temporary or permanent) and not is_report and _is_autoreply(message):
        return BounceReport("autoreply", message_id)
    kind = "hard" if permanent else "soft"
    subscriber_id = _verp_subscriber(message)
    if subscriber_id is not None:
        if not (temporary or permanent or is_report or _looks_like_bounce(message)):
            return BounceReport("none", message_id)
        found = Subscriber.objects.filter(pk=subscriber_id).values_list("email", flat=True).first()
        emails = (found,) if found else ()
    else:
        named = {email_key(a.decode(errors="replace")) for a in (permanent or temporary)}
        emails = tuple(sorted(Subscriber.objects.filter(email__in=named).values_list("email", flat=True)))
        if not emails:
            return BounceReport("none", message_id)
    return BounceReport(kind, message_id, emails, _description(message, kind))


def _message(raw: bytes) -> Message:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message of {len(raw)} bytes is larger than {MAX_MESSAGE_BYTES}")
    # compat32: the policy flufl.bounce's detectors are written for.
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not message.keys() or not (message.get("From") or message.get("Return-Path")):
        raise MalformedMessage("no mail headers")
    return message


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


def _verp_subscriber(message: Message) -> int | None:
    for header in _VERP_HEADERS:
        for _, address in getaddresses(message.get_all(header, [])):
            if (subscriber_id := verp_subscriber_id(address)) is not None:
                return subscriber_id
    return None


def _description(message: Message, kind: str) -> str:
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            for block in part.get_payload() or []:
                status = block.get("Status") if isinstance(block, Message) else None
                diagnostic = block.get("Diagnostic-Code") if isinstance(block, Message) else None
                if status or diagnostic:
                    return f"bounce mailbox ({kind}): {status or ''} {diagnostic or ''}".strip()
    return f"bounce mailbox ({kind}): {message.get('Subject', '')}"[:500]


def bounce_handle(*, raw: bytes) -> str:
    """Apply one message of the bounce mailbox once: returns "hard", "soft", "autoreply", "none" or
    "duplicate". Raises MalformedMessage for what cannot be read."""
    report = bounce_parse(raw)
    if not report.emails:
        return report.kind
    outcome = "duplicate"
    for address in report.emails:
        key = hashlib.sha256(f"{report.message_id}\n{address}".encode()).hexdigest()
        stored = event_insert(
            event_id=f"mailbox:{key}",
            event_type=EventType.BOUNCED,
            email=address,
            message_id=report.message_id,
            esp_name="mailbox",
            timestamp=None,
            description=report.description,
            bounce_kind=report.kind,
        )
        if stored is not None:
            event_process(event_id=stored.pk)  # the webhooks' rules (events.bounce_apply)
            outcome = report.kind
    return outcome


class Mailbox(Protocol):
    def messages(self) -> Iterator[tuple[object, bytes]]: ...
    def move(self, key: object, folder: str) -> None: ...
    def close(self) -> None: ...


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
        for key, raw in box.messages():
            try:
                outcome = bounce_handle(raw=raw)
            except MalformedMessage as exc:
                logger.warning("bounce mailbox: malformed message moved to %s: %s", MALFORMED, exc)
                box.move(key, MALFORMED)
                run.counts["malformed"] += 1
                continue
            except DatabaseError:
                raise  # left in the folder: the next run reads it again
            box.move(key, PROCESSED)
            run.counts[outcome] += 1
    finally:
        box.close()
    if run.counts:
        logger.info("bounce mailbox: %s", ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items())))
    return run


def mailbox_open(url: str) -> Mailbox:
    parts = urlsplit(url)
    if parts.scheme == "maildir":
        return MaildirBox(Path(unquote(parts.path)))
    if parts.scheme in ("imap", "imaps"):
        return ImapBox(url)
    raise ValueError(f"NEWSLETTER_BOUNCE_MAILBOX: unsupported scheme {parts.scheme!r} (imaps, imap, maildir)")


class MaildirBox:
    """A local Maildir (e.g. delivered by Postfix or fetchmail); folders are Maildir++ subfolders."""

    def __init__(self, path: Path) -> None:
        self.box = mailbox.Maildir(path, create=False)

    def messages(self) -> Iterator[tuple[object, bytes]]:
        for key in list(self.box.iterkeys()):
            yield key, self.box.get_bytes(key)

    def move(self, key: object, folder: str) -> None:
        target = (
            self.box.get_folder(folder) if folder in self.box.list_folders() else self.box.add_folder(folder)
        )
        target.add(self.box.get_bytes(key))
        self.box.discard(key)

    def close(self) -> None:
        self.box.close()


class ImapBox:
    """An IMAP folder (IMAPClient); messages are moved (MOVE, or COPY + expunge) once handled."""

    BATCH = 50

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        ssl = parts.scheme == "imaps"
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        self.client = IMAPClient(
            parts.hostname, port=parts.port or (993 if ssl else 143), ssl=ssl, timeout=60
        )
        self.client.login(unquote(parts.username or ""), unquote(parts.password or ""))
        for folder in (PROCESSED, MALFORMED):
            if not self.client.folder_exists(folder):
                self.client.create_folder(folder)
        self.client.select_folder(self.folder)

    def messages(self) -> Iterator[tuple[object, bytes]]:
        uids = self.client.search("ALL")
        for start in range(0, len(uids), self.BATCH):
            fetched = self.client.fetch(uids[start : start + self.BATCH], ["BODY.PEEK[]"])
            for uid, data in fetched.items():
                yield uid, data[b"BODY[]"]

    def move(self, key: object, folder: str) -> None:
        if self.client.has_capability("MOVE"):
            self.client.move([key], folder)
            return
        self.client.copy([key], folder)
        self.client.delete_messages([key])
        self.client.expunge()

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # the session is gone either way
            logger.debug("bounce mailbox: logout failed", exc_info=True)
