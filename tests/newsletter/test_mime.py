"""The written bytes of a list email (newsletter.services.mime) against the stdlib's: byte for byte
where the writer applies, and as a receiving server parses them."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy

import dkim
import pytest
from django.core import mail
from django.core.mail.message import BadHeaderError, forbid_multi_line_headers
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.services.delivery import deliveries_send
from newsletter.services.dispatch import digests_dispatch
from newsletter.services.emails import RenderedEmail, build_email
from newsletter.services.mime import WrittenMessage, has_long_lines, header_value, long_byte_lines
from tests.factories import PaperFactory, SubscriberFactory
from tests.newsletter.test_emails import dkim_keys  # noqa: F401 (the fixture, with its test key)

_TEXT_PIECES = [
    *"abc XYZ 019.,;:-", "\n", "\r\n", "\r", "\n\n", "From ", "\nFrom me", "\n.", ".\n", "é", "“", "日本",
    "😀", "\t", " \n", "--", "=_", "=20", "=?utf-8?q?x?=", "x" * 300, "é" * 260, "\x0c", "\u2028",
]  # fmt: skip
texts = st.lists(st.sampled_from(_TEXT_PIECES), max_size=60).map("".join)
_SUBJECT_PIECES = [*"abc XYZ 019.,;:-&", "  ", " ", "é", "“", "=?", "\t", "x" * 40, "Ask2Mask"]
subjects = st.lists(st.sampled_from(_SUBJECT_PIECES), max_size=30).map("".join)


def stdlib_bytes(written: WrittenMessage, linesep: str) -> bytes:
    """What Django's message() and the stdlib generator write for the same email."""
    msg = written.stdlib()
    return type(msg).as_bytes(msg, linesep=linesep)  # Django's SafeMIME*.as_bytes, stock generator


def email_of(subject: str, text: str, html: str | None, to: str = "reader@example.org"):
    return build_email(
        "digest",
        to=to,
        context={},
        unsubscribe_url="https://digest.example.org/unsubscribe/t/",
        rendered=RenderedEmail(subject=subject, text=text, html=html),
        bounce_id=7,
    )


@hypothesis_settings(max_examples=400, deadline=None)
@given(
    subject=subjects,
    text=texts,
    html=st.none() | texts,
    to=st.sampled_from(["reader@example.org", "Zoë Reader <zoe@example.org>", "x" * 70 + "@example.org"]),
    linesep=st.sampled_from(["\n", "\r\n"]),
)
def test_written_bytes_are_the_stdlib_bytes(subject, text, html, to, linesep) -> None:
    email = email_of(subject, text, html, to)
    msg = email.message()
    if not isinstance(msg, WrittenMessage):  # an empty body or a line over 998 bytes: stdlib itself
        assert not text or has_long_lines(text) or (html is not None and has_long_lines(html))
        return
    written = msg.as_bytes(linesep=linesep)

    assert written == stdlib_bytes(msg, linesep)
    parsed, stock = (
        message_from_bytes(raw, policy=policy.default) for raw in (written, stdlib_bytes(msg, linesep))
    )
    assert list(parsed.items()) == list(stock.items())
    assert [p.get_content() for p in parsed.iter_parts()] == [p.get_content() for p in stock.iter_parts()]
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == (
        text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
    )


@hypothesis_settings(max_examples=2000, deadline=None)
@given(name=st.sampled_from(["Subject", "To", "List-Id"]), value=subjects)
def test_header_values_are_those_django_stores(name: str, value: str) -> None:
    assert _outcome(header_value, name, value) == _outcome(
        lambda n, v: forbid_multi_line_headers(n, v, "utf-8")[1], name, value
    )


def _outcome(function, name: str, value: str) -> str | type[Exception]:
    try:
        return function(name, value)
    except Exception as exc:  # an address Django refuses must be refused the same way
        return type(exc)


def test_header_injection_is_still_refused_when_the_message_is_made() -> None:
    with pytest.raises(BadHeaderError):
        email_of("Hi\nBcc: victim@example.org", "text", "<p>x</p>").message()


def test_the_stdlib_message_behind_it_has_the_written_headers() -> None:
    msg = email_of("2 new papers", "body\n", "<p>x</p>").message()

    assert isinstance(msg, WrittenMessage)
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    for name in ("Subject", "From", "To", "Date", "Message-ID", "List-Unsubscribe", "Content-Type"):
        assert msg[name] == parsed[name].__str__() or name == "Content-Type"
    assert msg.is_multipart() and msg.get_content_subtype() == "alternative"


@pytest.mark.django_db
def test_a_whole_digest_is_written_as_the_stdlib_writes_it_and_signed(dkim_keys) -> None:  # noqa: F811
    for number in range(12):
        PaperFactory(title=f"Quantization café “{number}”", abstract="Quantization. " * (20 + number))
    SubscriberFactory(interests="quantization", next_send_at=timezone.now() - timedelta(minutes=1))
    (chunk,) = digests_dispatch()
    deliveries_send(delivery_ids=chunk)

    (email,) = mail.outbox
    msg = email.message()
    assert isinstance(msg, WrittenMessage) and len(email.body) > 1000
    written = msg.as_bytes(linesep="\r\n")
    assert written == stdlib_bytes(msg, "\r\n")
    assert dkim.verify(written, dnsfunc=dkim_keys)
    parsed = message_from_bytes(written, policy=policy.default)
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n") == email.alternatives[0].content


@hypothesis_settings(max_examples=500, deadline=None)
@given(text=texts)
def test_long_lines_are_those_django_sends_as_quoted_printable(text: str) -> None:
    django_says = any(len(line.encode(errors="surrogateescape")) > 998 for line in text.splitlines())

    assert has_long_lines(text) == django_says


@hypothesis_settings(max_examples=3000, deadline=None)
@given(
    data=st.lists(
        st.sampled_from([b"a", b"bb", b"ccccc", b"\n", b"\r", b"\r\n", b"\x0c", "é".encode()]), max_size=60
    ).map(b"".join),
    limit=st.integers(min_value=0, max_value=12),
)
def test_long_byte_lines_are_those_of_splitlines(data: bytes, limit: int) -> None:
    """The windowed search against the lines themselves, with short limits so that every way a line
    can meet a window's edge is tried."""
    lines = data.splitlines()
    assert long_byte_lines(data, limit) == (bool(lines) and max(map(len, lines)) > limit)
