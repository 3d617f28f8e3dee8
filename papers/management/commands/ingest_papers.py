from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from papers.models import Topic
from papers.services.fetch import FetchError, url_fetch
from papers.services.ingest import IngestReport, papers_ingest_bytes, papers_ingest_path
from papers.services.tagging import topic_model_build


class Command(BaseCommand):
    help = (
        "Ingest papers from files, directories or URLs. The format (plain-text listing, Hugging Face "
        "daily papers JSON, arXiv Atom) is detected from the content. Exits 1 if an input failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("inputs", nargs="+", metavar="PATH_OR_URL")
        parser.add_argument("--quiet", action="store_true", help="Only print the summary.")

    def handle(self, *args, inputs: list[str], quiet: bool, **options) -> None:
        model = topic_model_build(topics=Topic.objects.all())
        report = IngestReport()
        progress = tqdm(unit=" papers", desc="ingesting", disable=quiet or None, leave=False)
        for name in _expand(inputs):
            if name.startswith(("http://", "https://")):
                try:
                    fetched = url_fetch(url=name)
                except FetchError as exc:
                    report.errors.append((name, str(exc)))
                    continue
                part = papers_ingest_bytes(
                    data=fetched.data,
                    name=name,
                    model=model,
                    on_progress=progress.update,
                    created_before=report.created_ids,
                )
            else:
                part = papers_ingest_path(
                    path=Path(name),
                    model=model,
                    on_progress=progress.update,
                    created_before=report.created_ids,
                )
            report.merge(part)
        progress.close()
        self._print(report, quiet=quiet)
        if report.errors:
            raise CommandError(f"{len(report.errors)} input(s) could not be ingested", returncode=1)

    def _print(self, report: IngestReport, *, quiet: bool) -> None:
        # --quiet (cron) keeps the summary, which counts the rejections, and the errors that fail the run.
        if not quiet:
            for name, rejection in report.rejected:
                self.stdout.write(f"rejected {name}: {rejection.position}: {rejection.reason}")
        for name, message in report.errors:
            self.stderr.write(f"error {name}: {message}")
        self.stdout.write(f"{report.counts()}, {len(report.errors)} input(s) failed")


def _expand(inputs: list[str]) -> list[str]:
    """Directories stand for the files directly inside them, in name order."""
    names = []
    for name in inputs:
        path = Path(name)
        if not name.startswith(("http://", "https://")) and path.is_dir():
            names.extend(str(p) for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith("."))
        else:
            names.append(name)
    return names
