import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from newsletter.services.learning.evaluation import EVAL_LIMIT, RANDOM_SEED, EvaluationError, ranking_evaluate

ANCHOR_SHOWN = 60


class Command(BaseCommand):
    help = (
        "Precision@10 of the production ranking on 'similar papers' listing files (the first paper of "
        "each file is the reader's interest), over rounds of simulated feedback, with two baselines. "
        "Runs in a transaction that is rolled back: the database is left unchanged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, help="Listing files (papers/sample_data/*.txt).")
        parser.add_argument("--rounds", type=int, default=3, help="Digests per reader (default 3).")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args, **options) -> None:
        if options["rounds"] < 1:
            raise CommandError("--rounds must be at least 1")
        try:
            result = ranking_evaluate(paths=options["files"], rounds=options["rounds"])
        except EvaluationError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
            return
        rounds = range(1, options["rounds"] + 1)
        self.stdout.write(f"precision@{EVAL_LIMIT} per round (after each round the reader marks every paper)")
        header = f"{'file':<28} {'anchor':<{ANCHOR_SHOWN}}" + "".join(f" {'r' + str(r):>5}" for r in rounds)
        self.stdout.write(header)
        for row in result.lists:
            anchor = (
                row["anchor"]
                if len(row["anchor"]) <= ANCHOR_SHOWN
                else row["anchor"][: ANCHOR_SHOWN - 1] + "…"
            )
            self.stdout.write(f"{row['file']:<28} {anchor:<{ANCHOR_SHOWN}}" + _cells(row["precision"]))
        width = 29 + ANCHOR_SHOWN
        self.stdout.write(f"{'mean: production ranking':<{width}}" + _cells(result.mean))
        self.stdout.write(
            f"{'baseline: TF-IDF, title query (sklearn)':<{width}}" + _cells(result.baselines["tfidf_title"])
        )
        self.stdout.write(
            f"{f'baseline: random (seed {RANDOM_SEED})':<{width}}" + _cells(result.baselines["random"])
        )


def _cells(values: list[float]) -> str:
    return "".join(f" {v:5.2f}" for v in values)
