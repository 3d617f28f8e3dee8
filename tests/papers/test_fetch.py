"""Fetching sources over real HTTP (a local server), scheduled feeds, and the Celery entry point."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler

import pytest
import time_machine

from papers.models import Feed, Paper
from papers.selectors import feeds_due
from papers.services.fetch import USER_AGENT, FetchError, feed_fetch, url_fetch
from papers.tasks import fetch_due_feeds
from tests.papers.helpers import ARXIV_ATOM, ARXIV_ERROR, HF_JSON, listing_titles
from tests.support import free_port, http_serving

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _now() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _no_default_feeds() -> None:
    # The migration's feeds point at the real Hugging Face and arXiv APIs; tests never call them.
    Feed.objects.update(enabled=False)


@pytest.fixture
def unsized_server() -> Iterator[str]:
    """An HTTP/1.0 server that sends 10 kB without a Content-Length (the body ends at close)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"x" * 1000)

        def log_message(self, *args) -> None:
            pass

    with http_serving(Handler) as base_url:
        yield f"{base_url}/stream"


# --- url_fetch ---------------------------------------------------------------------------------


def test_fetch_returns_the_body_and_validators(http_server) -> None:
    url = http_server.serve(
        "/papers.json", HF_JSON.read_bytes(), ETag='"v1"', Last_Modified="Sun, 01 Jun 2025 08:00:00 GMT"
    )

    fetched = url_fetch(url=url)

    assert fetched.data == HF_JSON.read_bytes()
    assert (fetched.etag, fetched.last_modified) == ('"v1"', "Sun, 01 Jun 2025 08:00:00 GMT")
    [(path, headers)] = http_server.requests
    assert path == "/papers.json"
    assert headers["User-Agent"] == USER_AGENT
    assert "If-None-Match" not in headers


@pytest.mark.parametrize(
    ("status", "reason"), [(404, "Not Found"), (500, "Internal Server Error"), (301, "")]
)
def test_an_error_status_is_a_fetch_error_naming_it(http_server, status: int, reason: str) -> None:
    url = http_server.serve("/gone", "nothing here", status=status)

    with pytest.raises(FetchError, match=f"HTTP {status}") as caught:
        url_fetch(url=url)

    assert url in str(caught.value) and reason in str(caught.value)


def test_a_body_over_the_declared_limit_is_refused(http_server, settings) -> None:
    settings.PAPERS_FETCH_MAX_BYTES = 1000
    url = http_server.serve("/big", b"x" * 1001)

    with pytest.raises(FetchError, match=r"response is 1001 bytes \(limit 1000\)"):
        url_fetch(url=url)


def test_a_body_exactly_at_the_limit_is_accepted(http_server, settings) -> None:
    settings.PAPERS_FETCH_MAX_BYTES = 1000
    url = http_server.serve("/exact", b"x" * 1000)

    assert url_fetch(url=url).data == b"x" * 1000


def test_an_undeclared_body_is_cut_off_at_the_limit(unsized_server: str, settings) -> None:
    settings.PAPERS_FETCH_MAX_BYTES = 4000

    with pytest.raises(FetchError, match="larger than 4000 bytes"):
        url_fetch(url=unsized_server)


@pytest.mark.parametrize("url", ["ftp://example.org/papers.json", "file:///etc/passwd", "papers.json", ""])
def test_only_http_urls_are_fetched(url: str) -> None:
    with pytest.raises(FetchError, match="only http:// and https:// URLs"):
        url_fetch(url=url)


def test_connection_refused_is_a_fetch_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/papers.json"

    with pytest.raises(FetchError, match="ConnectionError") as caught:
        url_fetch(url=url)

    assert str(caught.value).startswith(url)


def test_a_server_that_never_answers_times_out(settings) -> None:
    settings.PAPERS_FETCH_TIMEOUT = 0.2
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"

        with pytest.raises(FetchError, match="Timeout"):
            url_fetch(url=url)


def test_conditional_get_sends_the_validators_and_reports_not_modified(http_server) -> None:
    url = http_server.serve("/daily", HF_JSON.read_bytes(), ETag='"abc123"')
    first = url_fetch(url=url)

    second = url_fetch(url=url, etag=first.etag, last_modified="Sun, 01 Jun 2025 08:00:00 GMT")

    assert second.data is None
    assert second.etag == '"abc123"'
    headers = http_server.requests[1][1]
    assert headers["If-None-Match"] == '"abc123"'
    assert headers["If-Modified-Since"] == "Sun, 01 Jun 2025 08:00:00 GMT"


