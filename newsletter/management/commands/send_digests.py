from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from newsletter.models import Subscriber
from newsletter.selectors import digest_preview
from newsletter.services.delivery import deliveries_send
from newsletter.services.dispatch import DueDigest, dispatch_plan, dispatch_round
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
            return
        served: list[DueDigest] = []
        if now:
            self._send_here(served)
        else:
            self.stdout.write(f"queued {chunks_queue(dispatch_round(already_served=served))} deliveries")
        self._explain(served)

    def _send_here(self, served: list[DueDigest]) -> None:
        sent = failed = deferred = skipped = 0
        for chunk in dispatch_round(already_served=served):
            result = deliveries_send(delivery_ids=chunk)
            sent += len(result.sent)
            failed += len(result.failed)
            deferred += len(result.deferred)
            skipped += len(result.skipped)
        self.stdout.write(f"{sent} sent, {skipped} skipped, {failed} failed, {deferred} deferred")

    def _explain(self, served: list[DueDigest]) -> None:
        # A due subscriber who got nothing must not look like a silent failure.
        for due in served:
            self.stdout.write(
                f"- subscriber {due.subscriber_id}: nothing sent, already has this period's digest "
                f"({due.period}); their schedule moved on to the next one"
            )

    def _dry_run(self) -> None:
        now = timezone.now()
        plan = dispatch_plan(now=now)
        served = sum(due.already_has_digest for due in plan)
        self.stdout.write(
            f"{len(plan)} subscriber(s) due"
            + (f", {served} of them already have this period's digest (none is sent)" if served else "")
        )
        subscribers = Subscriber.objects.in_bulk([due.subscriber_id for due in plan[:50]])
        for due in plan[:50]:
            if due.already_has_digest:
                self.stdout.write(
                    f"- subscriber {due.subscriber_id}: nothing, "
                    f"already has this period's digest ({due.period})"
                )
                continue
            picks = digest_preview(subscriber=subscribers[due.subscriber_id], now=now)
            self.stdout.write(f"- subscriber {due.subscriber_id}: {len(picks)} paper(s)")
            for pick in picks:
                self.stdout.write(f"    [{pick.score:.2f}] {pick.paper.title}")
