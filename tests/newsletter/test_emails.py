"""The one email builder (newsletter.services.emails): parts, list headers, DKIM."""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import dkim
import pytest
from django.core import mail
from django.core.mail import get_connection
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.models import Delivery
from newsletter.services.delivery import deliveries_send
from newsletter.services.digest_templates import digest_render
from newsletter.services.dispatch import digests_dispatch
from newsletter.services.emails import HEADER_POLICY, RenderedEmail, _dkim_key, build_email, render_email
from newsletter.services.tokens import Purpose, token_subscriber
from tests.factories import PaperFactory, SubscriberFactory

DIGEST_VALUES = {
    "subject": "Ask2Mask and 1 more paper on speech & audio",
    "intro": "2 papers new to you since your last digest.",
    "count_label": "2 papers",
    "period_label": "Monday 12 January",
    "email": "reader@example.org",
    "frequency_label": "daily",
    "manage_url": "https://digest.example.org/manage/t/",
    "unsubscribe_url": "https://digest.example.org/unsubscribe/t/",
    "web_url": "https://digest.example.org/digests/t/",
    "site_url": "https://digest.example.org",
}


def parsed(message) -> EmailMessage:
    """What a receiving server would parse from the bytes Django sends."""
    return message_from_bytes(message.message().as_bytes(linesep="\r\n"), policy=policy.default)


def list_email(*, html: bool = True, unsubscribe_url: str = DIGEST_VALUES["unsubscribe_url"]):
    rendered = RenderedEmail(
        subject="2 new papers for you", text="Plain text body", html="<p>HTML body</p>" if html else None
    )
    return build_email(
        "digest", to="reader@example.org", context={}, unsubscribe_url=unsubscribe_url, rendered=rendered
    )


# --- parts and headers -------------------------------------------------------------------------


def test_html_email_is_multipart_alternative_with_text_first() -> None:
    message = parsed(list_email())

    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert message.get_body(("plain",)).get_content().strip() == "Plain text body"
    assert message.get_body(("html",)).get_content().strip() == "<p>HTML body</p>"


def test_plain_text_subscribers_get_a_single_text_part() -> None:
    message = parsed(list_email(html=False))

    assert message.get_content_type() == "text/plain"
    assert not message.is_multipart()
    assert message.get_content().strip() == "Plain text body"


def test_list_headers(settings) -> None:
    message = parsed(list_email())

    assert message["List-Unsubscribe"].strip() == f"<{DIGEST_VALUES['unsubscribe_url']}>"
    assert message["List-Unsubscribe"].strip().startswith("<https://")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == settings.NEWSLETTER_LIST_ID
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["From"] == settings.DEFAULT_FROM_EMAIL
    assert message["To"] == "reader@example.org"
    message_id = message["Message-ID"].strip()
    assert message_id.startswith("<") and message_id.endswith("@digest.example.org>")


def test_message_ids_are_unique() -> None:
    ids = {parsed(list_email())["Message-ID"].strip() for _ in range(50)}

    assert len(ids) == 50


def test_transactional_email_has_no_unsubscribe_headers() -> None:
    context = {
        "subscriber": {"email": "new@example.org"},
        "confirm_url": "https://digest.example.org/confirm/t/",
        "site_url": "https://digest.example.org",
        "confirm_days": 7,
    }
    message = parsed(build_email("confirm", to="new@example.org", context=context))

    assert message["Subject"] == "Confirm your Paper Digest subscription"
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None
    assert message["Message-ID"] and message["List-Id"]
    assert "https://digest.example.org/confirm/t/" in message.get_body(("plain",)).get_content()
    assert 'href="https://digest.example.org/confirm/t/"' in message.get_body(("html",)).get_content()


def test_render_email_inlines_css() -> None:
    rendered = render_email("empty", DIGEST_VALUES)

    assert '<p class="intro" style="' in rendered.html
    assert "Nothing new this week" in rendered.text


def test_subject_cannot_inject_headers() -> None:
    # The subject names the lead paper: a title with line breaks must not start a header.
    rendered = digest_render(
        items=[], values={**DIGEST_VALUES, "subject": "Ask2Mask\r\nBcc: victim@example.org\n"}, html=False
    )
    message = parsed(build_email("digest", to="reader@example.org", context={}, rendered=rendered))

    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert message["Bcc"] is None
    assert message["Subject"] == "Ask2Mask Bcc: victim@example.org"


