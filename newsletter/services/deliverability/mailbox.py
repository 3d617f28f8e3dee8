"""The bounce mailbox's folders: a local Maildir or an IMAP folder (NEWSLETTER_BOUNCE_MAILBOX), read by
deliverability/bounces.py. Messages larger than the bound are listed without being downloaded.

The IMAP password never crosses the network in clear: `imaps://` is TLS from the start; plain
`imap://` is accepted as is only to a loopback address (127.0.0.0/8, ::1, localhost), and to any other
host only once STARTTLS succeeded with a verified certificate (else InsecureMailbox, before LOGIN).
`manage.py check --deploy` flags a plain imap:// to another host (newsletter.checks).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import mailbox
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient

logger = logging.getLogger("newsletter.bounces")

PROCESSED, MALFORMED = "Processed", "Malformed"


class InsecureMailbox(Exception):
    """The mailbox would get the password over an unencrypted connection."""


class Mailbox(Protocol):
    def messages(self, *, max_bytes: int) -> Iterator[tuple[object, bytes | None]]:
        """Each message's key and bytes; None instead of the bytes for one larger than max_bytes."""

    def move(self, key: object, folder: str) -> None: ...
    def close(self) -> None: ...


def mailbox_open(url: str) -> Mailbox:
    parts = urlsplit(url)
    if parts.scheme == "maildir":
        return MaildirBox(Path(unquote(parts.path)))
    if parts.scheme in ("imap", "imaps"):
        return ImapBox(url)
    raise ValueError(f"NEWSLETTER_BOUNCE_MAILBOX: unsupported scheme {parts.scheme!r} (imaps, imap, maildir)")


def is_loopback(host: str | None) -> bool:
    """By the name as written: a name that resolves to 127.0.0.1 is another host (DNS may change)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MaildirBox:
    """A local Maildir (e.g. delivered by Postfix or fetchmail); folders are Maildir++ subfolders."""

    def __init__(self, path: Path) -> None:
        self.box = mailbox.Maildir(path, create=False)

    def messages(self, *, max_bytes: int) -> Iterator[tuple[object, bytes | None]]:
        for key in list(self.box.iterkeys()):
            with self.box.get_file(key) as file:
                raw = file.read(max_bytes + 1)
            yield key, raw if len(raw) <= max_bytes else None

    def move(self, key: object, folder: str) -> None:
        target = (
            self.box.get_folder(folder) if folder in self.box.list_folders() else self.box.add_folder(folder)
        )
        target.add(self.box.get_bytes(key))
        self.box.discard(key)

    def close(self) -> None:
        self.box.close()


class ImapBox:
    """An IMAP folder (IMAPClient); messages are moved (MOVE, or COPY + expunge) once handled."""

    BATCH = 50

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        tls = parts.scheme == "imaps"
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        self.client = IMAPClient(
            parts.hostname, port=parts.port or (993 if tls else 143), ssl=tls, timeout=60
        )
        if not tls and not is_loopback(parts.hostname):
            self._starttls(parts.hostname)
        self.client.login(unquote(parts.username or ""), unquote(parts.password or ""))
        for folder in (PROCESSED, MALFORMED):
            if not self.client.folder_exists(folder):
                self.client.create_folder(folder)
        self.client.select_folder(self.folder)

    def _starttls(self, host: str | None) -> None:
        try:
            # The default context verifies the certificate and that it names the host.
            self.client.starttls(ssl.create_default_context())
        except Exception as exc:
            with contextlib.suppress(OSError):  # a failed handshake may have closed the socket
                self.client.shutdown()
            raise InsecureMailbox(
                f"NEWSLETTER_BOUNCE_MAILBOX: STARTTLS with {host} failed ({type(exc).__name__}: {exc}); "
                "the password is not sent unencrypted to a host other than this machine. "
                "Use imaps://, or a server that offers STARTTLS with a valid certificate."
            ) from exc

    def messages(self, *, max_bytes: int) -> Iterator[tuple[object, bytes | None]]:
        uids = self.client.search("ALL")
        for start in range(0, len(uids), self.BATCH):
            batch = uids[start : start + self.BATCH]
            sizes = self.client.fetch(batch, ["RFC822.SIZE"])
            small = [uid for uid in batch if sizes.get(uid, {}).get(b"RFC822.SIZE", 0) <= max_bytes]
            for uid in batch:
                if uid not in small:
                    yield uid, None
            fetched = self.client.fetch(small, ["BODY.PEEK[]"]) if small else {}
            for uid, data in fetched.items():
                yield uid, data[b"BODY[]"]

    def move(self, key: object, folder: str) -> None:
        if self.client.has_capability("MOVE"):
            self.client.move([key], folder)
            return
        self.client.copy([key], folder)
        self.client.delete_messages([key])
        self.client.expunge()

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # the session is gone either way
            logger.debug("bounce mailbox: logout failed", exc_info=True)
