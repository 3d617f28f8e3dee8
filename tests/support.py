"""Real servers for tests, the benchmark and the fault suite: a free port, an HTTP server in a thread,
a recording SMTP server (aiosmtpd), Postfix's smtp-sink, a relay that records what an SMTP client
writes, a throwaway Dovecot IMAP server, a private redis-server, a throwaway PostgreSQL cluster.

The benchmark (bench/) imports this module too; it must stay free of pytest and Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis


def process_group_stop(process: subprocess.Popen, *, timeout: float) -> None:
    """SIGTERM to a process started with its own process group (a Celery worker and its pool), then
    SIGKILL if it is not gone within `timeout` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


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
    """One accepted message: the envelope recipients, the raw content, when it arrived (`arrived_at`,
    time.monotonic() of this process; `at`, time.time() for other processes' clocks), and the
    envelope sender."""

    rcpt_tos: list[str]
    content: bytes
    arrived_at: float = 0.0
    at: float = 0.0
    mail_from: str = ""


class RecordingSMTPServer:
    """aiosmtpd on 127.0.0.1 that records what it accepts and can be told to misbehave.

    - `pipelining` (on by default, as Postfix and most MTAs offer it) adds PIPELINING to the EHLO
      reply; aiosmtpd reads commands from a stream, so pipelined ones are answered in order.
    - `mail_replies` are answers for the next MAIL FROM commands, one each (e.g. "451 4.3.2 later").
    - `refuse` maps a recipient address to the reply given at RCPT TO (e.g. "550 5.1.1 no such user").
    - `data_replies` are answers for the next DATA commands, one each (e.g. "451 4.3.0 try later"),
      before it accepts again; a message answered that way is not recorded.
    - `delay` slows every DATA down by that many seconds, after the message is recorded.
    - `busy_until` (a time.monotonic() value): until then every DATA is answered `busy_reply`
      (421 "too many messages, slow down"), counted in `busy_answers`.
    - `on_data(envelope)`, if set, is called (on the server's thread) after a message is recorded and
      before it is answered: a test uses it to break something while the client waits for the 250.
    - `stop()` and `start()` again take it down and bring it back on the same port.
    - `keep=False` only counts messages (`count`), for runs too large to hold them all.

    `connections` counts SMTP sessions (at EHLO, which smtplib sends once per connection). A message
    is recorded as soon as its DATA is complete, before the answer, as a real MTA queues it before
    answering 250: a client that dies while waiting for the 250 has delivered its message anyway, and
    may send it again. That is the one duplicate SMTP cannot prevent, and this server shows it.
    """

    def __init__(self, *, port: int | None = None, keep: bool = True, pipelining: bool = True) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.keep = keep
        self.pipelining = pipelining
        self.messages: list[Received] = []
        self.count = 0
        self.connections = 0
        self.mail_replies: list[str] = []
        self.refuse: dict[str, str] = {}
        self.data_replies: list[str] = []
        self.delay = 0.0
        self.busy_until = 0.0
        self.busy_reply = "421 4.7.0 Too many messages, slow down"
        self.busy_answers = 0
        self.on_data: Callable[[object], None] | None = None
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
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the last line, "250 HELP"
        return responses

    async def handle_MAIL(self, smtp, session, envelope, address, mail_options):
        if self.server.mail_replies:
            return self.server.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        if address in self.server.refuse:
            return self.server.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):
        server = self.server
        if server.data_replies:
            return server.data_replies.pop(0)
        if time.monotonic() < server.busy_until:
            server.busy_answers += 1
            return server.busy_reply
        # Recorded first, as an MTA queues a message before it answers (see the class docstring).
        server.count += 1
        if server.keep:
            arrival = Received(
                list(envelope.rcpt_tos),
                envelope.content,
                arrived_at=time.monotonic(),
                at=time.time(),
                mail_from=envelope.mail_from or "",
            )
            server.messages.append(arrival)
        if server.on_data is not None:
            server.on_data(envelope)
        if server.delay:
            await asyncio.sleep(server.delay)
        return "250 2.0.0 Accepted"


