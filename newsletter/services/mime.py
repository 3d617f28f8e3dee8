"""The bytes of a list email, written directly: what Django's EmailMultiAlternatives.message() and the
stdlib's generator would write, at a tenth of the CPU (building the MIME tree and walking it was half
the worker CPU of a digest).

`WrittenMessage` stands where Django's message() result stands: backends call its `as_bytes`, which
writes the headers (the same values Django stores, folded by the same policy), the boundary and the
text parts (7bit or 8bit, the lines joined with the line separator). Anything else a caller asks of it
(a header, the parts) is answered by the stdlib message, built on first use with the same Date,
boundary and signature. `writable` keeps to the case written here: a text body, at most one HTML
alternative, no attachments, utf-8, no line over 998 bytes (Django would switch to quoted-printable);
other emails go through the stdlib. tests/newsletter/test_mime.py holds the two equal.
"""

from __future__ import annotations

import re
from email.message import Message
from email.policy import Policy
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail.message import RFC5322_EMAIL_LINE_LENGTH_LIMIT, forbid_multi_line_headers
from django.core.mail.utils import DNS_NAME

if TYPE_CHECKING:
    from django.core.mail import EmailMultiAlternatives

# What Header(subject).encode() would rewrite in an ASCII subject: a line break, a run of whitespace,
# leading or trailing whitespace, an encoded-word look-alike; and anything longer than a line.
_SUBJECT_REWRITTEN = re.compile(r"[\r\n]|\s\s|^\s|\s$|=\?")
_SUBJECT_PLAIN_MAX = 70


def has_long_lines(text: str) -> bool:
    """Django's SafeMIMEText test for quoted-printable. str.splitlines also splits on characters
    bytes.splitlines keeps (form feed, U+2028, ...), so its lines are never longer than those of the
    bytes: when no line of the bytes is over the limit, none of Django's is, and that is all C."""
    lines = text.encode(errors="surrogateescape").splitlines()
    if not lines or max(map(len, lines)) <= RFC5322_EMAIL_LINE_LENGTH_LIMIT:
        return False
    return any(
        len(line.encode(errors="surrogateescape")) > RFC5322_EMAIL_LINE_LENGTH_LIMIT
        for line in text.splitlines()
    )


def writable(email: EmailMultiAlternatives) -> bool:
    """Whether the bytes of this email are written here (else the stdlib writes them)."""
    alternatives = getattr(email, "alternatives", [])
    texts = [email.body] + [content for content, _ in alternatives]
    return (
        not email.attachments
        and email.content_subtype == "plain"
        and (email.encoding or settings.DEFAULT_CHARSET).lower() == "utf-8"
        and bool(email.body)
        and len(alternatives) <= 1
        and all(mimetype == "text/html" for _, mimetype in alternatives)
        and all(isinstance(text, str) and not has_long_lines(text) for text in texts)
        # Lone surrogates would be written raw by the stdlib and fail to encode here.
        and all(text.isascii() or _encodable(text) for text in texts)
    )


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def header_value(name: str, value: object) -> str:
    """The value Django's SafeMIME __setitem__ stores (forbid_multi_line_headers), without its
    Header().encode() for the usual ASCII subject, which gives it back unchanged."""
    value = str(value)
    if value.isascii() and not (
        name.lower() == "subject" and (len(value) > _SUBJECT_PLAIN_MAX or _SUBJECT_REWRITTEN.search(value))
    ):
        if "\n" in value or "\r" in value:
            forbid_multi_line_headers(name, value, "utf-8")  # raises BadHeaderError
        return value
    return forbid_multi_line_headers(name, value, "utf-8")[1]


def _part(subtype: str, text: str) -> tuple[list[tuple[str, str]], str]:
    return (
        [
            ("Content-Type", f'text/{subtype}; charset="utf-8"'),
            ("MIME-Version", "1.0"),
            ("Content-Transfer-Encoding", "7bit" if text.isascii() else "8bit"),
        ],
        text,
    )


