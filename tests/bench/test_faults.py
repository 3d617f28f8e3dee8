"""The fault suite's table (bench/faults.py). The suite itself is run by `make faults`, not by the
test suite: it restarts and crashes servers for minutes."""

from __future__ import annotations

import json

from bench.faults import FaultReport, RunResult, report_json, report_table


def run(
    scenario: str, *, total: float, recovery: float | None, lost: int = 0, duplicates: int = 0
) -> RunResult:
    return RunResult(
        scenario=scenario,
        deliveries=3000,
        sent=2990,
        emails=2990 + duplicates,
        lost=lost,
        duplicates=duplicates,
        extra_emails=duplicates,
        fault_after=None if recovery is None else 15.0,
        outage=None if recovery is None else 1.0,
        recovery=recovery,
        total=total,
    )


def test_the_table_shows_each_runs_values_and_the_delay_against_a_run_without_fault() -> None:
    report = FaultReport(
        machine={},
        subscribers=3000,
        settings={"claim_lease_s": 60, "stale_pending_s": 60, "sweep_every_s": 30, "retry_backoff_s": 30},
        runs=[
            run("none", total=50.0, recovery=None),
            run("none", total=52.0, recovery=None),
            run("worker-kill", total=120.0, recovery=105.0, duplicates=1),
            run("worker-kill", total=110.0, recovery=95.0, duplicates=0),
        ],
    )

    lines = report_table(report).splitlines()

    kill = next(line for line in lines if line.startswith("worker SIGKILL"))
    # runs, lost, duplicates, recovery, delay (against the median run without fault, 52 s)
    assert kill.split()[5:] == ["2", "0,", "0", "1,", "0", "105,", "95", "+68,", "+58"]
    assert "—" in next(line for line in lines if line.startswith("none"))
    assert not any(line.startswith("Redis") for line in lines)  # not run, not shown
    assert json.loads(report_json(report))["runs"][2]["duplicates"] == 1
