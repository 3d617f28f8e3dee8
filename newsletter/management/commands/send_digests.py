from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from newsletter.models import Subscriber
from newsletter.selectors import digest_preview, subscribers_due
from newsletter.services.delivery import deliveries_send
from newsletter.services.dispatch import dispatch_round
from newsletter.tasks import chunks_queue


class Command(BaseCommand):
    help = (
        "Run the digest dispatcher and the sweeper once: create deliveries for every due subscriber "
        "and queue them for the Celery workers (or send them here with --now)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", action="store_true", help="Send in this process instead of queueing.")
        parser.add_argument("--dry-run", action="store_true", help="Show who is due and what they would get.")

    def handle(self, *args, now: bool, dry_run: bool, **options) -> None:
        if dry_run:
            self._dry_run()
        elif now:
            self._send_here()
        else:
            self.stdout.write(f"queued {chunks_queue(dispatch_round())} deliveries")

    def _send_here(self) -> None:
        sent = failed = deferred = skipped = 0
        for chunk in dispatch_round():
            result = deliveries_send(delivery_ids=chunk)
            sent += len(result.sent)
            failed += len(result.failed)
            deferred += len(result.deferred)
            skipped += len(result.skipped)
        self.stdout.write(f"{sent} sent, {skipped} skipped, {failed} failed, {deferred} deferred")

    def _dry_run(self) -> None:
        now = timezone.now()
        due = subscribers_due(now=now)
        self.stdout.write(f"{len(due)} subscriber(s) due")
        for subscriber in Subscriber.objects.filter(id__in=due[:50]).order_by("id"):
            picks = digest_preview(subscriber=subscriber, now=now)
            self.stdout.write(f"- subscriber {subscriber.pk}: {len(picks)} paper(s)")
            for pick in picks:
                self.stdout.write(f"    [{pick.score:.2f}] {pick.paper.title}")
