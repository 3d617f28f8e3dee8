"""The lean SMTP transaction (newsletter.services.smtp) against Django's EmailBackend + smtplib, on
real servers (aiosmtpd with and without PIPELINING, Postfix's smtp-sink): the same bytes on the
wire, the same exceptions, and a session still usable after a refusal."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend
from django.core.mail.message import sanitize_address
from hypothesis import given
from hypothesis import strategies as st

from newsletter.services.render import digest_email
from newsletter.services.smtp import LeanSmtpSender, envelope_address, message_sender
from tests.newsletter.hf_digest import hf_digest
from tests.newsletter.test_emails import dkim_keys  # noqa: F401 (a fixture)
from tests.support import PostfixSink, RecordingSMTPServer, WireTap

needs_smtp_sink = pytest.mark.skipif(
    not PostfixSink.available(), reason="Postfix's smtp-sink is not installed"
)

Send = Callable[[EmailBackend, EmailMessage], None]


def django_send(backend: EmailBackend, message: EmailMessage) -> None:
    backend.send_messages([message])


def lean_send(backend: EmailBackend, message: EmailMessage) -> None:
    LeanSmtpSender(backend).send(message)


SENDERS = [pytest.param(django_send, id="django"), pytest.param(lean_send, id="lean")]


def serialized_once(message: EmailMessage) -> EmailMessage:
    """`message` with its serialization drawn once: message() draws a new Date and MIME boundary at
    each call, and two senders compared byte for byte must be given the same message."""
    built = message.message()
    message.message = lambda: built
    return message


def plain_email(to: str = "ada@example.org", body: str = "Hello.\n") -> EmailMessage:
    return serialized_once(EmailMessage("Plain text", body, "Paper Digest <digest@example.org>", [to]))


@contextmanager
def session(host: str, port: int) -> Iterator[EmailBackend]:
    """Django's SMTP backend, opened as delivery.py opens it, closed (QUIT) at the end."""
    backend = EmailBackend(host=host, port=port, use_tls=False, username="", password="", timeout=10)
    backend.open()
    try:
        yield backend
    finally:
        backend.close()


@contextmanager
def smtp_server(kind: str) -> Iterator[RecordingSMTPServer | PostfixSink]:
    if kind == "smtp-sink":
        if not PostfixSink.available():
            pytest.skip("Postfix's smtp-sink is not installed")
        with PostfixSink() as sink:
            yield sink
    else:
        with RecordingSMTPServer(pipelining=kind == "aiosmtpd-pipelining") as server:
            yield server


SERVERS = ["aiosmtpd-pipelining", "aiosmtpd", "smtp-sink"]


# --- the same bytes on the wire ----------------------------------------------------------------


def wire(kind: str, send: Send, message: EmailMessage) -> list[bytes]:
    """What `send` writes to a fresh server of `kind` for `message`, piece by piece, EHLO to QUIT."""
    with (
        smtp_server(kind) as server,
        WireTap(host=server.host, port=server.port) as tap,
        session(tap.host, tap.port) as backend,
    ):
        send(backend, message)
    return tap.sessions[0]


def non_ascii_email() -> EmailMessage:
    message = EmailMultiAlternatives(
        "Grüße aus Zürich: Überblick",
        "Ein Absatz über Maße.\n.Eine Zeile mit Punkt am Anfang\n..\n.\nEnde — ✓\n",
        "Zoë Digest <digest@example.org>",
        ["Åsa Öberg <åsa@bücher.example>"],
    )
    message.attach_alternative("<p>Grüße ✓</p>\n.<p>Punkt</p>", "text/html")
    return serialized_once(message)


def signed_digest() -> EmailMessage:
    delivery, picks = hf_digest()
    return serialized_once(digest_email(delivery=delivery, picks=picks))


MESSAGES = {
    "digest": signed_digest,
    "plain": lambda: plain_email(body="First line.\n.starts with a dot\n..two dots\n.\nlast\n"),
    "non-ascii": non_ascii_email,
}


