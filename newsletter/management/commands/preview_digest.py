import json
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from newsletter.models import Delivery, Subscriber
from newsletter.selectors import digest_preview, interests_preview
from newsletter.services.addresses import email_normalize
from newsletter.services.render import digest_email, paper_url
from papers.models import Topic
from papers.selectors import topic_names


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
            subscriber = self._subscriber(options["email"])
            picks = digest_preview(subscriber=subscriber, now=now, limit=limit)
        else:
            # An ad-hoc reader, never saved: its links lead nowhere, which is right for a preview.
            subscriber = Subscriber(pk=0, email="preview@example.org")
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
                    "url": paper_url(p.paper),
                    "topics": [names[t] for t in p.paper.topic_ids if t in names],
                }
                for p in picks
            ]
            self.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False))
        elif options["format"] == "html":
            preview = Delivery(pk=0, subscriber=subscriber, scheduled_for=now)
            message = digest_email(delivery=preview, picks=picks, test=True)
            html = [body for body, mimetype in message.alternatives if mimetype == "text/html"]
            if not html:
                raise CommandError("this subscriber gets plain-text digests; use --format text")
            self.stdout.write(html[0])
        else:
            if not picks:
                self.stdout.write("No paper qualifies.")
            for rank, pick in enumerate(picks, start=1):
                self.stdout.write(f"{rank:>2}. [{pick.score:6.3f}] {pick.paper.title}")
                for reason in pick.reasons:
                    self.stdout.write(f"      - {reason}")

    def _subscriber(self, email: str) -> Subscriber:
        subscriber = Subscriber.objects.filter(email=email_normalize(email)).first()
        if subscriber is None:
            raise CommandError(f"no subscriber with address {email}")
        return subscriber

    def _topic_ids(self, slugs: str) -> list[int]:
        wanted = [s.strip() for s in slugs.split(",") if s.strip()]
        found = dict(Topic.objects.filter(slug__in=wanted).values_list("slug", "id"))
        unknown = [s for s in wanted if s not in found]
        if unknown:
            valid = ", ".join(Topic.objects.values_list("slug", flat=True))
            raise CommandError(f"unknown topic(s): {', '.join(unknown)}. Valid: {valid}")
        return list(found.values())
