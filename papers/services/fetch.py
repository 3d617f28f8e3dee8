"""HTTP fetching of paper sources, and the scheduled feed service built on it.

One fetcher serves all three sources: the format is detected from the content, so a feed row
only needs a URL. `{date}` in a feed URL becomes today's date (UTC), for APIs such as Hugging Face's
`/api/daily_papers?date={date}` that are addressed by day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from django.conf import settings
from django.utils import timezone

from papers.models import Feed
from papers.services.ingest import IngestReport, papers_ingest_bytes

logger = logging.getLogger(__name__)

USER_AGENT = "paper-digest/1.0 (+self-hosted research paper digest)"


class FetchError(Exception):
    pass


@dataclass(frozen=True)
class Fetched:
    data: bytes | None  # None when the server answered 304 Not Modified
    etag: str = ""
    last_modified: str = ""


def url_fetch(*, url: str, etag: str = "", last_modified: str = "") -> Fetched:
    """GET a URL with a timeout and a size limit; a too-large body is an error, not a truncation."""
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"{url}: only http:// and https:// URLs can be fetched")
    headers = {"User-Agent": USER_AGENT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    limit = settings.PAPERS_FETCH_MAX_BYTES
    try:
        with requests.get(
            url, headers=headers, timeout=settings.PAPERS_FETCH_TIMEOUT, stream=True
        ) as response:
            if response.status_code == 304:
                return Fetched(data=None, etag=etag, last_modified=last_modified)
            if response.status_code != 200:
                raise FetchError(f"{url}: HTTP {response.status_code} {response.reason}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
                raise FetchError(f"{url}: response is {declared} bytes (limit {limit})")
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise FetchError(f"{url}: response is larger than {limit} bytes")
            return Fetched(
                data=bytes(body),
                etag=response.headers.get("ETag", "")[:200],
                last_modified=response.headers.get("Last-Modified", "")[:100],
            )
    except requests.RequestException as exc:
        raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None


def feed_url(feed: Feed) -> str:
    return feed.url.replace("{date}", timezone.now().date().isoformat())


def feed_fetch(*, feed_id: int) -> IngestReport | None:
    """Fetch one feed and ingest what it returns; the outcome is recorded on the feed row."""
    feed = Feed.objects.get(pk=feed_id)
    url = feed_url(feed)
    report = None
    try:
        fetched = url_fetch(url=url, etag=feed.etag, last_modified=feed.last_modified)
    except FetchError as exc:
        status = f"error: {exc}"
        logger.warning("feed %s: %s", feed.pk, exc)
    else:
        if fetched.data is None:
            status = "not modified"
        else:
            report = papers_ingest_bytes(data=fetched.data, name=url)
            status = _summary(report)
            feed.etag, feed.last_modified = fetched.etag, fetched.last_modified
    feed.last_fetched_at = timezone.now()
    feed.last_status = status[:500]
    feed.save(update_fields=["last_fetched_at", "last_status", "etag", "last_modified"])
    return report


def _summary(report: IngestReport) -> str:
    if report.errors:
        return "error: " + "; ".join(message for _, message in report.errors)
    return f"ok: {report.counts()}"
