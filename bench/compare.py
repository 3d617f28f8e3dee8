"""`make bench-compare REV=<git rev>`: the same benchmark on another revision and on this working tree,
run alternately in one sitting, reported as ratios.

Why: this VM's speed moves up to 3x between hours, and 15% between two runs of the same code a few
minutes apart. A figure from another run means little; the ratio of two revisions measured side by
side, in the order A B B A (and again), cancels a drift that is steady over the sitting, and the
spread of the pairwise ratios says how much is left. Each run is also normalized by a fixed
pure-Python calibration loop timed just before it, so "calibrated ms" carry across machines and
hours (ms per digest as if the loop took CALIBRATION_REFERENCE_S).

Each side is a whole `bench_digests` process of its own revision (REV in a git worktree with its own
virtualenv under var/bench-compare/), each with a database of its own (the schemas of the two
revisions may differ), on the same generated list: the same size, paper count and seed. Phases
compared: build (rank + render, no SMTP), deliver (build + send into the SMTP sink; the mean of the
runs without feedback), and, where both revisions have them, the feedback phases.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.cpu import CALIBRATION_REFERENCE_S, calibrate

REPO = Path(__file__).resolve().parent.parent
WORKTREES = REPO / "var" / "bench-compare"

# A ratio counts as a change only when every pair agrees on its side of 1 and the mean is past this.
NOISE = 0.05

# Phase groups: the name in the report, the bench phases averaged into it.
PHASE_GROUPS = {
    "build": ("build",),
    "deliver": ("deliver", "deliver-2"),
    "build-fb": ("build-fb",),
    "deliver-fb": ("deliver-fb", "deliver-fb-2"),
}
METRICS = ("workers", "postgres", "total")


@dataclass
class Run:
    side: str  # "base" (REV) or "head" (the working tree)
    calibration_s: float
    # phase group -> metric -> CPU ms per digest
    cpu_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    def calibrated(self, group: str, metric: str) -> float:
        return self.cpu_ms[group][metric] * CALIBRATION_REFERENCE_S / self.calibration_s


def run_from_report(*, side: str, calibration_s: float, report: dict) -> Run:
    """The phase groups of one bench_digests JSON report (phases of one size)."""
    run = Run(side=side, calibration_s=calibration_s)
    by_name = {phase["name"]: phase for phase in report["phases"] if phase.get("cpu_ms")}
    for group, names in PHASE_GROUPS.items():
        phases = [by_name[name] for name in names if name in by_name]
        if phases:
            run.cpu_ms[group] = {
                metric: statistics.mean(p["cpu_ms"][metric] for p in phases) for metric in METRICS
            }
    return run


@dataclass(frozen=True)
class Ratio:
    group: str
    metric: str
    base_ms: float  # calibrated, mean over the base runs
    head_ms: float
    ratio: float  # head / base over all runs
    low: float  # the least and greatest ratio of neighbouring pairs
    high: float

    @property
    def verdict(self) -> str:
        if self.high < 1 and self.ratio < 1 - NOISE:
            return "faster"
        if self.low > 1 and self.ratio > 1 + NOISE:
            return "slower"
        return "within noise"


def _pairs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """Neighbouring (base, head) pairs of the A B B A ... order: each head with the base next to it."""
    pairs = []
    for index in range(0, len(runs) - 1, 2):
        first, second = runs[index], runs[index + 1]
        if {first.side, second.side} == {"base", "head"}:
            pairs.append((first, second) if first.side == "base" else (second, first))
    return pairs


def ratios(runs: list[Run]) -> list[Ratio]:
    """Head / base for every phase group and metric that both sides measured."""
    result = []
    pairs = _pairs(runs)
    for group in PHASE_GROUPS:
        if not all(group in run.cpu_ms for run in runs):
            continue
        for metric in METRICS:
            base = [r.calibrated(group, metric) for r in runs if r.side == "base"]
            head = [r.calibrated(group, metric) for r in runs if r.side == "head"]
            if not base or not head or min(base) <= 0:
                continue
            pair_ratios = [h.calibrated(group, metric) / b.calibrated(group, metric) for b, h in pairs]
            mean_base, mean_head = statistics.mean(base), statistics.mean(head)
            result.append(
                Ratio(
                    group=group,
                    metric=metric,
                    base_ms=mean_base,
                    head_ms=mean_head,
                    ratio=mean_head / mean_base,
                    low=min(pair_ratios, default=mean_head / mean_base),
                    high=max(pair_ratios, default=mean_head / mean_base),
                )
            )
    return result


def order(runs: int) -> list[str]:
    """base head head base, repeated: `runs` runs of each side (at least 2)."""
    sides: list[str] = []
    for index in range(max(runs, 2)):
        sides += ["base", "head"] if index % 2 == 0 else ["head", "base"]
    return sides


def worktree_prepare(rev: str, log: Callable[[str], None]) -> Path:
    """A worktree of REV with its own virtualenv (pip's cache makes a second one quick)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True, text=True
    )
    if sha.returncode != 0:
        raise SystemExit(f"unknown revision {rev!r}: {sha.stderr.strip()}")
    path = WORKTREES / sha.stdout.strip()[:12]
    if not (path / "manage.py").exists():
        log(f"creating a worktree of {rev} in {path}")
        WORKTREES.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), sha.stdout.strip()], cwd=REPO, check=True
        )
    log(f"installing {rev}'s packages into its own .venv (quick when unchanged)")
    subprocess.run(
        ["bash", "-c", "source scripts/venv.sh && ensure_venv requirements-dev.txt"], cwd=path, check=True
    )
    return path


