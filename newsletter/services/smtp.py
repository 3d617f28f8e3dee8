"""Part of step 4 (send, delivery.py): one email's SMTP transaction, lean, over the session Django's
SMTP EmailBackend opened (so TLS, SSL, login and timeouts stay Django's).

Django's `EmailBackend._send` plus smtplib's `sendmail` cost a digest four request/reply turns (MAIL,
RCPT, DATA, then the data), regexes over the whole message for line endings and dot-stuffing, and the
sender's sanitizing again for every email. Here, when the server offers PIPELINING (RFC 2920), MAIL,
RCPT and DATA go out in one write and their replies are read in order; the message, dot-stuffed with
bytes operations, and its final "." go out in a second write. Without PIPELINING the same commands go
one per turn. The wire bytes are those of `sendmail`: the same commands (SIZE included), the message
exactly as `message.message().as_bytes(linesep="\\r\\n")` makes it.

Failures raise what `sendmail` raises, with the same codes and texts (SMTPSenderRefused,
SMTPRecipientsRefused, SMTPDataError, SMTPServerDisconnected), so delivery.py's `classify_send_error`
reads them as before, and the session is left usable (RSET after a refused transaction, closed after a
421) as `sendmail` leaves it. A refused envelope never sends the message: after a refused MAIL or all
refused RCPTs the server answers the pipelined DATA with 503/554; if it answers 354 anyway, a lone "."
ends an empty message to nobody (RFC 2920 section 3.1).

Other backends (anymail, locmem, console, file, the benchmark's) keep `send_messages`.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.core.mail.message import sanitize_address

Reply = tuple[int, bytes]
_ACCEPTED_RECIPIENT = (250, 251)


def message_sender(connection: BaseEmailBackend) -> Callable[[EmailMessage], None]:
    """How to send one email over `connection` (the caller opens and closes it): the lean
    transaction for Django's SMTP backend, `send_messages` for any other backend, subclasses of
    Django's included (they may change what its sending does)."""
    if type(connection) is SmtpBackend:
        return LeanSmtpSender(connection).send
    return lambda message: _send_messages(connection, message)


def _send_messages(connection: BaseEmailBackend, message: EmailMessage) -> None:
    connection.send_messages([message])


class LeanSmtpSender:
    """Sends emails one transaction each over `backend`'s session (see the module docstring)."""

    def __init__(self, backend: SmtpBackend) -> None:
        self.backend = backend
        # A chunk's emails mostly share their sender (all but VERP ones): sanitized once, not per email.
        self._sender_key: tuple[str, str] | None = None
        self._sender = EnvelopeAddress("", "")

    def send(self, message: EmailMessage) -> None:
        recipients = message.recipients()
        if not recipients:  # Django's _send sends nothing for an email without recipients
            return
        # The envelope of Django's _send: addresses sanitized with the message's encoding.
        encoding = message.encoding or settings.DEFAULT_CHARSET
        sender = self._envelope_sender(message.from_email, encoding)
        envelope_to = [envelope_address(address, encoding) for address in recipients]
        content = message.message().as_bytes(linesep="\r\n")
        self.backend.open()  # a no-op while the session is up
        client = self.backend.connection
        if client is None:  # open() failed silently: Django's send_messages sends nothing either
            return
        try:
            transaction_send(client, sender=sender, recipients=envelope_to, content=content)
        except smtplib.SMTPException:
            if not self.backend.fail_silently:
                raise

    def _envelope_sender(self, from_email: str, encoding: str) -> EnvelopeAddress:
        key = (from_email, encoding)
        if key != self._sender_key:
            self._sender = envelope_address(from_email, encoding)
            self._sender_key = key
        return self._sender


@dataclass(frozen=True, slots=True)
class EnvelopeAddress:
    sanitized: str  # as Django's _send passes it to sendmail (and smtplib's exceptions name it)
    path: str  # as sendmail writes it in MAIL FROM / RCPT TO: "<local@domain>"


# A plain ASCII address (a dot-atom local part, domain labels of 1 to 63 letters, digits and
# hyphens) is its own sanitized form, and its path is itself in angle brackets: Django's
# sanitize_address and smtplib's quoteaddr, two email parsers at ~0.1 ms an address, are skipped.
# Must stay equal to them (tests/newsletter/test_smtp.py checks it, generated addresses included).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*"
)


