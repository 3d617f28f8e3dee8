"""The private Atom feed of a reader's own digests, for readers who prefer a feed reader to email.

Django's syndication framework writes the Atom; the token in the URL is the key (Purpose.FEED), so
rotating the reader's token_key revokes it with every other link, and "delete everything" leaves it
nothing to show (a 404).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.feedgenerator import Atom1Feed
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from newsletter.models import Subscriber
from newsletter.services.archive import FEED_DIGESTS, ArchivedDigest, digests_archived
from newsletter.services.tokens import Purpose, token_subscriber


class DigestFeed(Feed):
    feed_type = Atom1Feed
    title = "Paper Digest: your digests"
    subtitle = "The research papers picked for you, one entry per digest."

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = super().__call__(request, *args, **kwargs)
        # Personal, and its URL is a key: no shared cache may keep it, no search engine index it.
        response["Cache-Control"] = "private, no-cache"
        response["X-Robots-Tag"] = "noindex"
        return response

    def get_object(self, request: HttpRequest, token: str) -> Subscriber:
        subscriber = token_subscriber(token=token, purpose=Purpose.FEED)
        if subscriber is None or subscriber.status == Subscriber.Status.PENDING:
            raise Http404("Unknown or revoked feed.")
        return subscriber

    def link(self, obj: Subscriber) -> str:
        return settings.SITE_URL + "/"

    def items(self, obj: Subscriber) -> list[ArchivedDigest]:
        return digests_archived(subscriber=obj, limit=FEED_DIGESTS)

    def item_title(self, item: ArchivedDigest) -> str:
        return item.title

    def item_link(self, item: ArchivedDigest) -> str:
        return item.web_url

    def item_pubdate(self, item: ArchivedDigest) -> datetime:
        return item.sent_at

    def item_updateddate(self, item: ArchivedDigest) -> datetime:
        return item.sent_at  # Atom requires <updated>; a sent digest never changes

    def item_description(self, item: ArchivedDigest) -> SafeString:
        papers = format_html_join("", '<li><a href="{}">{}</a></li>', ((p.url, p.title) for p in item.papers))
        return format_html('<ol>{}</ol><p><a href="{}">Read this digest</a></p>', papers, item.web_url)