def test_a_changed_etag_fetches_the_new_body(http_server) -> None:
    url = http_server.serve("/daily", "old", ETag='"v1"')
    url_fetch(url=url)
    http_server.serve("/daily", "new", ETag='"v2"')

    fetched = url_fetch(url=url, etag='"v1"')

    assert (fetched.data, fetched.etag) == (b"new", '"v2"')


# --- feed_fetch --------------------------------------------------------------------------------


def make_feed(url: str, **fields) -> Feed:
    return Feed.objects.create(name="test feed", url=url, **fields)


def test_feed_fetch_ingests_hugging_face_json_and_records_the_outcome(http_server) -> None:
    feed = make_feed(http_server.serve("/api/daily_papers", HF_JSON.read_bytes(), ETag='"day-1"'))

    report = feed_fetch(feed_id=feed.pk)

    feed.refresh_from_db()
    assert report is not None and report.created == 6
    assert feed.last_status == "ok: 6 created, 0 updated, 0 unchanged, 0 rejected"
    assert feed.last_fetched_at == NOW
    assert feed.etag == '"day-1"'
    assert set(Paper.objects.values_list("source", flat=True)) == {Paper.Source.HUGGINGFACE}
    assert Paper.objects.get(external_id="2305.18290").upvotes == 58


def test_an_unchanged_feed_costs_a_304_and_no_ingest(http_server, _now) -> None:
    feed = make_feed(http_server.serve("/api/daily_papers", HF_JSON.read_bytes(), ETag='"day-1"'))
    feed_fetch(feed_id=feed.pk)
    stamps = dict(Paper.objects.values_list("pk", "updated_at"))

    _now.shift(timedelta(hours=6))
    report = feed_fetch(feed_id=feed.pk)

    feed.refresh_from_db()
    assert report is None
    assert feed.last_status == "not modified"
    assert feed.last_fetched_at == NOW + timedelta(hours=6)
    assert feed.etag == '"day-1"'
    assert http_server.requests[1][1]["If-None-Match"] == '"day-1"'
    assert dict(Paper.objects.values_list("pk", "updated_at")) == stamps


def test_feed_fetch_ingests_an_arxiv_atom_feed(http_server) -> None:
    feed = make_feed(http_server.serve("/api/query?search_query=cat:cs.CL", ARXIV_ATOM.read_bytes()))

    feed_fetch(feed_id=feed.pk)

    feed.refresh_from_db()
    assert feed.last_status == "ok: 4 created, 0 updated, 0 unchanged, 0 rejected"
    assert set(Paper.objects.values_list("external_id", flat=True)) == {
        "2305.18290",
        "2305.14342",
        "1706.03762",
        "hep-ex/0307015",
    }


def test_feed_fetch_ingests_a_plain_listing(http_server, sample_files) -> None:
    path = sample_files[0]
    feed = make_feed(http_server.serve("/listing.txt", path.read_bytes()))

    report = feed_fetch(feed_id=feed.pk)

    assert report.created == len(listing_titles(path)) == Paper.objects.count()
    assert Feed.objects.get(pk=feed.pk).last_status.startswith(f"ok: {report.created} created")


def test_feed_url_date_placeholder_is_todays_utc_date(http_server, _now) -> None:
    http_server.serve("/api/daily_papers?date=2025-06-01", HF_JSON.read_bytes())
    feed = make_feed(http_server.base_url + "/api/daily_papers?date={date}")

    feed_fetch(feed_id=feed.pk)

    assert [path for path, _ in http_server.requests] == ["/api/daily_papers?date=2025-06-01"]
    _now.move_to(datetime(2025, 6, 2, 0, 5, tzinfo=UTC))
    feed_fetch(feed_id=feed.pk)
    assert http_server.requests[-1][0] == "/api/daily_papers?date=2025-06-02"