@pytest.mark.django_db
@pytest.mark.usefixtures("dkim_keys")  # the digest is signed, as in production
@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.parametrize("name", list(MESSAGES))
def test_the_server_receives_the_bytes_djangos_backend_sends(kind: str, name: str) -> None:
    message = MESSAGES[name]()

    django, lean = wire(kind, django_send, message), wire(kind, lean_send, message)

    assert b"".join(lean) == b"".join(django)
    assert b"\r\n..starts with a dot" in b"".join(lean) or name != "plain"
    envelope_in_one_piece = [piece for piece in lean if piece.startswith(b"mail FROM:")]
    if kind == "aiosmtpd":  # no PIPELINING: one command per turn, as smtplib does
        assert all(b"rcpt" not in piece for piece in envelope_in_one_piece)
    else:
        assert envelope_in_one_piece[0].endswith(b"\r\ndata\r\n")
        assert envelope_in_one_piece[0].count(b"\r\n") == 3  # MAIL, RCPT and DATA in one write


@pytest.mark.django_db
@pytest.mark.usefixtures("dkim_keys")
def test_a_signed_digest_arrives_as_django_serializes_it() -> None:
    message = signed_digest()
    content = message.message().as_bytes(linesep="\r\n")
    assert b"DKIM-Signature:" in content

    with RecordingSMTPServer() as server, session(server.host, server.port) as backend:
        lean_send(backend, message)

    (received,) = server.messages
    assert received.content == content
    assert received.mail_from == "digest@localhost" and received.rcpt_tos == ["reader@example.org"]


@pytest.mark.parametrize("pipelining", [True, False])
def test_lines_that_start_with_a_dot_survive(pipelining: bool) -> None:
    body = ".first\n..second\n.\n. \nlast line.\n."
    message = plain_email(body=body)
    with RecordingSMTPServer(pipelining=pipelining) as server, session(server.host, server.port) as backend:
        lean_send(backend, message)

    (received,) = server.messages
    # As smtplib does, a message that does not end with a line break is given one.
    assert received.content == message.message().as_bytes(linesep="\r\n") + b"\r\n"
    assert server.parsed()[0].get_content().replace("\r\n", "\n") == body + "\n"


# --- the envelope --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.org",
        "Ada.Lovelace+digest_2@mail-1.example.co.uk",
        "x@" + "a" * 63 + ".org",
        "Ada Lovelace <ada@example.org>",
        "ada@bücher.example",
        "åsa@example.org",
        '"quoted local"@example.org',
        "ada@" + "a" * 64 + ".org",
        "a..b@example.org",
        "ada@example.org.",
    ],
)
def test_envelope_addresses_are_what_django_and_smtplib_make_of_them(address: str) -> None:
    assert_same_envelope_address(address)


@given(st.text(alphabet="aZ09_+-.@ <>\"'ü", min_size=1, max_size=24))
def test_any_address_gets_the_envelope_django_and_smtplib_make_of_it(address: str) -> None:
    assert_same_envelope_address(address)


def assert_same_envelope_address(address: str) -> None:
    try:
        sanitized = sanitize_address(address, "utf-8")
    except Exception as exc:  # the same refusal, whatever Django's parser raises
        with pytest.raises(type(exc)):
            envelope_address(address, "utf-8")
        return
    lean = envelope_address(address, "utf-8")
    assert (lean.sanitized, lean.path) == (sanitized, smtplib.quoteaddr(sanitized))


