"""bench-compare's arithmetic (bench/compare.py): the A B B A order, the pairs it compares, the
calibrated ratios and the verdict. The runs themselves are whole benchmarks (make bench-compare)."""

from __future__ import annotations

import pytest

from bench.compare import (
    CALIBRATION_REFERENCE_S,
    Run,
    calibrate,
    order,
    ratios,
    run_from_report,
)


def _report(**cpu: tuple[float, float, float]) -> dict:
    """A bench_digests JSON report with the given (workers, postgres, total) ms per phase."""
    return {
        "phases": [
            {"name": name.replace("_", "-"), "cpu_ms": {"workers": w, "postgres": p, "total": t}}
            for name, (w, p, t) in cpu.items()
        ]
    }


def _run(side: str, workers: float, *, calibration: float = CALIBRATION_REFERENCE_S) -> Run:
    return run_from_report(
        side=side,
        calibration_s=calibration,
        report=_report(build=(workers, 1.0, workers + 1.0), deliver=(2 * workers, 1.0, 2 * workers + 1.0)),
    )


def test_order_alternates_a_b_b_a_and_repeats() -> None:
    assert order(2) == ["base", "head", "head", "base"]
    assert order(3) == ["base", "head", "head", "base", "base", "head"]
    assert order(1) == order(2)  # never fewer than A B B A


def test_deliver_is_the_mean_of_both_runs_without_feedback_and_missing_phases_are_left_out() -> None:
    run = run_from_report(
        side="base",
        calibration_s=1.0,
        report=_report(build=(4.0, 1.0, 5.0), deliver=(6.0, 2.0, 8.0), deliver_2=(8.0, 2.0, 10.0)),
    )
    assert run.cpu_ms["deliver"] == {"workers": 7.0, "postgres": 2.0, "total": 9.0}
    assert "build-fb" not in run.cpu_ms


def test_calibration_scales_a_run_measured_on_a_slower_machine_back() -> None:
    slow = _run("base", 10.0, calibration=2 * CALIBRATION_REFERENCE_S)
    assert slow.calibrated("build", "workers") == pytest.approx(5.0)


def test_a_head_twice_as_fast_in_every_pair_is_faster() -> None:
    runs = [_run("base", 10.0), _run("head", 5.0), _run("head", 5.5), _run("base", 11.0)]
    build = next(r for r in ratios(runs) if (r.group, r.metric) == ("build", "workers"))
    assert build.ratio == pytest.approx(10.5 / 21)
    assert (build.low, build.high) == (pytest.approx(0.5), pytest.approx(0.5))
    assert build.verdict == "faster"


def test_machine_drift_between_runs_cancels_when_calibrated() -> None:
    # The machine slows down 2x during the sitting; both sides cost the same.
    runs = [
        _run("base", 10.0, calibration=0.25),
        _run("head", 15.0, calibration=0.375),
        _run("head", 20.0, calibration=0.5),
        _run("base", 20.0, calibration=0.5),
    ]
    build = next(r for r in ratios(runs) if (r.group, r.metric) == ("build", "workers"))
    assert build.ratio == pytest.approx(1.0)
    assert build.verdict == "within noise"


def test_pairs_that_disagree_are_within_noise_even_with_a_large_mean() -> None:
    runs = [_run("base", 10.0), _run("head", 20.0), _run("head", 9.0), _run("base", 10.0)]
    build = next(r for r in ratios(runs) if (r.group, r.metric) == ("build", "workers"))
    assert build.ratio > 1.05
    assert build.low < 1 < build.high
    assert build.verdict == "within noise"


def test_slower_when_every_pair_is_slower() -> None:
    runs = [_run("base", 10.0), _run("head", 12.0), _run("head", 12.5), _run("base", 10.5)]
    assert {r.verdict for r in ratios(runs) if r.metric == "workers"} == {"slower"}


def test_calibration_loop_costs_cpu() -> None:
    assert calibrate(loop=100_000, repeats=1) > 0
