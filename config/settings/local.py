"""Local development: DEBUG on, mail goes to the local outbox (read it at /dev/outbox/)."""

import os

from .base import *  # noqa: F403
from .base import BASE_DIR, SITE_URL, env

DEBUG = env.bool("DEBUG", default=True)
EMAIL_BACKEND = env("EMAIL_BACKEND", default="newsletter.outbox.OutboxBackend")


def _run_env() -> dict[str, str]:
    path = BASE_DIR / "var" / "run.env"
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


# `make run` records the address it serves (from WEB_PORT) in var/run.env (scripts/services.sh,
# run_env_write), so that a command started later from any shell (`send_digests --now`) links to the
# running server, not to port 8000. SITE_URL set in the environment or in .env still wins.
if "SITE_URL" not in os.environ:
    SITE_URL = _run_env().get("SITE_URL", SITE_URL).rstrip("/")
