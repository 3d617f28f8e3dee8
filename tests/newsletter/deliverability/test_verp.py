"""VERP addresses and signed Message-IDs are signed with a key derived once per process: the strings
must stay those django.core.signing / salted_hmac give, or bounces to mail sent before stop proving
whose address failed."""

from __future__ import annotations

import base64
import re

from django.core import signing
from django.test import override_settings
from django.utils.crypto import salted_hmac
from django.utils.http import int_to_base36
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.services.deliverability.verp import (
    MESSAGE_ID_SALT,
    SALT,
    message_id_make,
    signed_subscriber_ids,
    verp_address,
    verp_subscriber_id,
)

secrets_ = st.text(min_size=1, max_size=60)
ids = st.integers(min_value=1, max_value=2**63 - 1)


@hypothesis_settings(max_examples=200, deadline=None)
@given(subscriber_id=ids, secret=secrets_)
def test_a_verp_address_is_signers_string(subscriber_id: int, secret: str) -> None:
    with override_settings(SECRET_KEY=secret, NEWSLETTER_BOUNCE_ADDRESS="bounces@digest.example.org"):
        token = signing.Signer(salt=SALT, sep=".").sign(int_to_base36(subscriber_id))
        address = verp_address(subscriber_id=subscriber_id)

        assert address == f"bounces+{token}@digest.example.org"
        assert verp_subscriber_id(address) == subscriber_id


@hypothesis_settings(max_examples=200, deadline=None)
@given(subscriber_id=ids, secret=secrets_)
def test_a_message_id_carries_salted_hmacs_signature(subscriber_id: int, secret: str) -> None:
    with override_settings(SECRET_KEY=secret, SECRET_KEY_FALLBACKS=[]):
        message_id = message_id_make(subscriber_id=subscriber_id, prefix="digest", domain="example.org")
        value, mac = re.fullmatch(r"<digest\.(\w+\.\w+)\.([\w-]+)@example\.org>", message_id).groups()
        expected = salted_hmac(MESSAGE_ID_SALT, value, secret=secret, algorithm="sha256").digest()[:12]

        assert mac == base64.urlsafe_b64encode(expected).decode()
        assert signed_subscriber_ids(f"Message-ID: {message_id}") == {subscriber_id}
