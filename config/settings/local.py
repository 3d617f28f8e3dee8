"""Local development: DEBUG on, mail goes to the local outbox (read it at /dev/outbox/)."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
EMAIL_BACKEND = env("EMAIL_BACKEND", default="newsletter.outbox.OutboxBackend")
