from celery import shared_task

from papers.selectors import feeds_due
from papers.services.fetch import feed_fetch


@shared_task
def fetch_due_feeds() -> None:
    """Beat entry point: queue one fetch per feed whose interval has passed."""
    for feed_id in feeds_due():
        fetch_feed.delay(feed_id)


# No autoretry: a failed fetch is recorded on the feed and tried again at its next interval.
@shared_task
def fetch_feed(feed_id: int) -> None:
    feed_fetch(feed_id=feed_id)
