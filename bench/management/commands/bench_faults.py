from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench.faults import SCENARIOS, SMTP_OUTAGE, faults_run, report_json, report_table

ANNOUNCEMENT = """\
The fault suite starts servers of its own and breaks them on purpose:
  - a throwaway PostgreSQL cluster (initdb into a temporary directory, a free port): fast restarts
    and crashes (pg_ctl stop -m immediate); deleted at the end;
  - a private redis-server on a free port, shut down and restarted (nothing persisted);
  - an SMTP server in this process, stopped for {outage:.0f} s;
  - `celery worker -c 2` (SIGKILLed and restarted) and `celery beat`, with the default limits.
The machine's own PostgreSQL and Redis are not touched. Scenarios: {scenarios}; {runs} run(s) each,
{subscribers:,} due digests per run.
"""


class Command(BaseCommand):
    help = "Delivery under real faults: lost digests, duplicates and recovery time per fault (make faults)."
    # The checks would connect to the configured database; the suite brings its own.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        names = ",".join(s.name for s in SCENARIOS)
        parser.add_argument("--scenarios", default=names, help=f"A comma list of: {names}.")
        parser.add_argument("--runs", type=int, default=2, help="Runs per scenario.")
        parser.add_argument("--subscribers", type=int, default=3000)
        parser.add_argument("--papers", type=int, default=500)
        parser.add_argument("--out", default="bench/results", help="Directory for the JSON and the table.")
        parser.add_argument(
            "--docs", default="docs/faults", help="Where a full run (every scenario) keeps its results."
        )

    def handle(self, *args, **options) -> None:
        if not getattr(settings, "BENCHMARK", False):
            raise CommandError("run with DJANGO_SETTINGS_MODULE=config.settings.bench (make faults)")
        chosen = [name.strip() for name in options["scenarios"].split(",") if name.strip()]
        unknown = sorted(set(chosen) - {s.name for s in SCENARIOS})
        if unknown or not chosen or options["runs"] < 1:
            raise CommandError(f"unknown scenarios {unknown}; choose from {[s.name for s in SCENARIOS]}")
        self.stderr.write(
            ANNOUNCEMENT.format(
                outage=SMTP_OUTAGE,
                scenarios=", ".join(chosen),
                runs=options["runs"],
                subscribers=options["subscribers"],
            )
        )
        report = faults_run(
            scenarios=chosen,
            runs=options["runs"],
            subscribers=options["subscribers"],
            papers=options["papers"],
            log=lambda line: self.stderr.write(line),
        )
        table, data = report_table(report), report_json(report)
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"faults-{datetime.now():%Y%m%d-%H%M%S}"
        stem.with_suffix(".json").write_text(data)
        stem.with_suffix(".txt").write_text(table + "\n")
        written = [f"{stem}.json"]
        if set(chosen) == {s.name for s in SCENARIOS}:
            docs = Path(options["docs"])
            docs.mkdir(parents=True, exist_ok=True)
            (docs / "results.json").write_text(data)
            (docs / "results.txt").write_text(table + "\n")
            written.append(f"{docs}/results.json")
        self.stdout.write(table)
        self.stderr.write("wrote " + " and ".join(written))
