from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench.report import report_chart, report_json, report_table
from bench.runner import bench_run


class Command(BaseCommand):
    help = (
        "Benchmark digest building and delivery through real Celery workers against a naive baseline. "
        "Run with DJANGO_SETTINGS_MODULE=config.settings.bench (make bench): it wipes the bench database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--subscribers", default="1000,10000,100000", help="One size or a comma list.")
        parser.add_argument("--papers", type=int, default=500)
        parser.add_argument("--workers", type=int, default=2, help="Celery worker processes.")
        parser.add_argument(
            "--naive-sample", type=int, default=200, help="Subscribers the baseline sends to."
        )
        parser.add_argument(
            "--scale-out-at", type=int, default=10_000, help="Size at which 1 worker is also run."
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--sink",
            choices=["auto", "smtp-sink", "aiosmtpd"],
            default="auto",
            help="SMTP server receiving the digests: Postfix's smtp-sink if installed (auto), or aiosmtpd.",
        )
        parser.add_argument(
            "--send-rate",
            default="100000/s",
            help="Also deliver with this NEWSLETTER_SEND_RATE (far above capacity: the limiter's cost); "
            "empty to skip.",
        )
        parser.add_argument("--json", action="store_true", help="Print JSON instead of the table.")
        parser.add_argument("--out", default="bench/results", help="Directory for the JSON and PNG files.")

    def handle(self, *args, **options) -> None:
        if not getattr(settings, "BENCHMARK", False):
            raise CommandError("run with DJANGO_SETTINGS_MODULE=config.settings.bench (make bench)")
        sizes = [int(s) for s in str(options["subscribers"]).split(",") if s.strip()]
        report = bench_run(
            sizes=sizes,
            papers=options["papers"],
            workers=options["workers"],
            naive_sample=options["naive_sample"],
            scale_out_at=options["scale_out_at"],
            seed=options["seed"],
            sink=options["sink"],
            send_rate=options["send_rate"],
            log=(lambda line: self.stderr.write(line)),
        )
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"bench-{datetime.now():%Y%m%d-%H%M%S}"
        stem.with_suffix(".json").write_text(report_json(report))
        report_chart(report, stem.with_suffix(".png"))
        self.stdout.write(report_json(report) if options["json"] else report_table(report))
        self.stderr.write(f"wrote {stem}.json and {stem}.png")