def envelope_address(address: str, encoding: str) -> EnvelopeAddress:
    """`address` as Django's _send sanitizes it and smtplib's sendmail quotes it."""
    if isinstance(address, str) and _PLAIN_ADDRESS.fullmatch(address):
        return EnvelopeAddress(address, f"<{address}>")
    sanitized = sanitize_address(address, encoding)
    return EnvelopeAddress(sanitized, smtplib.quoteaddr(sanitized))


def transaction_send(
    client: smtplib.SMTP, *, sender: EnvelopeAddress, recipients: list[EnvelopeAddress], content: bytes
) -> None:
    """One mail transaction on `client`, returning only after the server's 250 for the data.

    `content` is the CRLF message as Django serializes it. Raises as smtplib's `sendmail` does; a
    partly refused recipient list still sends to the others, as `sendmail` does.
    """
    client.ehlo_or_helo_if_needed()
    size = f" size={len(content)}" if client.does_esmtp and client.has_extn("size") else ""
    commands = [
        _command(client, "mail", f"FROM:{sender.path}{size}"),
        *(_command(client, "rcpt", f"TO:{recipient.path}") for recipient in recipients),
        _command(client, "data"),
    ]
    pipelined = "pipelining" in client.esmtp_features
    replies = _replies(client, commands, pipelined=pipelined)

    code, text = next(replies)
    if code != 250:
        _abandon(client, code, replies if pipelined else None)
        raise smtplib.SMTPSenderRefused(code, text, sender.sanitized)
    refused: dict[str, Reply] = {}
    for recipient in recipients:
        code, text = next(replies)
        if code not in _ACCEPTED_RECIPIENT:
            refused[recipient.sanitized] = (code, text)
        if code == 421:
            client.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(recipients):
        _abandon(client, None, replies if pipelined else None)
        raise smtplib.SMTPRecipientsRefused(refused)

    code, text = next(replies)
    if code != 354:
        _end_refused(client, code)
        raise smtplib.SMTPDataError(code, text)
    client.send(_dot_stuffed(content))
    code, text = client.getreply()
    if code != 250:
        _end_refused(client, code)
        raise smtplib.SMTPDataError(code, text)


def _replies(client: smtplib.SMTP, commands: list[bytes], *, pipelined: bool) -> Iterator[Reply]:
    """The replies to `commands`, in order: all written at once when pipelined, else each written
    only when the previous reply was read (so a caller that stops reading sends no more)."""
    if pipelined:
        client.send(b"".join(commands))
        for _ in commands:
            yield client.getreply()
    else:
        for command in commands:
            client.send(command)
            yield client.getreply()


def _abandon(client: smtplib.SMTP, code: int | None, pending: Iterator[Reply] | None) -> None:
    """After a refused envelope: read the replies still owed to pipelined commands (ending the DATA
    with a lone "." if the server took it all the same), then RSET, or close after a 421, as
    `sendmail` does. A server that hangs up meanwhile leaves the refusal as the error to report."""
    try:
        if code != 421 and pending is not None:
            for code, _ in pending:  # the last one answers DATA
                if code == 421:
                    break
            else:
                if code == 354:
                    client.send(b".\r\n")
                    code, _ = client.getreply()
        _end_refused(client, code)
    except smtplib.SMTPServerDisconnected:
        pass


def _end_refused(client: smtplib.SMTP, code: int | None) -> None:
    """A refused transaction ends the session after a 421 (the server is closing it) and is reset
    otherwise, so the next email starts clean."""
    if code == 421:
        client.close()
        return
    with contextlib.suppress(smtplib.SMTPServerDisconnected):  # the next email reports it
        client.rset()


def _command(client: smtplib.SMTP, verb: str, arguments: str = "") -> bytes:
    # The line smtplib's putcmd writes, with the same refusal of embedded line breaks.
    line = f"{verb} {arguments}" if arguments else verb
    if "\r" in line or "\n" in line:
        shown = line.replace("\n", "\\n").replace("\r", "\\r")
        raise ValueError(f"command and arguments contain prohibited newline characters: {shown}")
    return f"{line}\r\n".encode(client.command_encoding)


def _dot_stuffed(content: bytes) -> bytes:
    """`content` with every line that starts with "." given a second one, then the final ".": what
    smtplib's regexes do, as two bytes replacements."""
    stuffed = content.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"
