"""Production settings must pass Django's deployment checks with no warning, and refuse unsafe values."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def production_check(**overrides: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "x" * 30 + "-a-long-random-production-secret-key-0123456789",
        "ALLOWED_HOSTS": "digest.example.org",
        "SITE_URL": "https://digest.example.org",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
        **overrides,
    }
    env = {k: v for k, v in env.items() if v}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_for_production_settings() -> None:
    result = production_check()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(
        {"DJANGO_SETTINGS_MODULE": "config.settings.production", "ALLOWED_HOSTS": "digest.example.org"}
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_settings_refuse_to_start_without_site_url() -> None:
    result = production_check(SITE_URL="")

    assert result.returncode != 0
    assert "SITE_URL" in result.stderr


def test_production_settings_refuse_a_site_url_that_is_not_https() -> None:
    result = production_check(SITE_URL="http://digest.example.org")

    assert result.returncode != 0
    assert "SITE_URL must be the public https:// address" in result.stderr


def test_check_deploy_refuses_a_site_url_on_this_machine() -> None:
    result = production_check(SITE_URL="https://127.0.0.1:8000", ALLOWED_HOSTS="127.0.0.1")

    assert result.returncode != 0
    assert "newsletter.E002" in result.stderr


def test_each_xdist_worker_of_the_suite_gets_a_redis_db_of_its_own() -> None:
    def broker(**env: str) -> str:
        base = {k: v for k, v in os.environ.items() if k not in {"PYTEST_XDIST_WORKER", "TEST_REDIS_URL"}}
        result = subprocess.run(
            [sys.executable, "-c", "from django.conf import settings; print(settings.CELERY_BROKER_URL)"],
            cwd=REPO,
            env={**base, "DJANGO_SETTINGS_MODULE": "config.settings.test", **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    url = "redis://127.0.0.1:6379/13"
    assert broker(TEST_REDIS_URL=url) == url  # one process: the configured db
    assert [broker(TEST_REDIS_URL=url, PYTEST_XDIST_WORKER=f"gw{n}") for n in range(3)] == [
        "redis://127.0.0.1:6379/13",
        "redis://127.0.0.1:6379/12",
        "redis://127.0.0.1:6379/11",
    ]
    assert broker(TEST_REDIS_URL="redis://:secret@10.0.0.5:6380/1", PYTEST_XDIST_WORKER="gw3") == (
        "redis://:secret@10.0.0.5:6380/14"
    )
