"""Benchmark settings (`make bench`): a database and a Redis db of its own, quiet per-email logs.

The benchmark wipes the newsletter and papers tables of BENCH_DATABASE_URL; never point it at real data.
"""

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, LOGGING, env

BENCHMARK = True
DEBUG = False
DATABASES = {
    "default": env.db("BENCH_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/paper_digest_bench"),
}
CELERY_BROKER_URL = env("BENCH_REDIS_URL", default="redis://127.0.0.1:6379/14")
NEWSLETTER_LIMITER_REDIS_URL = CELERY_BROKER_URL
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SITE_URL = "https://digest.example.org"
EMAIL_BACKEND = env("EMAIL_BACKEND", default="bench.backends.SerializeOnlyBackend")
# Records per-task timings, query counts and memory of the worker processes (bench/apps.py).
INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}