@pytest.mark.django_db
def test_digest_list_unsubscribe_is_the_subscribers_one_click_link(settings) -> None:
    PaperFactory(title="Quantization for all", abstract="Quantization.")
    subscriber = SubscriberFactory(
        interests="quantization", next_send_at=timezone.now() - timedelta(minutes=1)
    )
    (chunk,) = digests_dispatch()
    deliveries_send(delivery_ids=chunk)

    (message,) = mail.outbox
    url = message.extra_headers["List-Unsubscribe"].strip("<>")
    assert url.startswith(f"{settings.SITE_URL}/unsubscribe/") and url.startswith("https://")
    assert (
        token_subscriber(token=url.rstrip("/").rsplit("/", 1)[1], purpose=Purpose.UNSUBSCRIBE) == subscriber
    )
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The same link is in both parts.
    assert url in message.body
    assert url in message.alternatives[0].content
    assert Delivery.objects.get().message_id == message.extra_headers["Message-ID"]


# --- DKIM --------------------------------------------------------------------------------------


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der_sequence_of_integers(*values: int) -> bytes:
    body = b""
    for value in values:
        encoded = value.to_bytes(value.bit_length() // 8 + 1, "big")  # room for the sign bit
        body += b"\x02" + _der_length(len(encoded)) + encoded
    return b"\x30" + _der_length(len(body)) + body


def _probable_prime(bits: int, rng: random.Random) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (0b11 << (bits - 2)) | 1  # top two bits: a full-size modulus
        if any(candidate % p == 0 for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
            continue
        d, r = candidate - 1, 0
        while d % 2 == 0:
            d, r = d // 2, r + 1
        for _ in range(40):  # Miller-Rabin
            x = pow(rng.randrange(2, candidate - 1), d, candidate)
            if x in (1, candidate - 1):
                continue
            for _ in range(r - 1):
                x = pow(x, 2, candidate)
                if x == candidate - 1:
                    break
            else:
                break
        else:
            return candidate


def rsa_key_pair(bits: int = 1024, seed: int = 2026) -> tuple[bytes, bytes]:
    """(PEM private key, DER RSAPublicKey) of a fresh RSA key; no crypto package is installed."""
    rng = random.Random(seed)
    e = 65537
    while True:
        p, q = _probable_prime(bits // 2, rng), _probable_prime(bits // 2, rng)
        phi = (p - 1) * (q - 1)
        if p != q and math.gcd(e, phi) == 1:
            break
    n, d = p * q, pow(e, -1, phi)
    private = _der_sequence_of_integers(0, n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))
    lines = base64.encodebytes(private).decode().strip()
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{lines}\n-----END RSA PRIVATE KEY-----\n".encode()
    return pem, _der_sequence_of_integers(n, e)


@pytest.fixture
def dkim_keys(settings, tmp_path) -> Iterator[Callable]:
    """Configure DKIM signing with a fresh key; yields a DNS lookup that serves its public key."""
    private_pem, public_der = rsa_key_pair()
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(private_pem)
    settings.DKIM_SELECTOR = "digest2026"
    settings.DKIM_DOMAIN = "digest.example.org"
    settings.DKIM_PRIVATE_KEY_PATH = str(key_file)
    _dkim_key.cache_clear()
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)
    lookups: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        lookups.append(name)
        return record if name == b"digest2026._domainkey.digest.example.org." else None

    dns.lookups = lookups
    yield dns
    _dkim_key.cache_clear()


def test_no_dkim_signature_without_a_key(settings) -> None:
    settings.DKIM_SELECTOR = settings.DKIM_DOMAIN = settings.DKIM_PRIVATE_KEY_PATH = ""
    _dkim_key.cache_clear()

    assert parsed(list_email())["DKIM-Signature"] is None


def test_dkim_signature_verifies(dkim_keys) -> None:
    raw = list_email().message().as_bytes(linesep="\r\n")

    assert dkim.verify(raw, dnsfunc=dkim_keys)
    assert dkim_keys.lookups == [b"digest2026._domainkey.digest.example.org."]
    signature = message_from_bytes(raw, policy=policy.default)["DKIM-Signature"]
    tags = dict(part.strip().split("=", 1) for part in str(signature).split(";") if part.strip())
    assert tags["d"] == "digest.example.org" and tags["s"] == "digest2026"
    assert tags["c"] == "relaxed/relaxed"
    signed = tags["h"].replace(" ", "").lower().split(":")
    assert {"from", "subject", "list-unsubscribe", "list-unsubscribe-post", "message-id"} <= set(signed)


def test_dkim_detects_tampering(dkim_keys) -> None:
    raw = list_email().message().as_bytes(linesep="\r\n")

    assert not dkim.verify(raw.replace(b"Plain text body", b"Plain text b0dy"), dnsfunc=dkim_keys)
    assert not dkim.verify(
        raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"),
        dnsfunc=dkim_keys,
    )


@pytest.mark.django_db
def test_dkim_signature_survives_smtp(dkim_keys, smtp_sink) -> None:
    messages = [list_email(), list_email(html=False)]

    with get_connection() as connection:
        assert connection.send_messages(messages) == 2

    assert len(smtp_sink.messages) == 2
    for received in smtp_sink.messages:
        assert dkim.verify(received.content, dnsfunc=dkim_keys)


# --- the header fast path: byte for byte what compat32 writes ----------------------------------

_HEADER_PIECES = [*" \t;,:=?\"'<>()@.-_/abcXYZ019", "=?utf-8?q?x?=", "é", "“", "\r\n ", "\n", "  "]


def _folded(policy_, name: str, value: str, linesep: str) -> bytes | type[Exception]:
    try:
        return policy_.clone(linesep=linesep).fold_binary(name, value)
    except Exception as exc:  # compat32 refuses an embedded header; the fast path must refuse it too
        return type(exc)


@hypothesis_settings(max_examples=3000, deadline=None)
@given(
    name=st.sampled_from(["Subject", "To", "List-Unsubscribe", "Message-ID", "X-A-Rather-Long-Header-Name"]),
    value=st.lists(st.sampled_from(_HEADER_PIECES), max_size=120).map("".join),
    linesep=st.sampled_from(["\n", "\r\n"]),
)
def test_header_policy_writes_what_compat32_writes(name: str, value: str, linesep: str) -> None:
    assert _folded(HEADER_POLICY, name, value, linesep) == _folded(policy.compat32, name, value, linesep)


# One "word" around the line limit: the List-Unsubscribe URL, with every ASCII character str.isspace
# or str.splitlines knows, a splitchar of Header (";" ","), and a non-ASCII one.
_WORD_PIECES = [*"<>:/._-=aZ9;,", "x" * 20, " ", "\t", "\n", "\r", "\x0b", "\x0c", *"\x1c\x1d\x1e\x1f", "é"]


@hypothesis_settings(max_examples=3000, deadline=None)
@given(
    name=st.sampled_from(["List-Unsubscribe", "Message-ID", "X"]),
    value=st.lists(st.sampled_from(_WORD_PIECES), min_size=1, max_size=12).map("".join),
    filler=st.integers(min_value=40, max_value=120),
    linesep=st.sampled_from(["\n", "\r\n"]),
)
def test_a_long_word_is_moved_to_a_line_of_its_own_as_compat32_does(name, value, filler, linesep) -> None:
    value = "<https://digest.example.org/" + "u" * filler + value
    assert _folded(HEADER_POLICY, name, value, linesep) == _folded(policy.compat32, name, value, linesep)


def test_digest_bytes_are_unchanged_by_the_header_policy() -> None:
    message = build_email(
        "digest",
        to="Ünïcode Reader <reader@example.org>",
        context={},
        unsubscribe_url="https://digest.example.org/unsubscribe/" + "t" * 120 + "/",
        rendered=RenderedEmail(subject="Ça marche: " + "long subject " * 10, text="x\n", html="<p>y</p>\n"),
    )
    msg = message.message()
    assert msg.policy is HEADER_POLICY
    fast = msg.as_bytes(linesep="\r\n")
    msg.policy = policy.compat32
    assert msg.as_bytes(linesep="\r\n") == fast
    subject = fast.split(b"\r\nSubject: ", 1)[1].split(b"\r\nFrom:", 1)[0]
    assert subject.lstrip().startswith(b"=?utf-8?q?") and subject.count(b"\r\n ") > 1  # compat32 folded it


def test_digest_bytes_are_those_of_the_stock_generator() -> None:
    """ListEmail serializes its text parts a whole part at a time: the bytes are the stock ones,
    for multipart and single-part mail, with and without a final newline, in both line endings."""
    html = "<!DOCTYPE html>\n<p>Zoë &amp; café</p>\n\n<p>" + "x" * 900 + "</p>"  # no final newline
    for rendered in (
        RenderedEmail(
            subject="Ask2Mask and 9 more", text="1. Zoë\n   https://arxiv.org/abs/1\n\n", html=html
        ),
        RenderedEmail(subject="Plain", text="one line\r\nand a CRLF one\nlast", html=None),
    ):
        msg = build_email("digest", to="reader@example.org", context={}, rendered=rendered).message()
        for linesep in ("\r\n", "\n"):
            stdlib = msg.stdlib()  # the message Django builds, written by its SafeMIME*.as_bytes
            stock = type(stdlib).as_bytes(stdlib, linesep=linesep)

            assert msg.as_bytes(linesep=linesep) == stock
            assert rendered.text.splitlines()[0].encode() in stock