def test_a_failed_fetch_is_recorded_and_keeps_the_validators(http_server) -> None:
    feed = make_feed(http_server.serve("/api/daily_papers", "down", status=503), etag='"old"')

    report = feed_fetch(feed_id=feed.pk)

    feed.refresh_from_db()
    assert report is None
    assert feed.last_status.startswith("error: ") and "HTTP 503" in feed.last_status
    assert (feed.last_fetched_at, feed.etag) == (NOW, '"old"')
    assert Paper.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<!DOCTYPE html><html><body>Rate limited</body></html>", "HTML page"),
        (ARXIV_ERROR.read_bytes(), "arXiv API error: incorrect id format"),
        (HF_JSON.read_bytes()[:500], "invalid JSON"),
    ],
    ids=["html", "arxiv-error", "truncated-json"],
)
def test_an_unparseable_body_is_recorded_as_an_error(http_server, body: bytes, message: str) -> None:
    feed = make_feed(http_server.serve("/feed", body))

    feed_fetch(feed_id=feed.pk)

    feed.refresh_from_db()
    assert feed.last_status.startswith("error: ") and message in feed.last_status
    assert Paper.objects.count() == 0


def test_a_very_long_error_is_cut_to_the_status_column(http_server) -> None:
    long_path = "/" + "p" * 600
    feed = make_feed(http_server.serve(long_path, "gone", status=404))

    feed_fetch(feed_id=feed.pk)

    feed.refresh_from_db()
    assert len(feed.last_status) == Feed._meta.get_field("last_status").max_length


# --- schedule ----------------------------------------------------------------------------------


def test_feeds_due_selects_enabled_feeds_past_their_interval(_now) -> None:
    never = make_feed("http://127.0.0.1:9/never", interval_minutes=60)
    recent = make_feed(
        "http://127.0.0.1:9/recent", interval_minutes=60, last_fetched_at=NOW - timedelta(minutes=5)
    )
    exactly = make_feed(
        "http://127.0.0.1:9/exact", interval_minutes=60, last_fetched_at=NOW - timedelta(minutes=60)
    )
    overdue = make_feed(
        "http://127.0.0.1:9/overdue", interval_minutes=60, last_fetched_at=NOW - timedelta(days=2)
    )
    make_feed("http://127.0.0.1:9/off", enabled=False)
    make_feed("http://127.0.0.1:9/off-overdue", enabled=False, last_fetched_at=NOW - timedelta(days=2))
    slow = make_feed(
        "http://127.0.0.1:9/slow", interval_minutes=24 * 60, last_fetched_at=NOW - timedelta(hours=2)
    )

    assert sorted(feeds_due()) == sorted([never.pk, exactly.pk, overdue.pk])

    _now.shift(timedelta(minutes=54))
    assert recent.pk not in feeds_due()
    _now.shift(timedelta(minutes=1))
    assert recent.pk in feeds_due()
    assert slow.pk not in feeds_due()

    _now.shift(timedelta(hours=22))
    assert slow.pk in feeds_due()


def test_fetch_due_feeds_task_fetches_only_due_feeds(http_server, _now) -> None:
    due = make_feed(http_server.serve("/hf", HF_JSON.read_bytes()), interval_minutes=60)
    also_due = make_feed(
        http_server.serve("/arxiv", ARXIV_ATOM.read_bytes()),
        interval_minutes=60,
        last_fetched_at=NOW - timedelta(hours=3),
    )
    not_due = make_feed(
        http_server.serve("/later", HF_JSON.read_bytes()),
        interval_minutes=60,
        last_fetched_at=NOW - timedelta(minutes=10),
    )

    fetch_due_feeds.delay()  # eager in tests: the per-feed tasks run here too

    assert sorted(path for path, _ in http_server.requests) == ["/arxiv", "/hf"]
    for feed in (due, also_due):
        feed.refresh_from_db()
        assert feed.last_fetched_at == NOW and feed.last_status.startswith("ok: ")
    not_due.refresh_from_db()
    assert not_due.last_fetched_at == NOW - timedelta(minutes=10) and not_due.last_status == ""
    # The two feeds share DPO: one row, enriched by both.
    assert Paper.objects.count() == 6 + 4 - 1

    _now.shift(timedelta(minutes=49))
    fetch_due_feeds.delay()
    assert len(http_server.requests) == 2  # nothing has been waiting an hour yet
    _now.shift(timedelta(minutes=1))
    fetch_due_feeds.delay()
    assert len(http_server.requests) == 2 + 1  # the feed last fetched 60 minutes ago
    assert http_server.requests[-1][0] == "/later"


def test_default_feeds_are_scheduled_but_not_fetched_here() -> None:
    # Guard for the autouse fixture above: the shipped feeds exist and would be due on a fresh install.
    defaults = Feed.objects.all()
    assert defaults.count() == 2
    assert feeds_due() == []
    defaults.update(enabled=True)
    assert sorted(feeds_due()) == sorted(defaults.values_list("pk", flat=True))
