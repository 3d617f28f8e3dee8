"""The local settings on a fresh database: `migrate` is the only set-up step a deployment needs."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration

# One sign-up through Django's test client, in a process of its own, with the local settings.
SIGN_UP = """
import sys, django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client()
client.get("/subscribe/")
data = {"email": sys.argv[1], "interests": "speech", "frequency": "daily", "weekday": "0", "send_hour": "8",
        "timezone": "UTC", "papers_per_digest": "10", "email_format": "html", "website": ""}
print(client.post("/subscribe/", data, REMOTE_ADDR=sys.argv[2]).status_code)
"""

# A reader with a like on the zero-setup database (SQLite): the manage page and a digest sent now.
# The test suite runs on PostgreSQL; this is what `make run` runs on.
READER_ON_SQLITE = """
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment
from django.utils import timezone
setup_test_environment()
from newsletter.models import Delivery, Feedback
from newsletter.services.tokens import Purpose, token_make
from papers.models import Paper
from tests.factories import SubscriberFactory
call_command("ingest_papers", "papers/sample_data", verbosity=0)
reader = SubscriberFactory(interests="speech recognition, text to speech", next_send_at=timezone.now())
ask2mask = Paper.objects.get(title__startswith="Ask2Mask:")
Feedback.objects.create(subscriber=reader, paper=ask2mask, choice="more")
manage = Client().get(f"/manage/{token_make(subscriber=reader, purpose=Purpose.MANAGE)}/")
call_command("send_digests", "--now", verbosity=0)
from django.core import mail
print(manage.status_code, Delivery.objects.get().status, len(mail.outbox))
"""


def local(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        "EMAIL_OUTBOX_DIR": str(tmp_path / "outbox"),
        "CELERY_BROKER_URL": "memory://",  # never reach a running dev worker's queue
        "NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR": "1",
    }
    env.pop("CACHE_URL", None)
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )


def test_migrate_alone_gives_a_working_sign_up_with_a_limit_shared_between_processes(tmp_path) -> None:
    migrated = local(tmp_path, "manage.py", "migrate", "--noinput", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    # A fresh bucket per run: IPv6 clients are limited per /64, so the random part is the network.
    address = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"

    first = local(tmp_path, "-c", SIGN_UP, "first@example.org", address)
    second = local(tmp_path, "-c", SIGN_UP, "second@example.org", address)

    assert first.stdout.split() == ["302"], first.stderr
    assert second.stdout.split() == ["429"], second.stderr  # the first process's count was seen


def test_a_busy_web_port_is_reported_with_what_to_do() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "scripts/port_free.py", str(port)], cwd=REPO, capture_output=True, text=True
        )

    assert result.returncode == 1
    assert f"Port {port} is already in use" in result.stdout
    assert f"make run WEB_PORT={port + 1}" in result.stdout


def test_a_reader_with_a_like_gets_the_manage_page_and_a_digest_on_sqlite(tmp_path) -> None:
    migrated = local(tmp_path, "manage.py", "migrate", "--noinput", "-v0")
    assert migrated.returncode == 0, migrated.stderr

    result = local(tmp_path, "-c", READER_ON_SQLITE)

    assert result.stdout.splitlines()[-1].split() == ["200", "sent", "1"], result.stderr[-3000:]
