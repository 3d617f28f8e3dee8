import json
from datetime import datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from newsletter.models import Subscriber
from newsletter.services.digest import (
    DigestItems,
    digest_item,
    digest_preview,
    interests_preview,
    topic_names,
)
from newsletter.services.digest_render import digest_render
from newsletter.services.ranking import Pick
from newsletter.services.subscription import email_normalize
from papers.models import Topic


class Command(BaseCommand):
    help = "Print the papers a digest would contain now, ranked, with scores and reasons."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--email", help="Preview the next digest of this subscriber.")
        who.add_argument("--interests", help="Free-text interests of an ad-hoc profile.")
        parser.add_argument("--topics", default="", help="Comma-separated topic slugs (with --interests).")
        parser.add_argument(
            "--limit", type=int, default=None, help="Papers to show (default: the digest's size, or 10)."
        )
        parser.add_argument("--days", type=int, default=None, help="Only papers ingested in the last N days.")
        parser.add_argument("--format", choices=["text", "json", "html"], default="text")

    def handle(self, *args, **options) -> None:
        now = timezone.now()
        limit = options["limit"]
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        if options["email"]:
            # The whole next digest unless --limit says otherwise (it may ask for more than it holds).
            picks = self._subscriber_picks(options["email"], now, limit)
        else:
            since = (
                now - timedelta(days=options["days"]) if options["days"] else now - timedelta(days=365 * 100)
            )
            picks = interests_preview(
                interests=options["interests"],
                topic_ids=self._topic_ids(options["topics"]),
                limit=limit or 10,
                since=since,
                now=now,
            )
        names = topic_names()
        if options["format"] == "json":
            rows = [
                {
                    "paper_id": p.paper.id,
                    "title": p.paper.title,
                    "score": p.score,
                    "reasons": list(p.reasons),
                    "url": digest_item(p, names).url,
                    "topics": [names[t] for t in p.paper.topic_ids if t in names],
                }
                for p in picks
            ]
            self.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False))
        elif options["format"] == "html":
            self.stdout.write(self._html(picks, names))
        else:
            if not picks:
                self.stdout.write("No paper qualifies.")
            for rank, pick in enumerate(picks, start=1):
                self.stdout.write(f"{rank:>2}. [{pick.score:6.3f}] {pick.paper.title}")
                for reason in pick.reasons:
                    self.stdout.write(f"      - {reason}")

    def _subscriber_picks(self, email: str, now: datetime, limit: int | None) -> list[Pick]:
        subscriber = Subscriber.objects.filter(email=email_normalize(email)).first()
        if subscriber is None:
            raise CommandError(f"no subscriber with address {email}")
        return digest_preview(subscriber=subscriber, now=now, limit=limit)

    def _topic_ids(self, slugs: str) -> list[int]:
        wanted = [s.strip() for s in slugs.split(",") if s.strip()]
        found = dict(Topic.objects.filter(slug__in=wanted).values_list("slug", "id"))
        unknown = [s for s in wanted if s not in found]
        if unknown:
            valid = ", ".join(Topic.objects.values_list("slug", flat=True))
            raise CommandError(f"unknown topic(s): {', '.join(unknown)}. Valid: {valid}")
        return list(found.values())

    def _html(self, picks, names) -> str:
        site = settings.SITE_URL
        values = {
            "intro": "Preview of a digest (links in the footer are not personal).",
            "count_label": f"{len(picks)} new papers",
            "period_label": "preview",
            "email": "you@example.org",
            "frequency_label": "daily",
            "manage_url": f"{site}/manage/",
            "unsubscribe_url": f"{site}/manage/",
            "web_url": f"{site}/",
            "site_url": site,
        }
        return digest_render(items=DigestItems(names).items(picks), values=values, html=True).html
