"""Real servers for tests and the benchmark: a free port, an HTTP server in a thread, a recording
SMTP server (aiosmtpd), a throwaway Dovecot IMAP server.

The benchmark (bench/runner.py) imports this module too; it must stay free of pytest and Django.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def http_serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free port of 127.0.0.1 in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Received:
    """One accepted message: the envelope recipients, the raw content, and when it was accepted
    (time.monotonic() of this process), plus the envelope sender."""

    rcpt_tos: list[str]
    content: bytes
    arrived_at: float = 0.0
    mail_from: str = ""


class RecordingSMTPServer:
    """aiosmtpd on 127.0.0.1 that records what it accepts and can be told to misbehave.

    - `refuse` maps a recipient address to the reply given at RCPT TO (e.g. "550 5.1.1 no such user").
    - `data_replies` are answers for the next DATA commands, one each (e.g. "451 4.3.0 try later"),
      before it accepts again.
    - `delay` slows every DATA down by that many seconds.
    - `busy_until` (a time.monotonic() value): until then every DATA is answered `busy_reply`
      (421 "too many messages, slow down"), counted in `busy_answers`.
    - `stop()` and `start()` again take it down and bring it back on the same port.
    - `keep=False` only counts messages (`count`), for runs too large to hold them all.

    `connections` counts SMTP sessions (at EHLO, which smtplib sends once per connection). A message
    counts as received only if the client is still connected when the server answers 250, as for a
    real MTA: a client killed mid-transaction has not delivered its message.
    """

    def __init__(self, *, port: int | None = None, keep: bool = True) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.keep = keep
        self.messages: list[Received] = []
        self.count = 0
        self.connections = 0
        self.refuse: dict[str, str] = {}
        self.data_replies: list[str] = []
        self.delay = 0.0
        self.busy_until = 0.0
        self.busy_reply = "421 4.7.0 Too many messages, slow down"
        self.busy_answers = 0
        # The native id of the event loop thread, so a benchmark can charge that thread's CPU time.
        self.thread_id = 0
        self._controller = None

    def start(self) -> RecordingSMTPServer:
        from aiosmtpd.controller import Controller

        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        self._controller.start()

        async def native_id() -> int:
            return threading.get_native_id()

        loop = self._controller.loop
        self.thread_id = asyncio.run_coroutine_threadsafe(native_id(), loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> RecordingSMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def email_env(self) -> dict[str, str]:
        """Environment that points a worker or command subprocess (config.settings) at this server."""
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_URL": f"smtp://{self.host}:{self.port}",
        }

    def parsed(self) -> list[EmailMessage]:
        return [BytesParser(policy=policy.default).parsebytes(m.content) for m in self.messages]

    def recipients(self) -> Counter:
        """How many messages each address received."""
        return Counter(address for message in self.messages for address in message.rcpt_tos)


class _Handler:
    # aiosmtpd runs every handler on the controller's single event loop thread, so the counters
    # need no lock.
    def __init__(self, server: RecordingSMTPServer) -> None:
        self.server = server

    async def handle_EHLO(self, smtp, session, envelope, hostname, responses):
        # A handler that takes over EHLO must record the client name, or aiosmtpd refuses MAIL.
        session.host_name = hostname
        self.server.connections += 1
        return responses

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        if address in self.server.refuse:
            return self.server.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):
        server = self.server
        if server.delay:
            await asyncio.sleep(server.delay)
        if smtp.transport is None or smtp.transport.is_closing():
            return "421 4.4.2 client went away"
        if server.data_replies:
            return server.data_replies.pop(0)
        if time.monotonic() < server.busy_until:
            server.busy_answers += 1
            return server.busy_reply
        server.count += 1
        if server.keep:
            server.messages.append(
                Received(
                    list(envelope.rcpt_tos), envelope.content, time.monotonic(), envelope.mail_from or ""
                )
            )
        return "250 2.0.0 Accepted"


class DovecotServer:
    """A throwaway Dovecot IMAP server on a free port of 127.0.0.1 (Debian's dovecot-imapd), any user
    name with password `password`, mail in Maildirs under a temporary directory.

    Its own configuration, sockets, state and log: it touches nothing of a system Dovecot. Run as
    root, its login and mail processes take the package's unprivileged users (Dovecot refuses to run
    them as root); otherwise everything runs as the current user.
    """

    BINARY = "/usr/sbin/dovecot"
    password = "password"

    def __init__(self) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
        self.process: subprocess.Popen | None = None

    @classmethod
    def available(cls) -> bool:
        return Path(cls.BINARY).exists()

    def _config(self) -> str:
        if os.getuid() == 0:
            internal, login = "dovecot", "dovenull"
            uid, gid = pwd.getpwnam("dovecot").pw_uid, pwd.getpwnam("dovecot").pw_gid
        else:
            internal = login = pwd.getpwuid(os.getuid()).pw_name
            uid, gid = os.getuid(), os.getgid()
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, uid, gid)
        self.root.chmod(0o755)  # the mail processes' user must reach mail/
        return f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
instance_name = test-{self.port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = 0
mail_location = maildir:{mail}/%u
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = static
  args = password={self.password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""

    def start(self) -> DovecotServer:
        config = self.root / "dovecot.conf"
        config.write_text(self._config())
        self.process = subprocess.Popen(
            [self.BINARY, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex((self.host, self.port)) == 0:
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def url(self, user: str, folder: str = "INBOX") -> str:
        return f"imap://{user}:{self.password}@{self.host}:{self.port}/{folder}"

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