def test_other_backends_keep_send_messages(settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    from django.core import mail

    send = message_sender(mail.get_connection())
    send(plain_email())

    assert [m.subject for m in mail.outbox] == ["Plain text"]


# --- failures: the same exceptions, and the session goes on -------------------------------------

Outcome = tuple[type, tuple] | None


def outcome(send: Callable[[], None]) -> Outcome:
    try:
        send()
    except Exception as exc:  # compared between the two senders
        return type(exc), exc.args
    return None


def refused_then_next(kind: str, misbehave: Callable[[RecordingSMTPServer], None], send: Send):
    """The outcome of a first email the server refuses and of a second one on the same session."""
    with RecordingSMTPServer(pipelining=kind == "aiosmtpd-pipelining") as server:
        misbehave(server)
        with session(server.host, server.port) as backend:
            first = outcome(lambda: send(backend, plain_email("ada@example.org")))
            second = outcome(lambda: send(backend, plain_email("bob@example.org")))
        return first, second, [m.rcpt_tos for m in server.messages]


def mail_reply(reply: str) -> Callable[[RecordingSMTPServer], None]:
    return lambda server: server.mail_replies.append(reply)


def rcpt_reply(reply: str) -> Callable[[RecordingSMTPServer], None]:
    return lambda server: server.refuse.update({"ada@example.org": reply})


def data_reply(reply: str) -> Callable[[RecordingSMTPServer], None]:
    return lambda server: server.data_replies.append(reply)


REFUSALS = {
    "MAIL 451": mail_reply("451 4.3.2 Try again later"),
    "MAIL 550": mail_reply("550 5.7.1 Sender rejected"),
    "MAIL 421": mail_reply("421 4.7.0 Closing, too many connections"),
    "RCPT 450 throttled": rcpt_reply("450 4.2.1 Too many messages, slow down"),
    "RCPT 550": rcpt_reply("550 5.1.1 No such user"),
    "RCPT 421": rcpt_reply("421 4.4.5 Rate limit exceeded, closing"),
    "DATA end 451": data_reply("451 4.3.0 Temporary failure"),
    "DATA end 554": data_reply("554 5.6.0 Message refused"),
    "DATA end 421": data_reply("421 4.3.0 Shutting down"),
}


@pytest.mark.parametrize("kind", ["aiosmtpd-pipelining", "aiosmtpd"])
@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_refusal_raises_what_smtplib_raises_and_the_next_email_goes_out(kind: str, refusal: str) -> None:
    django = refused_then_next(kind, REFUSALS[refusal], django_send)
    lean = refused_then_next(kind, REFUSALS[refusal], lean_send)

    assert lean == django
    first, second, delivered = lean
    assert first is not None and first[0] is not smtplib.SMTPServerDisconnected
    if "421" in refusal:  # the server is closing the session: smtplib closes it too
        assert second == (smtplib.SMTPServerDisconnected, ("please run connect() first",))
        assert delivered == []
    else:
        assert second is None
        assert delivered == [["bob@example.org"]]


@needs_smtp_sink
@pytest.mark.parametrize(
    "options",
    [
        ("-r", "MAIL"),
        ("-f", "MAIL"),
        ("-r", "RCPT"),
        ("-f", "RCPT"),
        ("-r", "DATA"),
        ("-f", "DATA"),
        ("-r", "."),
        ("-f", "."),
        ("-q", "MAIL"),
        ("-q", "RCPT"),
        ("-q", "DATA"),
        ("-q", "."),
        ("-p",),
        (),
    ],
    ids=" ".join,
)
def test_smtp_sink_refusals_and_hang_ups_raise_what_smtplib_raises(options: tuple[str, ...]) -> None:
    outcomes = {}
    for name, send in [("django", django_send), ("lean", lean_send)]:
        with PostfixSink(*options) as sink:
            with session(sink.host, sink.port) as backend:
                first = outcome(lambda: send(backend, plain_email("ada@example.org")))  # noqa: B023
                second = outcome(lambda: send(backend, plain_email("bob@example.org")))  # noqa: B023
            outcomes[name] = (first, second, sink.delivered())

    assert outcomes["lean"][0] == outcomes["django"][0]
    if options in [("-r", "DATA"), ("-f", "DATA")]:
        # smtplib leaves the transaction of a refused DATA open, so its next MAIL is "nested" (503);
        # the lean sender resets the session, and the next email meets the server's refusal again.
        assert outcomes["django"][1][1][:2] == (503, b"5.5.1 Error: nested MAIL command")
        assert outcomes["lean"][1] == outcomes["lean"][0]
        return
    assert outcomes["lean"] == outcomes["django"]
    first, second, delivered = outcomes["lean"]
    if options[:1] == ("-q",):  # hung up: the session is gone; the data may have arrived, unanswered
        assert second == (smtplib.SMTPServerDisconnected, ("please run connect() first",))
        assert delivered == (1 if options == ("-q", ".") else 0)
    elif options in [(), ("-p",)]:
        assert (first, second, delivered) == (None, None, 2)
    else:  # every email is refused at the same step
        assert second[0] is first[0]
