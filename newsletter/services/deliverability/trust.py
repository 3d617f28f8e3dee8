"""What a message of the bounce mailbox must prove before it acts, and the bounds it must fit before
it is parsed. Anyone can send mail to the bounce address, so its messages are hostile input.

Authenticity (forged bounces and complaints): a report acts only on a subscriber it proves we sent
mail to, by a validly signed token of ours found anywhere in it (deliverability/verp.py):

- the VERP address the report was sent to (`bounces+<id>.<HMAC>@...`), or the Return-Path of the
  original it carries back (ARF complaints are sent to the feedback-loop address, not to VERP);
- the signed Message-ID of the original (`<digest.<id>.<nonce>.<HMAC>@site>`) in its returned headers.

Both are HMACs under SECRET_KEY with salts of their own, so only a reader of that email (its recipient)
holds them, and they name the subscriber the email went to, whatever address the report names (a
forwarded address fails under another name). The addresses a report names without such a token are
`unverified`: recorded (EmailEvent.verified=False, counted apart), applied to no one, not counted by the
brake. ESP webhooks are trusted as before (deliverability/events.py, behind basic auth).

Poison messages: the size, the number of parts and the nesting are bounded on the raw bytes before the
parse (`message_read`): a thousand nested multiparts made the parser recurse past Python's limit,
120,000 parts cost 55 s of CPU in the detectors. Text that reaches the database goes through `db_text`.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from email.message import Message

from newsletter.models import Subscriber
from newsletter.services.addresses import email_key
from newsletter.services.deliverability.verp import signed_subscriber_ids

# A report carrying back a whole digest (HTML and text, 50 to 200 KB) fits five times; the detectors
# take about 0.45 s of CPU per MB of text (2.2 s for 5 MB, the bound until issue 18).
MAX_MESSAGE_BYTES = 1024 * 1024
# A bounce or a complaint has 2 to 10 parts, nested 2 to 4 deep (the returned digest included).
MAX_PARTS = 1000
MAX_CONTAINERS = 40
# Addresses recorded per unverified report: enough to see who was aimed at, bounded for a flood.
MAX_UNVERIFIED = 20

# Every part of a multipart starts at a boundary line "--..."; the parser splits lines at CR, LF and
# CRLF alike, so a lone CR must not hide one from the count.
_BOUNDARY_LINE = re.compile(rb"(?:\A|[\r\n])--")
# Every level of nesting is a part whose Content-Type is multipart/* or message/* (a multipart/digest's
# parts are message/rfc822 by default, but each is a part of a declared multipart: at most twice these).
_CONTAINER = re.compile(
    rb"(?i)(?:\A|[\r\n])content-type:(?:[ \t]|(?:\r\n|\r|\n)[ \t])*(?:multipart|message)/"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class MalformedMessage(Exception):
    """The message cannot be read as an email, or is larger or deeper than a report can be."""


def message_read(raw: bytes) -> Message:
    """Parse one message of the bounce mailbox once it fits the bounds (MalformedMessage if not)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message of {len(raw)} bytes is larger than {MAX_MESSAGE_BYTES}")
    if (containers := len(_CONTAINER.findall(raw))) > MAX_CONTAINERS:
        raise MalformedMessage(f"{containers} nested or multipart parts: more than {MAX_CONTAINERS}")
    if (parts := len(_BOUNDARY_LINE.findall(raw))) > MAX_PARTS:
        raise MalformedMessage(f"message of up to {parts} parts: more than {MAX_PARTS}")
    # compat32: the policy flufl.bounce's detectors are written for.
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not message.keys() or not (message.get("From") or message.get("Return-Path")):
        raise MalformedMessage("no mail headers")
    return message


def db_text(value: object, limit: int) -> str:
    """Text from a message made fit for the database: bytes that were not ASCII (kept as surrogates by
    the parser) read as UTF-8, NUL and other control characters dropped (PostgreSQL refuses NUL), cut
    to the column's length."""
    text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return unicodedata.normalize("NFC", _CONTROL.sub("", text))[:limit]


def verified_emails(raw: bytes, message: Message) -> tuple[str, ...]:
    """The addresses of the subscribers this message proves we sent an email to (module docstring)."""
    ids = signed_subscriber_ids(raw.decode("ascii", "replace"))
    for part in message.walk():
        # A returned original or its headers may be base64 or quoted-printable encoded.
        encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        if not part.is_multipart() and encoding in ("base64", "quoted-printable"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                ids |= signed_subscriber_ids(payload.decode("ascii", "replace"))
    if not ids:
        return ()
    return tuple(sorted(Subscriber.objects.filter(pk__in=ids).values_list("email", flat=True)))


def unverified_emails(named: set[str], verified: tuple[str, ...]) -> tuple[str, ...]:
    """The subscribers a report names without proof: recorded apart, never acted on."""
    candidates = {email_key(db_text(address, 254)) for address in named} - set(verified)
    if not candidates:
        return ()
    found = Subscriber.objects.filter(email__in=candidates).order_by("email").values_list("email", flat=True)
    return tuple(found[:MAX_UNVERIFIED])
