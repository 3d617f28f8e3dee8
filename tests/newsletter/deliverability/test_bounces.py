"""Bounces without an ESP (deliverability.bounces, verp): the signed envelope sender, reading
reports and auto-replies, the webhooks' suppression rules, a Maildir and a real Dovecot IMAP server."""

from __future__ import annotations

import mailbox
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core import signing
from imapclient import IMAPClient

from newsletter.models import EmailEvent, Subscriber, Suppression
from newsletter.services.deliverability.bounces import bounce_handle, bounce_mailbox_process, bounce_parse
from newsletter.services.deliverability.mailbox import InsecureMailbox
from newsletter.services.deliverability.verp import SALT, verp_address, verp_subscriber_id
from newsletter.services.emails import build_email
from tests.conftest import FIXTURES
from tests.factories import SubscriberFactory
from tests.newsletter.deliverability.test_trust import many_parts, nested
from tests.support import DovecotServer

pytestmark = pytest.mark.django_db

BOUNCES = FIXTURES / "bounces"


@pytest.fixture(autouse=True)
def verp(settings) -> None:
    settings.NEWSLETTER_BOUNCE_ADDRESS = "bounces@digest.example.org"


def report(name: str, subscriber: Subscriber | None = None, *, message_id: str | None = None) -> bytes:
    text = (BOUNCES / name).read_bytes()
    if subscriber is not None:
        text = text.replace(b"{verp}", verp_address(subscriber_id=subscriber.pk).encode())
        text = text.replace(b"{to}", subscriber.email.encode())
    if message_id is not None:
        text = text.replace(b"SOFT-ID", message_id.encode())
    return text


def suppressed() -> dict[str, str]:
    return dict(Suppression.objects.values_list("email", "reason"))


# --- VERP ----------------------------------------------------------------------------------------


def test_digest_envelope_sender_names_the_subscriber_and_from_is_unchanged(settings) -> None:
    subscriber = SubscriberFactory()
    message = build_email(
        "confirm", to=subscriber.email, context={"confirm_url": "https://x/"}, bounce_id=subscriber.pk
    )
    local, _, domain = message.from_email.rpartition("@")
    assert domain == "digest.example.org" and local.startswith("bounces+")
    assert len(local) <= 64
    assert message.message()["From"] == settings.DEFAULT_FROM_EMAIL
    assert verp_subscriber_id(message.from_email) == subscriber.pk


def test_a_forged_or_foreign_verp_token_names_nobody() -> None:
    genuine = verp_address(subscriber_id=42)
    token = genuine.split("+", 1)[1].split("@")[0]
    other_purpose = signing.Signer(salt="newsletter.token.unsubscribe", sep=".").sign("16")
    assert verp_subscriber_id(genuine) == 42
    assert verp_subscriber_id(genuine.replace(token, "zz." + token.split(".", 1)[1])) is None
    assert verp_subscriber_id(f"bounces+{other_purpose}@digest.example.org") is None
    assert verp_subscriber_id("bounces@digest.example.org") is None
    assert SALT == "newsletter.verp.bounce"


def test_without_a_bounce_address_there_is_no_verp(settings) -> None:
    settings.NEWSLETTER_BOUNCE_ADDRESS = ""
    message = build_email("confirm", to="a@example.org", context={"confirm_url": "https://x/"}, bounce_id=1)
    assert message.from_email == settings.DEFAULT_FROM_EMAIL


# --- reading reports -----------------------------------------------------------------------------


def test_reports_are_classified() -> None:
    reader = SubscriberFactory(email="reader@example.org")
    assert bounce_parse(report("dsn_hard.eml", reader)).kind == "hard"
    assert bounce_parse(report("dsn_soft.eml", reader)).kind == "soft"
    assert bounce_parse(report("autoreply.eml", reader)).kind == "autoreply"
    no_verp = bounce_parse(report("exim_no_verp.eml", reader))  # names the reader, proves nothing
    assert (no_verp.kind, no_verp.emails, no_verp.unverified) == ("hard", (), ("reader@example.org",))


def test_a_hard_bounce_suppresses_at_once_through_the_webhooks_rules() -> None:
    reader, other = SubscriberFactory(), SubscriberFactory()
    assert bounce_handle(raw=report("dsn_hard.eml", reader)) == "hard"
    assert suppressed() == {reader.email: Suppression.Reason.HARD_BOUNCE}
    event = EmailEvent.objects.get()
    assert (event.esp_name, event.bounce_kind, event.email) == ("mailbox", "hard", reader.email)
    assert "5.1.1" in event.description
    assert other.email not in suppressed()


def test_the_same_report_twice_changes_nothing() -> None:
    reader = SubscriberFactory()
    assert bounce_handle(raw=report("dsn_hard.eml", reader)) == "hard"
    assert bounce_handle(raw=report("dsn_hard.eml", reader)) == "duplicate"
    assert EmailEvent.objects.count() == 1


