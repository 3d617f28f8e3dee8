"""VERP (variable envelope return path): each email's envelope sender names its recipient, signed.

With NEWSLETTER_BOUNCE_ADDRESS = "bounces@digest.example.org", the email to subscriber 1234 goes out
with `MAIL FROM:<bounces+ya.<signature>@digest.example.org>` (the id in base 36, then an HMAC of it
made by django.core.signing with a salt of this purpose only). Bounces go to that address, so the
bounce mailbox (services/deliverability/bounces.py) knows whose address failed even when the report itself is
unreadable, and a forged bounce cannot name an address it never received. The local part stays under
the 64 characters RFC 5321 allows; the From header is unchanged. Empty setting: no VERP.

The Message-ID of every email to a subscriber is signed too (another salt):
`<digest.ya.<12 hex of nonce>.<HMAC>@site>`, the HMAC cut to 96 bits so the header stays within the
78 characters that the email builder writes without folding (a forger gets one guess per message
sent to the bounce mailbox). A report that carries back the headers of what we sent proves by it which
subscriber the email went to, with VERP or without (an ARF complaint, a bounce to the plain From
address), and nothing is stored per email to check it. Both are read by `signed_subscriber_ids`
(deliverability/trust.py decides what they prove).
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.http import base36_to_int, int_to_base36

SALT = "newsletter.verp.bounce"
MESSAGE_ID_SALT = "newsletter.message-id"
_SIGNER_SEP = "."  # not in the signature's URL-safe base64 alphabet, and allowed in a local part
_TOKEN = re.compile(r"\+([0-9a-z]{1,13}\.[A-Za-z0-9_-]{20,64})@")
# Keep in step with message_id_make: <prefix>.<id in base 36>.<nonce>.<HMAC>@
_MESSAGE_ID_TOKEN = re.compile(r"<[\w-]{1,40}\.([0-9a-z]{1,13}\.[0-9a-f]{12})\.([A-Za-z0-9_-]{16})@")


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT, sep=_SIGNER_SEP)


def verp_address(*, subscriber_id: int) -> str | None:
    """The envelope sender for mail to this subscriber, or None when VERP is off."""
    base = settings.NEWSLETTER_BOUNCE_ADDRESS
    if not base:
        return None
    local, _, domain = base.rpartition("@")
    # _signer().sign(value), without deriving the Signer's key for every email (the same string).
    value = int_to_base36(subscriber_id)
    signature = signing.b64_encode(_mac(SALT + "signer", value, settings.SECRET_KEY)).decode()
    return f"{local}+{value}{_SIGNER_SEP}{signature}@{domain}"


def verp_subscriber_id(address: str) -> int | None:
    """The subscriber id a VERP address names, or None when it has no token or a forged one."""
    match = _TOKEN.search(address)
    if match is None:
        return None
    try:
        return base36_to_int(_signer().unsign(match.group(1)))
    except (signing.BadSignature, ValueError):
        return None


def message_id_make(*, subscriber_id: int, prefix: str, domain: str) -> str:
    """A unique Message-ID that names, signed, the subscriber the email goes to."""
    value = f"{int_to_base36(subscriber_id)}.{secrets.token_hex(6)}"
    return f"<{prefix}.{value}.{_message_id_mac(value, settings.SECRET_KEY)}@{domain}>"


def _message_id_mac(value: str, secret: str) -> str:
    return base64.urlsafe_b64encode(_mac(MESSAGE_ID_SALT, value, secret)[:12]).decode()


@lru_cache(maxsize=16)
def _keyed(key_salt: str, secret: str) -> hmac.HMAC:
    """salted_hmac(key_salt, <no value yet>, secret): it derives its key from the salt and the secret
    on every call, which is two more hashes for every email; made once, each MAC is a copy."""
    return salted_hmac(key_salt, b"", secret=secret, algorithm="sha256")


def _mac(key_salt: str, value: str, secret: str) -> bytes:
    """salted_hmac(key_salt, value, secret, algorithm="sha256").digest()."""
    mac = _keyed(key_salt, secret).copy()
    mac.update(value.encode())
    return mac.digest()


def signed_subscriber_ids(text: str) -> set[int]:
    """The subscribers named by every validly signed VERP address or Message-ID found in `text`
    (Message-IDs signed with SECRET_KEY_FALLBACKS count, as signing.Signer accepts them)."""
    found = set()
    for match in _TOKEN.finditer(text):
        try:
            found.add(base36_to_int(_signer().unsign(match.group(1))))
        except (signing.BadSignature, ValueError):
            continue
    secrets_ = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    for match in _MESSAGE_ID_TOKEN.finditer(text):
        value, mac = match.groups()
        if any(constant_time_compare(_message_id_mac(value, secret), mac) for secret in secrets_):
            found.add(base36_to_int(value.split(".")[0]))
    return found
