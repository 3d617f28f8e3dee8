"""The one email builder. Every email the service sends (confirmation, links, digests) is made here.

`build_email` renders `templates/emails/<name>.subject.txt`, `<name>.txt` and `<name>.html`, inlines
the CSS of the HTML part with premailer, and adds the headers receiving servers look for:
Message-ID, List-Id, and for list mail `List-Unsubscribe` + `List-Unsubscribe-Post` (RFC 8058).
Digests pass parts they rendered with the same templates through a faster path
(newsletter.services.digest_templates) as `rendered`.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from email._policybase import Compat32
from email.generator import NLCRE, BytesGenerator
from email.message import Message
from email.utils import make_msgid
from functools import lru_cache, partial
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import dkim
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from premailer import Premailer

from newsletter.services.deliverability.verp import message_id_make, verp_address
from newsletter.services.mime import WrittenMessage, written_parts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str | None  # None for plain-text-only subscribers


def inline_css(html: str) -> str:
    """Move <style> rules into style attributes; media queries stay in a <style> block."""
    return Premailer(
        html,
        allow_network=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        remove_classes=False,
        strip_important=False,
    ).transform()


def single_line(value: str) -> str:
    """Header values are one line: collapse the whitespace a template leaves (no header injection)."""
    return " ".join(value.split())


def render_email(template_prefix: str, context: dict, *, html: bool = True) -> RenderedEmail:
    base = f"emails/{template_prefix}"
    return RenderedEmail(
        subject=single_line(render_to_string(f"{base}.subject.txt", context)),
        text=render_to_string(f"{base}.txt", context),
        html=inline_css(render_to_string(f"{base}.html", context)) if html else None,
    )


def site_domain() -> str:
    return urlsplit(settings.SITE_URL).hostname or "localhost"


DKIM_SIGNED_HEADERS = [
    b"from", b"to", b"subject", b"date", b"message-id", b"list-id",
    b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version", b"content-type",
]  # fmt: skip


class _HeaderPolicy(Compat32):
    """compat32, the policy Django's messages use, writing a header that needs no folding directly.

    compat32 runs every header through email.header.Header to fold it, which for the usual header
    (ASCII, one line, shorter than the line limit) gives back `name: value` unchanged: a third of the
    serialization time of a digest, spent on its 15 headers. An ASCII value without any whitespace
    that is too long (a digest's List-Unsubscribe) goes onto one continuation line, as Header puts
    it: another third. Anything else (non-ASCII, long with spaces, or with line breaks) still goes
    through compat32 itself (tests/newsletter/test_emails.py compares the two).
    """

    def fold_binary(self, name: str, value: object) -> bytes:
        if type(value) is str and value.isascii() and self.max_line_length:
            if len(name) + 2 + len(value) <= self.max_line_length:
                if not _NEEDS_FOLDING.search(value):
                    return f"{name}: {value}{self.linesep}".encode("ascii")
            elif not _WHITESPACE.search(value):
                # One word too long for the line (the List-Unsubscribe URL): Header has no place to
                # fold it, and moves it whole onto a continuation line of its own.
                return f"{name}: {self.linesep} {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


# Line breaks and runs of whitespace are what compat32's folding would rewrite; leading or trailing
# whitespace too, and any whitespace but a space (str.splitlines breaks lines at \v, \f, \x1c-\x1e).
# Values with none of them come out as they are.
_NEEDS_FOLDING = re.compile(r"[^\S ]|\s\s|^\s|\s$")
# Header folds only at spaces and tabs, and splits lines at what str.splitlines splits at: all of it is
# \s (the ASCII ones: space, \t, \n, \r, \v, \f and \x1c-\x1f).
_WHITESPACE = re.compile(r"\s")
HEADER_POLICY = _HeaderPolicy()


class _BytesGenerator(BytesGenerator):
    """BytesGenerator writing a text part's lines in one call rather than two calls per line: the
    same bytes (tests/newsletter/test_emails.py compares them), a sixth of a digest's build CPU less.
    The parts are flattened by clones of the generator, so every part of the message gets it."""

    def _write_lines(self, lines: str) -> None:
        # The stock loop writes each line then the separator, and the last line only if not empty:
        # exactly the lines joined with the separator.
        if lines:
            self.write(self._NL.join(NLCRE.split(lines)))


def message_bytes(message: Message, unixfrom: bool = False, linesep: str = "\n") -> bytes:
    """Django's SafeMIME*.as_bytes, through _BytesGenerator."""
    out = BytesIO()
    _BytesGenerator(out, mangle_from_=False).flatten(message, unixfrom=unixfrom, linesep=linesep)
    return out.getvalue()


class ListEmail(EmailMultiAlternatives):
    """EmailMultiAlternatives that DKIM-signs itself when a key is configured, its bytes written by
    newsletter.services.mime where it can (the digest and every email built here)."""

    def message(self):
        # A random boundary cannot occur in the parts; without one, the generator scans every
        # part's text to pick one that does not (a fifth of the MIME serialization time). 96 bits
        # keep the Content-Type line under 78 characters: no folding through email.header.
        boundary = f"=_{secrets.token_hex(12)}"
        parts = written_parts(self)
        if parts is not None:
            msg = WrittenMessage(self, policy=HEADER_POLICY, boundary=boundary, parts=parts)
        else:
            msg = super().message()
            msg.policy = HEADER_POLICY  # the generator hands it down to the parts
            if msg.is_multipart():
                msg.set_boundary(boundary)
            # Backends serialize with msg.as_bytes(linesep=...): the same bytes, built faster.
            msg.as_bytes = partial(message_bytes, msg)
        key = _dkim_key()
        if key:
            signature = dkim.sign(
                msg.as_bytes(linesep="\r\n"),
                settings.DKIM_SELECTOR.encode(),
                settings.DKIM_DOMAIN.encode(),
                key,
                include_headers=DKIM_SIGNED_HEADERS,
                # Relaxed headers: the unfolding below must not change what was signed. Relaxed body:
                # relays that re-wrap lines or trim trailing spaces do not break the signature.
                canonicalize=(b"relaxed", b"relaxed"),
            )
            name, _, value = signature.decode().partition(":")
            # dkim.sign folds the value with CRLFs, which Django refuses in a header (BadHeaderError:
            # every signed email failed). Unfolded, it verifies the same: relaxed header
            # canonicalization unfolds and collapses whitespace anyway.
            msg[name] = " ".join(value.split())
        return msg


@lru_cache(maxsize=1)
def _dkim_key() -> bytes | None:
    if not (settings.DKIM_SELECTOR and settings.DKIM_DOMAIN and settings.DKIM_PRIVATE_KEY_PATH):
        return None
    return Path(settings.DKIM_PRIVATE_KEY_PATH).read_bytes()


def build_email(
    template_prefix: str,
    *,
    to: str,
    context: dict,
    unsubscribe_url: str | None = None,
    html: bool = True,
    rendered: RenderedEmail | None = None,
    bounce_id: int | None = None,
) -> ListEmail:
    """Render and assemble one email. `unsubscribe_url` marks it as list mail (digests); `bounce_id`
    (the subscriber's id) gives it a VERP envelope sender when NEWSLETTER_BOUNCE_ADDRESS is set, and a
    Message-ID signed for that subscriber (both prove a bounce or complaint: deliverability/trust.py)."""
    if rendered is None:
        rendered = render_email(template_prefix, context, html=html)
    message_id = (
        make_msgid(idstring=template_prefix, domain=site_domain())
        if bounce_id is None
        else message_id_make(subscriber_id=bounce_id, prefix=template_prefix, domain=site_domain())
    )
    headers = {
        "Message-ID": message_id,
        "List-Id": settings.NEWSLETTER_LIST_ID,
        # Keeps vacation responders and the like from answering the digest.
        "Auto-Submitted": "auto-generated",
    }
    if unsubscribe_url:
        headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    envelope = verp_address(subscriber_id=bounce_id) if bounce_id is not None else None
    if envelope:
        # Django takes the envelope sender from from_email and the From header from here.
        headers["From"] = settings.DEFAULT_FROM_EMAIL
    message = ListEmail(
        subject=rendered.subject,
        body=rendered.text,
        from_email=envelope or settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers=headers,
    )
    if rendered.html is not None:
        message.attach_alternative(rendered.html, "text/html")
    return message
