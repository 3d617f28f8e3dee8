import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from bench.costs import costs_measure, costs_table
from bench.data import bench_data_create
from bench.runner import database_ensure, smtp_sink


class Command(BaseCommand):
    help = (
        "Per-digest costs in one process (CPU, PostgreSQL CPU, statements, WAL, Redis commands, SMTP "
        "bytes, table bytes per row): the inputs of docs/scale.md. Wipes BENCH_DATABASE_URL's tables."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--subscribers", type=int, default=2000)
        parser.add_argument("--papers", type=int, default=500)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--reuse-data", action="store_true", help="Keep the list already in the database."
        )
        parser.add_argument(
            "--send-rate",
            default="100000/s",
            help="NEWSLETTER_SEND_RATE while sending (far above capacity: the limiter's calls, no "
            "waiting); empty for none.",
        )
        parser.add_argument("--chunks", type=int, default=None, help="Measure at most this many chunks.")
        parser.add_argument(
            "--checkpoint",
            action="store_true",
            help="CHECKPOINT before each measured chunk: the WAL with full-page images (a large list).",
        )
        parser.add_argument(
            "--one-connection",
            action="store_true",
            help="Keep one database connection (default: a new one per chunk, as each Celery task has).",
        )
        parser.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of the table.")

    def handle(self, *args, **options) -> None:
        if not getattr(settings, "BENCHMARK", False):
            raise CommandError("run with DJANGO_SETTINGS_MODULE=config.settings.bench")
        database_ensure()
        if not options["reuse_data"]:
            bench_data_create(
                subscribers=options["subscribers"],
                papers=options["papers"],
                seed=options["seed"],
                now=timezone.now(),
            )
        with smtp_sink(options["sink"]) as sink:
            report = costs_measure(
                send_rate=options["send_rate"],
                smtp_port=sink.port,
                chunks_max=options["chunks"],
                checkpoint=options["checkpoint"],
                new_connections=not options["one_connection"],
            )
        self.stdout.write(json.dumps(report.as_dict(), indent=2) if options["json"] else costs_table(report))