def test_soft_bounces_count_and_the_third_suppresses() -> None:
    reader = SubscriberFactory()
    for n in range(1, 4):
        assert bounce_handle(raw=report("dsn_soft.eml", reader, message_id=f"soft-{n}")) == "soft"
        expected = {reader.email: Suppression.Reason.SOFT_BOUNCES} if n == 3 else {}
        assert suppressed() == expected


def test_auto_replies_and_strangers_change_nothing() -> None:
    reader = SubscriberFactory()
    stranger_report = report("exim_no_verp.eml").replace(b"{to}", b"stranger@example.com")
    assert bounce_handle(raw=report("autoreply.eml", reader)) == "autoreply"
    assert bounce_handle(raw=stranger_report) == "none"
    assert suppressed() == {} and EmailEvent.objects.count() == 0


# --- the mailbox ---------------------------------------------------------------------------------


@pytest.fixture
def maildir(tmp_path: Path) -> mailbox.Maildir:
    return mailbox.Maildir(tmp_path / "bounces", create=True)


def test_maildir_run_moves_each_message_and_a_second_run_changes_nothing(maildir, tmp_path) -> None:
    hard, soft = SubscriberFactory(), SubscriberFactory()
    for raw in (
        report("dsn_hard.eml", hard),
        report("dsn_soft.eml", soft),
        report("autoreply.eml", soft),
        report("malformed.eml"),
    ):
        maildir.add(raw)
    url = f"maildir://{tmp_path / 'bounces'}"

    first = bounce_mailbox_process(url=url)

    assert first.counts == {"hard": 1, "soft": 1, "autoreply": 1, "malformed": 1}
    assert suppressed() == {hard.email: Suppression.Reason.HARD_BOUNCE}
    assert len(maildir) == 0
    assert len(maildir.get_folder("Processed")) == 3 and len(maildir.get_folder("Malformed")) == 1
    events = EmailEvent.objects.count()

    maildir.add(report("dsn_hard.eml", hard))  # the same report delivered again
    second = bounce_mailbox_process(url=url)
    assert second.counts == {"duplicate": 1}
    assert EmailEvent.objects.count() == events
    assert suppressed() == {hard.email: Suppression.Reason.HARD_BOUNCE}


def poison(reader: Subscriber) -> list[bytes]:
    """Messages that broke or stalled every run, each followed in the tests by a genuine report."""
    nul_id = report("dsn_hard.eml", reader).replace(
        b"<20261123100000.hard1@mx.example.net>", b"<nul\x00id@mx.example.net>"
    )
    return [nested(1000), many_parts(120_000), nul_id, b"From: x@example.org\n\n" + b"x" * (6 << 20)]


def test_poison_messages_are_set_aside_and_the_reports_behind_them_are_read(maildir, tmp_path) -> None:
    victim, reader = SubscriberFactory(), SubscriberFactory()
    for raw in (*poison(victim), report("dsn_hard.eml", reader)):
        maildir.add(raw)

    run = bounce_mailbox_process(url=f"maildir://{tmp_path / 'bounces'}")

    # The NUL in the Message-ID is dropped, not a DataError: that report is a genuine one.
    assert run.counts == {"malformed": 3, "hard": 2}
    assert suppressed() == {
        victim.email: Suppression.Reason.HARD_BOUNCE,
        reader.email: Suppression.Reason.HARD_BOUNCE,
    }
    assert len(maildir) == 0 and len(maildir.get_folder("Malformed")) == 3


def test_a_message_that_fails_midway_is_set_aside_with_nothing_half_written(
    maildir, tmp_path, monkeypatch
) -> None:
    """Whatever breaks on one message (here the suppression step, after its event was inserted)."""
    soft, hard = SubscriberFactory(), SubscriberFactory()
    maildir.add(report("dsn_soft.eml", soft))
    maildir.add(report("dsn_hard.eml", hard))
    from newsletter.services.deliverability import bounces

    def process_or_fail(*, event_id: int) -> None:
        if EmailEvent.objects.get(pk=event_id).email == soft.email:
            raise ValueError("a bug met by one message")
        real(event_id=event_id)

    real = bounces.event_process
    monkeypatch.setattr(bounces, "event_process", process_or_fail)
    run = bounce_mailbox_process(url=f"maildir://{tmp_path / 'bounces'}")

    assert run.counts == {"malformed": 1, "hard": 1}
    assert list(EmailEvent.objects.values_list("email", flat=True)) == [hard.email]
    assert suppressed() == {hard.email: Suppression.Reason.HARD_BOUNCE}


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    if not DovecotServer.available():
        pytest.skip("dovecot is not installed (make test installs dovecot-imapd)")
    with DovecotServer() as server:
        yield server


