"""Test settings: PostgreSQL and Redis on localhost, fast hashing, in-memory cache."""

import os
from urllib.parse import urlsplit, urlunsplit

from .base import *  # noqa: F403
from .base import MIDDLEWARE, env


def _redis_db_of_worker(url: str, worker: str) -> str:
    """`make test` runs the suite in pytest-xdist workers gw0, gw1, ...: pytest-django gives each a
    database of its own, and this gives each a Redis db of its own, counting down from the URL's
    (13, 12, 11, ...), so that one worker's broker flushes and limiter keys never meet another's. The
    Celery workers and commands a test starts inherit PYTEST_XDIST_WORKER, so they land on the same db."""
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db - int(worker[2:])) % 16}"))


DATABASES = {
    "default": env.db("TEST_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/test"),
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# pytest-django forces locmem in the test process; worker subprocesses started by the fault tests
# pass EMAIL_BACKEND / EMAIL_URL to reach the test's SMTP server.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.locmem.EmailBackend")
SITE_URL = "https://digest.example.org"
ALLOWED_HOSTS = ["*"]
# A database of its own on the shared Redis, so tests never touch a running dev worker's queue.
CELERY_BROKER_URL = _redis_db_of_worker(
    env("TEST_REDIS_URL", default="redis://127.0.0.1:6379/13"), os.environ.get("PYTEST_XDIST_WORKER", "")
)
NEWSLETTER_LIMITER_REDIS_URL = CELERY_BROKER_URL
# Tasks run in-process unless a test starts a real worker (tests/integration).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
if env("TEST_WORKER_LOG", default=""):
    # Worker subprocesses of the fault tests log to a file the test can show on failure.
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": env("TEST_WORKER_LOG")}},
        "root": {"handlers": ["file"], "level": "INFO"},
    }
# WhiteNoise serves collected files; tests use the staticfiles finders instead.
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("whitenoise")]
