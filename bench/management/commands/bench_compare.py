from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench.compare import compare_json, compare_run, compare_table


class Command(BaseCommand):
    help = (
        "Benchmark a git revision and this working tree alternately (A B B A ...) on the same generated "
        "list; report CPU per digest of each as calibrated ms and head/base ratios with their spread. "
        "Run with DJANGO_SETTINGS_MODULE=config.settings.bench (make bench-compare REV=...)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("rev", help="The git revision to compare against (the base).")
        parser.add_argument("--subscribers", type=int, default=3000)
        parser.add_argument("--papers", type=int, default=500)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--runs", type=int, default=2, help="Runs of each side (2 = A B B A).")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of the table.")
        parser.add_argument("--out", default="bench/results", help="Directory for the JSON file.")

    def handle(self, *args, **options) -> None:
        if not getattr(settings, "BENCHMARK", False):
            raise CommandError("run with DJANGO_SETTINGS_MODULE=config.settings.bench (make bench-compare)")
        if options["runs"] < 2:
            raise CommandError("--runs must be at least 2 (A B B A)")
        runs = compare_run(
            rev=options["rev"],
            subscribers=options["subscribers"],
            papers=options["papers"],
            seed=options["seed"],
            runs=options["runs"],
            log=lambda line: self.stderr.write(line),
        )
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"compare-{datetime.now():%Y%m%d-%H%M%S}.json"
        path.write_text(compare_json(rev=options["rev"], runs=runs))
        self.stdout.write(
            compare_json(rev=options["rev"], runs=runs)
            if options["json"]
            else compare_table(rev=options["rev"], runs=runs)
        )
        self.stderr.write(f"wrote {path}")