class PostfixSink:
    """Postfix's smtp-sink on a free port of 127.0.0.1: a fast SMTP server that offers PIPELINING and
    throws every message away after its 250, or misbehaves as its options say (smtp-sink(1)):
    ("-r", "RCPT") answers RCPT with 4xx, ("-f", ".") the end of the data with 5xx (both turn
    PIPELINING off), ("-q", ".") hangs up instead of answering the data, ("-p",) offers no PIPELINING.
    `delivered()` counts the messages whose data it took in full (its dump file, -D), answered or not:
    with ("-q", ".") a message arrives and the client never hears its 250."""

    BINARY = "/usr/sbin/smtp-sink"

    def __init__(self, *options: str) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.options = options
        self.dump = Path(tempfile.mkdtemp(prefix="smtp-sink-")) / "dump"
        self.process: subprocess.Popen | None = None

    @classmethod
    def available(cls) -> bool:
        return Path(cls.BINARY).exists()

    def __enter__(self) -> PostfixSink:
        user = pwd.getpwuid(os.getuid()).pw_name
        self.process = subprocess.Popen(
            [self.BINARY, "-u", user, "-D", str(self.dump), *self.options, f"{self.host}:{self.port}", "16"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dump.parent, ignore_errors=True)

    def delivered(self) -> int:
        return self.dump.read_bytes().count(b"X-Client-Addr: ") if self.dump.exists() else 0


class WireTap:
    """A TCP relay in front of an SMTP server that keeps what the client writes: per connection, the
    pieces as they arrived (`sessions`), so two clients' sessions can be compared byte for byte and a
    test can see which commands came in one piece (pipelined)."""

    def __init__(self, *, host: str, port: int) -> None:
        self.target = (host, port)
        self.host = "127.0.0.1"
        self._listener = socket.create_server((self.host, 0))
        self._listener.settimeout(0.1)  # so the accepting thread sees `_stopped`
        self.port = self._listener.getsockname()[1]
        self.sessions: list[list[bytes]] = []
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> WireTap:
        self._start(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._listener.close()

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            written: list[bytes] = []
            self.sessions.append(written)
            self._start(self._relay, client, socket.create_connection(self.target), written)

    def _relay(self, client: socket.socket, server: socket.socket, written: list[bytes]) -> None:
        """Both directions in one thread; an end that closes is passed on as a half-close, and the
        relay ends when both have (or nothing moved for a while after the tap was stopped)."""
        other = {client: server, server: client}
        with client, server:
            while other:
                ready, _, _ = select.select(list(other), [], [], 0.1)
                if not ready and self._stopped.is_set():
                    return
                for source in ready:
                    try:
                        data = source.recv(65536)
                        if data:
                            other[source].sendall(data)
                    except OSError:
                        data = b""
                    if source is client and data:
                        written.append(data)
                    if not data:
                        with contextlib.suppress(OSError):
                            other[source].shutdown(socket.SHUT_WR)
                        del other[source]


class DovecotServer:
    """A throwaway Dovecot IMAP server on a free port of 127.0.0.1 (Debian's dovecot-imapd), any user
    name with password `password`, mail in Maildirs under a temporary directory. `host` listens on
    another address of this machine; `certificate` (a PEM file holding the certificate and its key)
    offers STARTTLS.

    Its own configuration, sockets, state and log: it touches nothing of a system Dovecot. Run as
    root, its login and mail processes take the package's unprivileged users (Dovecot refuses to run
    them as root); otherwise everything runs as the current user.
    """

    BINARY = "/usr/sbin/dovecot"
    password = "password"

    def __init__(self, *, host: str = "127.0.0.1", certificate: Path | None = None) -> None:
        self.port = free_port()
        self.host = host
        self.certificate = certificate
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
        tls = (
            f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{self.certificate}"
            if self.certificate
            else "ssl = no"
        )
        return f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
instance_name = test-{self.port}
protocols = imap
listen = {self.host}
{tls}
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
    address = {self.host}
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


class RedisServer:
    """A private redis-server that a test or the fault suite may kill and restart. Nothing is
    persisted, so a restart comes back empty: every queued task is gone."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        self.process = subprocess.Popen(
            [*command, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while not _pings(client):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb into a temporary directory, its own port) that the fault
    suite restarts and crashes, so the machine's own server is never touched. Run as the `postgres`
    user when we are root (initdb refuses root), with the newest server binaries installed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        self.bin = versions[-1] if versions else Path(shutil.which("pg_ctl") or "pg_ctl").parent
        self.url = f"postgres://postgres@127.0.0.1:{port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *args)

    def start(self) -> PostgresCluster:
        if not self.data.exists():
            if os.geteuid() == 0:
                shutil.chown(self.root, "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._pg_ctl("-o", options, "start")
        return self

    def restart_fast(self) -> None:
        """`pg_ctl restart -m fast`: clients are disconnected, a checkpoint is written, it starts again."""
        self._pg_ctl("-m", "fast", "restart")

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: every server process quits at once, as in a crash; WAL still in
        shared memory (asynchronous commits not yet flushed) is lost. `start()` then recovers."""
        self._pg_ctl("-m", "immediate", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
