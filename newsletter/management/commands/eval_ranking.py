import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from newsletter.services.learning.baselines import BASELINES
from newsletter.services.learning.evaluation import (
    EVAL_LIMIT,
    FEEDBACK_MODES,
    RANDOM_SEED,
    EvaluationError,
    Protocol,
    ranking_evaluate,
)

ANCHOR_SHOWN = 60
BASELINE_LABELS = {
    "tfidf_title": "baseline: TF-IDF, reader's query (sklearn)",
    "bm25": "baseline: BM25, reader's query (rank_bm25)",
    "random": f"baseline: random (seed {RANDOM_SEED})",
    "learner": "baseline: LinearSVC learner (centroid w/o negatives)",
}
FEEDBACK_SAID = {
    "full": "marks every paper",
    "likes": "likes the list members shown",
    "sparse": "likes at most 2 list members",
}


class Command(BaseCommand):
    help = (
        "Precision@10 of the production ranking on 'similar papers' listing files (the first paper of "
        "each file is the anchor), over rounds of simulated feedback, with same-run baselines. "
        "Runs in a transaction that is rolled back: the database is left unchanged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, help="Listing files (papers/sample_data/*.txt).")
        parser.add_argument("--rounds", type=int, default=3, help="Digests per reader (default 3).")
        parser.add_argument(
            "--interests",
            type=Path,
            help="JSON object: list file name -> the reader's interest text (replaces the anchor title).",
        )
        parser.add_argument(
            "--topics",
            type=Path,
            help="JSON object: list file name -> topic slugs (without --interests: topics only).",
        )
        parser.add_argument(
            "--without-anchor", action="store_true", help="Do not ingest the first paper of each file."
        )
        parser.add_argument(
            "--feedback",
            choices=FEEDBACK_MODES,
            default="full",
            help="full: mark every paper shown; likes: like the list members shown; "
            "sparse: like at most the first 2 list members of each digest.",
        )
        parser.add_argument(
            "--library",
            type=int,
            default=0,
            metavar="N",
            help="The reader imports the first N papers of each list after the anchor as their library "
            "(and says nothing else unless --interests or --topics do); those N are not counted.",
        )
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args, **options) -> None:
        if options["rounds"] < 1:
            raise CommandError("--rounds must be at least 1")
        if options["library"] < 0:
            raise CommandError("--library must be 0 or more")
        protocol = Protocol(
            interests=_mapping(options["interests"], "--interests", str),
            topics=_mapping(options["topics"], "--topics", list),
            without_anchor=options["without_anchor"],
            feedback=options["feedback"],
            library=options["library"],
        )
        try:
            result = ranking_evaluate(paths=options["files"], rounds=options["rounds"], protocol=protocol)
        except EvaluationError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
            return
        rounds = range(1, options["rounds"] + 1)
        self.stdout.write(
            f"precision@{EVAL_LIMIT} per round (after each round the reader "
            f"{FEEDBACK_SAID[options['feedback']]})"
        )
        header = f"{'file':<28} {'reader':<{ANCHOR_SHOWN}}" + "".join(f" {'r' + str(r):>5}" for r in rounds)
        self.stdout.write(header + " short")
        for row in result.lists:
            reader = row["reader"]
            said = reader["interests"] or (
                "topics: " + ", ".join(reader["topics"]) if reader["topics"] else ""
            )
            if reader["library"]:
                said = "; ".join(filter(None, [f"library of {len(reader['library'])}", said]))
            said = said if len(said) <= ANCHOR_SHOWN else said[: ANCHOR_SHOWN - 1] + "…"
            self.stdout.write(
                f"{row['file']:<28} {said:<{ANCHOR_SHOWN}}"
                + _cells(row["precision"])
                + f" {len(row['short_digests']):5d}"
            )
        width = 29 + ANCHOR_SHOWN
        self.stdout.write(f"{'mean: production ranking':<{width}}" + _cells(result.mean))
        for name in BASELINES:
            self.stdout.write(f"{BASELINE_LABELS[name]:<{width}}" + _cells(result.baselines[name]))


def _mapping(path: Path | None, option: str, kind: type) -> dict | None:
    """A reader file: a JSON object of list file name -> `kind` (text, or a list of topic slugs)."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"{option} {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, kind) for v in data.values()):
        raise CommandError(f"{option} {path}: expected a JSON object of file name -> {kind.__name__}")
    if kind is list and not all(isinstance(s, str) for v in data.values() for s in v):
        raise CommandError(f"{option} {path}: topics must be lists of slugs")
    return data


def _cells(values: list[float]) -> str:
    return "".join(f" {v:5.2f}" for v in values)
