"""Shared fixtures: a local HTTP server for fetcher tests, sample data paths, cache reset."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.cache import cache

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "papers" / "sample_data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    # Rate limits live in the cache; one test's sign-ups must not throttle the next test.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def sample_files() -> list[Path]:
    return sorted(SAMPLE_DATA.glob("*.txt"))


@pytest.fixture
def sample_papers(sample_files: list[Path]) -> list:
    """The shipped sample papers, ingested (and topic-tagged) through the production path."""
    from papers.models import Paper
    from papers.services.ingest import papers_ingest_path

    for path in sample_files:
        papers_ingest_path(path=path)
    return list(Paper.objects.order_by("pk"))


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalHTTPServer:
    """A real HTTP server on 127.0.0.1; tests register what each path answers."""

    base_url: str
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]]

    def serve(self, path: str, body: bytes | str, status: int = 200, **headers: str) -> str:
        if isinstance(body, str):
            body = body.encode()
        self.routes[path] = Route(status, body, {k.replace("_", "-"): v for k, v in headers.items()})
        return self.base_url + path


@pytest.fixture
def http_server() -> Iterator[LocalHTTPServer]:
    routes: dict[str, Route] = {}
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, dict(self.headers)))
            route = routes.get(self.path) or Route(404, b"not found")
            etag = route.headers.get("ETag")
            if etag and self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalHTTPServer(f"http://127.0.0.1:{server.server_port}", routes, seen)
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SMTPSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts.

    `refuse` maps recipient addresses to an SMTP reply (e.g. "550 5.1.1 no such user") given at
    RCPT TO; `fail_data_with` makes every DATA fail with that reply (e.g. "451 try later").
    `connections` gets one entry per SMTP session (counted at EHLO, which smtplib sends once per
    connection), so tests can check how many connections a sender opened.
    """

    host: str
    port: int
    messages: list
    refuse: dict[str, str]
    fail_data_with: list[str]
    connections: list[str] = field(default_factory=list)

    def parsed(self) -> list:
        from email import policy
        from email.parser import BytesParser

        return [BytesParser(policy=policy.default).parsebytes(m.content) for m in self.messages]


@pytest.fixture
def smtp_sink(settings) -> Iterator[SMTPSink]:
    """Start aiosmtpd and point Django's SMTP backend at it."""
    from aiosmtpd.controller import Controller

    received: list = []
    refuse: dict[str, str] = {}
    fail_data: list[str] = []
    connections: list[str] = []

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            # A handler that takes over EHLO must record the client name, or aiosmtpd refuses MAIL.
            session.host_name = hostname
            connections.append(hostname)
            return responses

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address in refuse:
                return refuse[address]
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            if fail_data:
                return fail_data[0]
            received.append(envelope)
            return "250 Message accepted for delivery"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    try:
        yield SMTPSink("127.0.0.1", port, received, refuse, fail_data, connections)
    finally:
        controller.stop()