def database_drop(name: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f'DROP DATABASE IF EXISTS "{name}"'],
        check=True,
        capture_output=True,
    )


def side_run(*, root: Path, database: str, bench_args: list[str], log: Callable[[str], None]) -> dict:
    """One bench_digests process of the checkout at `root`; its JSON report."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.bench",
        "BENCH_DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin",
    }
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as out:
        command = [
            str(root / ".venv" / "bin" / "python"), "manage.py", "bench_digests", *bench_args,
            "--naive-sample", "0", "--scale-out-at", "0", "--send-rate", "", "--json", "--out", out,
        ]  # fmt: skip
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            log(done.stderr[-3000:])
            raise SystemExit(f"bench_digests failed in {root} (exit {done.returncode})")
        # The report file, not stdout: a revision may print other lines there.
        (report,) = Path(out).glob("*.json")
        return json.loads(report.read_text())


def compare_run(
    *, rev: str, subscribers: int, papers: int, seed: int, runs: int, log: Callable[[str], None] = print
) -> list[Run]:
    base_root = worktree_prepare(rev, log)
    # The working tree's database is named after its path, so two checkouts never share one.
    head_database = f"paper_digest_bench_head_{hashlib.sha1(str(REPO).encode()).hexdigest()[:8]}"
    roots = {
        "base": (base_root, f"paper_digest_bench_{base_root.name}"),
        "head": (REPO, head_database),
    }
    bench_args = ["--subscribers", str(subscribers), "--papers", str(papers), "--seed", str(seed)]
    # Fresh databases for the sitting: one left by an earlier sitting may hold another revision's
    # schema (a column this revision does not fill), and bench_digests only migrates forward.
    for _, database in roots.values():
        database_drop(database)
    results = []
    for index, side in enumerate(order(runs), start=1):
        root, database = roots[side]
        calibration = calibrate()
        log(
            f"run {index}: {side} ({rev if side == 'base' else 'working tree'}), "
            f"calibration {calibration:.3f} s"
        )
        report = side_run(root=root, database=database, bench_args=bench_args, log=log)
        results.append(run_from_report(side=side, calibration_s=calibration, report=report))
    return results


def compare_table(*, rev: str, runs: list[Run]) -> str:
    lines = [
        f"head = working tree, base = {rev}; order {' '.join(r.side for r in runs)}",
        f"calibration loop: {', '.join(f'{r.calibration_s:.3f}' for r in runs)} s "
        f"(calibrated ms = ms x {CALIBRATION_REFERENCE_S} s / loop)",
        "",
        f"{'phase':<11}{'CPU':<10}{'base cal. ms':>13}{'head cal. ms':>13}{'head/base':>10}"
        f"{'pair spread':>15}  verdict",
    ]
    for r in ratios(runs):
        lines.append(
            f"{r.group:<11}{r.metric:<10}{r.base_ms:>13.2f}{r.head_ms:>13.2f}{r.ratio:>10.2f}"
            f"{f'{r.low:.2f}-{r.high:.2f}':>15}  {r.verdict}"
        )
    lines += ["", "per run, calibrated CPU ms per digest (workers / postgres / total):"]
    for index, run in enumerate(runs, start=1):
        cells = "  ".join(
            f"{group} {run.calibrated(group, 'workers'):.2f}/{run.calibrated(group, 'postgres'):.2f}"
            f"/{run.calibrated(group, 'total'):.2f}"
            for group in run.cpu_ms
        )
        lines.append(f"  {index} {run.side:<5} {cells}")
    return "\n".join(lines)


def compare_json(*, rev: str, runs: list[Run]) -> str:
    return json.dumps(
        {
            "rev": rev,
            "calibration_reference_s": CALIBRATION_REFERENCE_S,
            "runs": [{"side": r.side, "calibration_s": r.calibration_s, "cpu_ms": r.cpu_ms} for r in runs],
            "ratios": [{**asdict(r), "verdict": r.verdict} for r in ratios(runs)],
        },
        indent=2,
    )
