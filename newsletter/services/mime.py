"""The bytes of a list email, written directly: what Django's EmailMultiAlternatives.message() and the
stdlib's generator would write, at a tenth of the CPU (building the MIME tree and walking it was half
the worker CPU of a digest).

`WrittenMessage` stands where Django's message() result stands: backends call its `as_bytes`, which
writes the headers (the same values Django stores, folded by the same policy), the boundary and the
text parts (7bit or 8bit, the lines joined with the line separator). Anything else a caller asks of it
(a header, the parts) is answered by the stdlib message, built on first use with the same Date,
boundary and signature. `written_parts` keeps to the case written here: a text body, at most one HTML
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
    """Django's SafeMIMEText test for quoted-printable (a line over 998 bytes)."""
    return _long_lines(text, text.encode(errors="surrogateescape"))


def _long_lines(text: str, data: bytes) -> bool:
    """has_long_lines of `text`, given its bytes. str.splitlines also splits on characters
    bytes.splitlines keeps (form feed, U+2028, ...), so its lines are never longer than those of the
    bytes: when no line of the bytes is over the limit, none of Django's is."""
    if not long_byte_lines(data):
        return False
    return any(
        len(line.encode(errors="surrogateescape")) > RFC5322_EMAIL_LINE_LENGTH_LIMIT
        for line in text.splitlines()
    )


def long_byte_lines(data: bytes, limit: int = RFC5322_EMAIL_LINE_LENGTH_LIMIT) -> bool:
    """Whether a line of bytes.splitlines(data) is longer than `limit`, without making the lines (a
    digest's HTML has hundreds): from a line's start, the last line break within limit + 1 bytes
    begins the next window, so a window without one is a long line, and a 36 kB part takes a few
    dozen rfinds."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    start, size = 0, len(data)
    while size - start > limit:
        newline = data.rfind(b"\n", start, start + limit + 1)
        if newline < 0:
            return True
        start = newline + 1
    return False


def written_parts(email: EmailMultiAlternatives) -> list[bytes] | None:
    """The utf-8 bytes of the text body and the HTML alternative when this email's bytes are written
    here (each encoded once, for the tests and the writing); None when the stdlib writes them."""
    alternatives = getattr(email, "alternatives", [])
    if (
        email.attachments
        or email.content_subtype != "plain"
        or (email.encoding or settings.DEFAULT_CHARSET).lower() != "utf-8"
        or not email.body
        or len(alternatives) > 1
        or any(mimetype != "text/html" for _, mimetype in alternatives)
    ):
        return None
    parts = []
    for text in [email.body, *(content for content, _ in alternatives)]:
        if not isinstance(text, str):
            return None
        try:
            data = text.encode()
        except UnicodeEncodeError:  # lone surrogates, which the stdlib writes raw
            return None
        if _long_lines(text, data):
            return None
        parts.append(data)
    return parts


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


def _part(subtype: str, data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    return (
        [
            ("Content-Type", f'text/{subtype}; charset="utf-8"'),
            ("MIME-Version", "1.0"),
            ("Content-Transfer-Encoding", "7bit" if data.isascii() else "8bit"),
        ],
        data,
    )


class WrittenMessage:
    """Django's message() result for a writable email: as_bytes is written here, the rest delegated
    to the stdlib message (built lazily, equal to what is written)."""

    def __init__(
        self, email: EmailMultiAlternatives, *, policy: Policy, boundary: str, parts: list[bytes]
    ) -> None:
        """`parts`: written_parts(email)."""
        self._email = email
        self.policy = policy
        self._boundary = boundary if email.alternatives else None
        self._date = formatdate(localtime=settings.EMAIL_USE_LOCALTIME)
        self._parts = [_part("plain", parts[0])] + [_part("html", data) for data in parts[1:]]
        self._headers = self._outer_headers()  # raises BadHeaderError now, as Django's message() does
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
            headers = list(self._parts[0][0])
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
    def _lines(data: bytes, linesep: bytes) -> bytes:
        """The generator's NLCRE split and join: every CRLF, CR and LF becomes linesep (in utf-8 the
        bytes CR and LF are those characters and nothing else)."""
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return data if linesep == b"\n" else data.replace(b"\n", linesep)

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n") -> bytes:
        if unixfrom:
            return self.stdlib().as_bytes(unixfrom=True, linesep=linesep)
        fold = self._folder(linesep).fold_binary
        newline = linesep.encode()
        out = [fold(name, value) for name, value in self._headers]
        out.append(newline)
        if self._boundary is None:
            out.append(self._lines(self._parts[0][1], newline))
            return b"".join(out)
        delimiter = f"--{self._boundary}{linesep}".encode()
        for number, (headers, data) in enumerate(self._parts):
            out.append(delimiter if number == 0 else newline + delimiter)
            out += [fold(name, value) for name, value in headers]
            out.append(newline)
            out.append(self._lines(data, newline))
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