class WrittenMessage:
    """Django's message() result for a writable email: as_bytes is written here, the rest delegated
    to the stdlib message (built lazily, equal to what is written)."""

    def __init__(self, email: EmailMultiAlternatives, *, policy: Policy, boundary: str) -> None:
        self._email = email
        self.policy = policy
        self._boundary = boundary if email.alternatives else None
        self._date = formatdate(localtime=settings.EMAIL_USE_LOCALTIME)
        self._headers = self._outer_headers()  # raises BadHeaderError now, as Django's message() does
        self._parts = [_part("plain", email.body)] + [_part("html", html) for html, _ in email.alternatives]
        self._stdlib: Message | None = None
        self._folders: dict[str, Policy] = {}

    def _outer_headers(self) -> list[tuple[str, str]]:
        # The order Django's EmailMessage.message() sets them in (the MIME ones come from SafeMIME*).
        email, extra = self._email, self._email.extra_headers
        if self._boundary:
            headers = [
                ("Content-Type", f'multipart/alternative; boundary="{self._boundary}"'),
                ("MIME-Version", "1.0"),
            ]
        else:
            headers = _part("plain", email.body)[0]
        headers.append(("Subject", header_value("Subject", email.subject)))
        headers.append(("From", header_value("From", extra.get("From", email.from_email))))
        for name, values in (("To", email.to), ("Cc", email.cc), ("Reply-To", email.reply_to)):
            if name in extra:
                headers.append((name, header_value(name, extra[name])))
            elif values:
                headers.append((name, header_value(name, ", ".join(str(v) for v in values))))
        names = {name.lower() for name in extra}
        if "date" not in names:
            headers.append(("Date", self._date))
        if "message-id" not in names:
            headers.append(("Message-ID", make_msgid(domain=DNS_NAME)))
        headers += [
            (name, header_value(name, value))
            for name, value in extra.items()
            if name.lower() not in {"from", "to", "cc", "reply-to"}
        ]
        return headers

    def __setitem__(self, name: str, value: str) -> None:
        """Append a header (the DKIM signature), as Message.__setitem__ does."""
        self._headers.append((name, header_value(name, value)))
        if self._stdlib is not None:
            self._stdlib[name] = value

    def _folder(self, linesep: str) -> Policy:
        folder = self._folders.get(linesep)
        if folder is None:
            folder = self._folders[linesep] = self.policy.clone(linesep=linesep)
        return folder

    @staticmethod
    def _lines(text: str, linesep: str) -> str:
        """The generator's NLCRE split and join: every CRLF, CR and LF becomes linesep."""
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text if linesep == "\n" else text.replace("\n", linesep)

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n") -> bytes:
        if unixfrom:
            return self.stdlib().as_bytes(unixfrom=True, linesep=linesep)
        fold = self._folder(linesep).fold_binary
        out = [fold(name, value) for name, value in self._headers]
        out.append(linesep.encode())
        if self._boundary is None:
            out.append(self._lines(self._parts[0][1], linesep).encode())
            return b"".join(out)
        delimiter = f"--{self._boundary}{linesep}".encode()
        for number, (headers, text) in enumerate(self._parts):
            out.append(delimiter if number == 0 else linesep.encode() + delimiter)
            out += [fold(name, value) for name, value in headers]
            out.append(linesep.encode())
            out.append(self._lines(text, linesep).encode())
        out.append(f"{linesep}--{self._boundary}--{linesep}".encode())
        return b"".join(out)

    def as_string(self, unixfrom: bool = False, linesep: str = "\n") -> str:
        return self.as_bytes(unixfrom, linesep).decode()

    def stdlib(self) -> Message:
        """The stdlib message Django would have built: the same headers, Date and boundary."""
        if self._stdlib is None:
            from django.core.mail import EmailMultiAlternatives

            email = self._email
            msg = EmailMultiAlternatives.message(email)
            msg.policy = self.policy
            if self._boundary:
                msg.set_boundary(self._boundary)
            if "Date" in msg and "date" not in {name.lower() for name in email.extra_headers}:
                msg.replace_header("Date", self._date)
            written = {name for name, _ in self._headers}
            for name, value in self._headers:
                if name not in msg and name in written:
                    msg[name] = value  # headers added after message() (the signature)
            self._stdlib = msg
        return self._stdlib

    def __getitem__(self, name: str):
        return self.stdlib()[name]

    def __contains__(self, name: str) -> bool:
        return name in self.stdlib()

    def __iter__(self):
        return iter(self.stdlib())

    def __len__(self) -> int:
        return len(self.stdlib())

    def __getattr__(self, name: str):
        return getattr(self.stdlib(), name)
