"""Deployment checks (newsletter.checks)."""

from __future__ import annotations

import pytest

from newsletter.checks import check_bounce_mailbox, check_site_url


def ids(settings, site_url: str, allowed_hosts: list[str]) -> list[str]:
    settings.SITE_URL = site_url
    settings.ALLOWED_HOSTS = allowed_hosts
    return [message.id for message in check_site_url()]


def test_a_public_https_site_url_served_by_allowed_hosts_passes(settings) -> None:
    assert ids(settings, "https://digest.example.org", ["digest.example.org"]) == []
    assert ids(settings, "https://digest.example.org", [".example.org"]) == []


@pytest.mark.parametrize("site_url", ["http://digest.example.org", "digest.example.org", "", "https://"])
def test_a_site_url_that_is_not_https_is_an_error(settings, site_url: str) -> None:
    assert ids(settings, site_url, ["*"]) == ["newsletter.E001"]


@pytest.mark.parametrize("site_url", ["https://127.0.0.1:8000", "https://localhost", "https://[::1]:8000"])
def test_the_local_default_is_an_error(settings, site_url: str) -> None:
    assert ids(settings, site_url, ["*"]) == ["newsletter.E002"]


def test_a_host_outside_allowed_hosts_is_a_warning(settings) -> None:
    assert ids(settings, "https://digest.example.org", ["other.example.org"]) == ["newsletter.W003"]


def mailbox_ids(settings, url: str) -> list[str]:
    settings.NEWSLETTER_BOUNCE_MAILBOX = url
    return [message.id for message in check_bounce_mailbox()]


@pytest.mark.parametrize(
    "url",
    [
        "",
        "imaps://bounces:pw@mail.example.org/INBOX",
        "imap://bounces:pw@127.0.0.1:143/INBOX",
        "imap://bounces:pw@localhost/INBOX",
        "imap://bounces:pw@[::1]/INBOX",
        "maildir:///var/mail/bounces",
    ],
)
def test_a_bounce_mailbox_over_tls_or_on_this_machine_passes(settings, url: str) -> None:
    assert mailbox_ids(settings, url) == []


@pytest.mark.parametrize(
    "url",
    ["imap://user:pw@192.0.2.2/INBOX", "imap://user:pw@mail.example.org/INBOX", "imap://u:p@[2001:db8::1]/"],
)
def test_plain_imap_to_another_host_is_flagged(settings, url: str) -> None:
    assert mailbox_ids(settings, url) == ["newsletter.W009"]


def test_a_mailbox_scheme_nothing_reads_is_an_error(settings) -> None:
    assert mailbox_ids(settings, "pop3://user:pw@mail.example.org/") == ["newsletter.E009"]
