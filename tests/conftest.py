"""Shared fixtures: a local HTTP server for fetcher tests, an SMTP sink, sample data paths, cache reset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from django.core.cache import cache

from tests.support import RecordingSMTPServer, http_serving

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "papers" / "sample_data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The slow tests first (real Celery workers, servers, browsers: seconds to a minute each): xdist
    # deals tests out round robin, so they spread over the workers and start at once, and the quick
    # ones fill the gaps, instead of a long test starting last and keeping one worker busy alone.
    items.sort(
        key=lambda item: (
            item.get_closest_marker("integration") is None and item.get_closest_marker("browser") is None
        )
    )


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

    with http_serving(Handler) as base_url:
        yield LocalHTTPServer(base_url, routes, seen)


@pytest.fixture
def smtp_sink(settings) -> Iterator[RecordingSMTPServer]:
    """A recording SMTP server, started, with Django's SMTP backend pointed at it."""
    with RecordingSMTPServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = server.host
        settings.EMAIL_PORT = server.port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        yield server
