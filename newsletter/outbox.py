"""Local outbox: an email backend that keeps each message as an .eml file, shown at /dev/outbox/.

Used by `make run` so a newcomer can read every email without configuring SMTP.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend


def outbox_dir() -> Path:
    return Path(settings.EMAIL_OUTBOX_DIR)


class OutboxBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        directory = outbox_dir()
        directory.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            name = f"{datetime.now():%Y%m%d-%H%M%S-%f}-{uuid.uuid4().hex[:8]}.eml"
            temporary = directory / f".{name}"
            temporary.write_bytes(message.message().as_bytes(linesep="\r\n"))
            temporary.rename(directory / name)  # readers never see half a file
        return len(email_messages)


def outbox_messages(limit: int = 200) -> list[str]:
    directory = outbox_dir()
    if not directory.is_dir():
        return []
    return sorted((p.name for p in directory.glob("*.eml")), reverse=True)[:limit]


def outbox_read(name: str) -> EmailMessage | None:
    """Parse one stored message; None for a name that is not a file of the outbox."""
    if "/" in name or "\\" in name or not name.endswith(".eml") or name.startswith("."):
        return None
    try:
        data = (outbox_dir() / name).read_bytes()
    except (OSError, ValueError):  # missing, a directory, a name too long for the file system, a NUL
        return None
    return BytesParser(policy=policy.default).parsebytes(data)