def imap(server: DovecotServer, user: str) -> IMAPClient:
    client = IMAPClient(server.host, port=server.port, ssl=False)
    client.login(user, server.password)
    return client


def test_imap_mailbox_on_a_real_dovecot(dovecot: DovecotServer) -> None:
    hard, soft = SubscriberFactory(), SubscriberFactory()
    client = imap(dovecot, "bounces")
    for raw in (report("dsn_hard.eml", hard), report("dsn_soft.eml", soft), report("malformed.eml")):
        client.append("INBOX", raw)

    first = bounce_mailbox_process(url=dovecot.url("bounces"))

    assert first.counts == {"hard": 1, "soft": 1, "malformed": 1}, dovecot.log()
    assert suppressed() == {hard.email: Suppression.Reason.HARD_BOUNCE}
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    assert client.select_folder("Processed")[b"EXISTS"] == 2
    assert client.select_folder("Malformed")[b"EXISTS"] == 1

    events = list(EmailEvent.objects.values_list("event_id", flat=True))
    client.append("INBOX", report("dsn_hard.eml", hard))
    client.append("INBOX", report("dsn_soft.eml", soft))
    second = bounce_mailbox_process(url=dovecot.url("bounces"))
    client.logout()

    assert second.counts == {"duplicate": 2}
    assert sorted(EmailEvent.objects.values_list("event_id", flat=True)) == sorted(events)
    assert suppressed() == {hard.email: Suppression.Reason.HARD_BOUNCE}


def test_poison_messages_in_imap_are_moved_to_malformed_and_the_run_goes_on(dovecot: DovecotServer) -> None:
    victim, reader = SubscriberFactory(), SubscriberFactory()
    client = imap(dovecot, "bounces")
    for raw in (*poison(victim), report("dsn_hard.eml", reader)):
        client.append("INBOX", raw)

    run = bounce_mailbox_process(url=dovecot.url("bounces"))

    assert run.counts == {"malformed": 3, "hard": 2}, dovecot.log()
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    assert client.select_folder("Malformed")[b"EXISTS"] == 3
    client.logout()
    assert reader.email in suppressed()


def test_an_unreachable_mailbox_is_an_error_not_a_silent_success(dovecot: DovecotServer) -> None:
    with pytest.raises(Exception, match=r"(?i)auth|login"):
        bounce_mailbox_process(url=dovecot.url("bounces").replace(dovecot.password, "wrong"))


# --- the password never crosses the network in clear (plain imap:// to another host) -------------


def this_machines_address() -> str:
    """An address of this machine that is not loopback (the route to a documentation network)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # UDP: nothing is sent
        except OSError:
            pytest.skip("this machine has no address but loopback")
        address = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    return address


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, Path]:
    """A self-signed certificate (and its key, in one PEM file) for this machine's address."""
    address = this_machines_address()
    pem = tmp_path / "dovecot.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={address}",
         "-addext", f"subjectAltName=IP:{address}", "-keyout", str(tmp_path / "key.pem"),
         "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    pem.write_bytes((tmp_path / "cert.pem").read_bytes() + (tmp_path / "key.pem").read_bytes())
    pem.chmod(0o644)
    return address, pem


def logins(server: DovecotServer) -> list[str]:
    return [line for line in server.log().splitlines() if "Login: user=" in line]


def test_plain_imap_to_another_host_without_starttls_is_refused_before_login() -> None:
    if not DovecotServer.available():
        pytest.skip("dovecot is not installed (make test installs dovecot-imapd)")
    with DovecotServer(host=this_machines_address()) as server:
        with pytest.raises(InsecureMailbox, match="STARTTLS"):
            bounce_mailbox_process(url=server.url("bounces"))
        assert logins(server) == []


def test_plain_imap_to_another_host_logs_in_over_starttls(certificate, monkeypatch) -> None:
    if not DovecotServer.available():
        pytest.skip("dovecot is not installed (make test installs dovecot-imapd)")
    address, pem = certificate
    reader = SubscriberFactory()
    with DovecotServer(host=address, certificate=pem) as server:
        with pytest.raises(InsecureMailbox, match=r"(?i)certificate"):  # not trusted yet: no login
            bounce_mailbox_process(url=server.url("bounces"))
        assert logins(server) == []

        monkeypatch.setenv("SSL_CERT_FILE", str(pem))  # now trusted, like a CA-signed certificate
        client = IMAPClient(server.host, port=server.port, ssl=False)
        client.starttls(ssl.create_default_context())
        client.login("bounces", server.password)
        client.append("INBOX", report("dsn_hard.eml", reader))
        client.logout()
        run = bounce_mailbox_process(url=server.url("bounces"))

        assert run.counts == {"hard": 1}
        assert len(logins(server)) == 2 and all(", TLS" in line for line in logins(server)), server.log()
    assert suppressed() == {reader.email: Suppression.Reason.HARD_BOUNCE}
