"""The fault suite (`make faults`): delivery under real faults, measured.

Everything runs for real and on servers of its own: a throwaway PostgreSQL cluster and a private
redis-server on free ports (restarted and crashed here; the machine's own servers are never touched),
`celery worker -c 2` and `celery beat` with the default limits (lease, sweeper, stale-pending), and
an SMTP server that records each message before it answers 250, as a real MTA does. Each run sends
the digests of `bench/data.py` subscribers, injects one fault when about 30% have arrived, and waits
until the database shows every delivery finished. Then it counts, at the SMTP server:

- lost: deliveries never finished, or marked SENT without an email having arrived;
- duplicates: recipients who got two emails or more;
- recovery: the last email's arrival minus the moment the fault began.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import redis
from django.conf import settings
from django.core.management import call_command
from django.db import OperationalError, connection
from django.utils import timezone

from bench.data import bench_data_create, deliveries_reset
from config.celery import app
from newsletter.models import Delivery
from newsletter.tasks import dispatch_digests
from tests.support import PostgresCluster, RecordingSMTPServer, RedisServer, free_port, process_group_stop

REPO = Path(__file__).resolve().parent.parent
FAULT_AT = 0.3  # the fault comes when this share of the digests has arrived
SMTP_OUTAGE = 20.0  # seconds
RUN_TIMEOUT = 900.0  # seconds after the fault; what is unfinished then counts as lost
FINISHED = [Delivery.Status.SENT, Delivery.Status.SKIPPED, Delivery.Status.FAILED]


@dataclass
class Rig:
    """The servers and processes of one suite run; faults act on them."""

    postgres: PostgresCluster
    redis: RedisServer
    smtp: RecordingSMTPServer
    env: dict[str, str]
    logs: Path
    run: str = ""  # names this run's log files
    worker: subprocess.Popen | None = None
    beat: subprocess.Popen | None = None

    def worker_start(self, env: dict[str, str]) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-c", "2", "-P", "prefork",
            "--without-gossip", "--without-mingle", "-l", "INFO", "-n", f"faults-{os.getpid()}@%h",
        ]  # fmt: skip
        self.worker = self._spawn(command, env, "worker")

    def beat_start(self, env: dict[str, str]) -> None:
        # A fresh schedule file per run: the sweeper's first run is a full interval after the start,
        # as for a beat that has just been (re)started.
        schedule = self.logs / "beat-schedule"
        for stale in self.logs.glob("beat-schedule*"):
            stale.unlink()
        command = [
            sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO",
            "-s", str(schedule), "--pidfile", str(self.logs / "beat.pid"),
        ]  # fmt: skip
        self.beat = self._spawn(command, env, "beat")

    def log_file(self, process: str) -> Path:
        return self.logs / f"{self.run}-{process}.log"

    def _spawn(self, command: list[str], env: dict[str, str], process: str) -> subprocess.Popen:
        with self.log_file(process).open("ab") as out:
            return subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop_processes(self) -> None:
        for process in (self.worker, self.beat):
            if process is not None:
                process_group_stop(process, timeout=60)
        self.worker = self.beat = None


# --- the faults: each acts, and returns when the failed part is back ----------------------------


def worker_kill(rig: Rig, env: dict[str, str]) -> None:
    """SIGKILL to the worker and its two pool processes; a supervisor starts it again a second later."""
    os.killpg(rig.worker.pid, signal.SIGKILL)
    rig.worker.wait()
    time.sleep(1)
    rig.worker_start(env)


def redis_restart(rig: Rig, env: dict[str, str]) -> None:
    """Redis shut down and started again (nothing persisted): every queued chunk is gone."""
    rig.redis.process.terminate()
    rig.redis.process.wait()
    time.sleep(1)
    rig.redis.start()


def postgres_restart(rig: Rig, env: dict[str, str]) -> None:
    rig.postgres.restart_fast()


def postgres_crash(rig: Rig, env: dict[str, str]) -> None:
    rig.postgres.crash()
    rig.postgres.start()


def smtp_down(rig: Rig, env: dict[str, str]) -> None:
    rig.smtp.stop()
    time.sleep(SMTP_OUTAGE)
    rig.smtp.start()


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    fault: Callable[[Rig, dict[str, str]], None] | None
    env: dict[str, str] = field(default_factory=dict)


SCENARIOS = [
    Scenario("none", "none", None),
    Scenario("worker-kill", "worker SIGKILL (-c 2), restarted", worker_kill),
    Scenario("redis-restart", "Redis shutdown + restart", redis_restart),
    Scenario("postgres-restart", "PostgreSQL fast restart", postgres_restart),
    Scenario(
        "postgres-crash-async",
        "PostgreSQL crash, async outcomes on",
        postgres_crash,
        {"NEWSLETTER_ASYNC_COMMIT_OUTCOMES": "on"},
    ),
    Scenario(
        "postgres-crash-sync",
        "PostgreSQL crash, async outcomes off",
        postgres_crash,
        {"NEWSLETTER_ASYNC_COMMIT_OUTCOMES": "off"},
    ),
    Scenario("smtp-down", f"SMTP down {SMTP_OUTAGE:.0f} s", smtp_down),
]


@dataclass
class RunResult:
    scenario: str
    deliveries: int
    sent: int
    emails: int
    lost: int
    duplicates: int  # recipients with two emails or more
    extra_emails: int
    fault_after: float | None  # seconds from dispatch to the fault
    outage: float | None  # seconds from the fault until the failed part was back
    recovery: float | None  # seconds from the fault to the last email
    total: float  # seconds from dispatch to the last email
    errors: list[str] = field(default_factory=list)  # the first ERROR lines of the worker's log


def _query(fn: Callable[[], int]) -> int | None:
    """A count from the database, or None while it is away (this process reconnects next time)."""
    try:
        return fn()
    except OperationalError:
        connection.close()
        return None


def _worker_answers() -> bool:
    # A connection of its own each time: a pooled one may date from before a Redis restart.
    try:
        with app.connection_for_write() as broker:
            return len(app.control.ping(timeout=0.5, connection=broker)) >= 1
    except (redis.RedisError, OSError):
        return False


def _wait(condition: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def scenario_run(
    rig: Rig, scenario: Scenario, *, subscribers: int, run: int, log: Callable[[str], None]
) -> RunResult:
    rig.run = f"{scenario.name}-{run}"
    deliveries_reset(now=timezone.now())
    redis.Redis.from_url(rig.redis.url).flushdb()  # the private Redis: only this suite's queue
    rig.smtp.messages.clear()
    rig.smtp.count = 0
    env = {**rig.env, **scenario.env}
    rig.worker_start(env)
    rig.beat_start(env)
    if not _wait(_worker_answers, timeout=120):
        raise RuntimeError(f"the worker did not start; see {rig.log_file('worker')}")

    started = time.time()
    with app.connection_for_write() as broker:
        dispatch_digests.apply_async(connection=broker)
    fault_at = back_at = None
    if scenario.fault is not None:
        _wait(lambda: rig.smtp.count >= FAULT_AT * subscribers, timeout=600, interval=0.02)
        fault_at = time.time()
        log(f"   {scenario.name}: fault after {rig.smtp.count} emails")
        scenario.fault(rig, env)
        back_at = time.time()

    def finished() -> bool:
        return _query(lambda: Delivery.objects.filter(status__in=FINISHED).count()) == subscribers

    _wait(finished, timeout=RUN_TIMEOUT, interval=0.5)
    time.sleep(2)  # an email in flight at the end still arrives and counts
    rig.stop_processes()
    return _result(rig, scenario, subscribers, started=started, fault_at=fault_at, back_at=back_at)


def _result(
    rig: Rig,
    scenario: Scenario,
    subscribers: int,
    *,
    started: float,
    fault_at: float | None,
    back_at: float | None,
) -> RunResult:
    received = rig.smtp.recipients()
    statuses = dict(Delivery.objects.values_list("subscriber__email", "status"))
    sent = [email for email, status in statuses.items() if status == Delivery.Status.SENT]
    unfinished = sum(1 for status in statuses.values() if status not in FINISHED)
    last = max((m.at for m in rig.smtp.messages), default=started)
    log_text = rig.log_file("worker").read_text(errors="replace")
    return RunResult(
        scenario=scenario.name,
        deliveries=len(statuses),
        sent=len(sent),
        emails=sum(received.values()),
        lost=unfinished + sum(1 for email in sent if not received[email]),
        duplicates=sum(1 for count in received.values() if count > 1),
        extra_emails=sum(count - 1 for count in received.values() if count > 1),
        fault_after=round(fault_at - started, 1) if fault_at else None,
        outage=round(back_at - fault_at, 1) if fault_at else None,
        recovery=round(last - fault_at, 1) if fault_at else None,
        total=round(last - started, 1),
        errors=[line for line in log_text.splitlines() if "ERROR" in line][:5],
    )


@dataclass
class FaultReport:
    machine: dict
    subscribers: int
    settings: dict
    runs: list[RunResult] = field(default_factory=list)


def faults_run(
    *, scenarios: list[str], runs: int, subscribers: int, papers: int, log: Callable[[str], None]
) -> FaultReport:
    chosen = [s for s in SCENARIOS if s.name in scenarios]
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    logs = REPO / "bench" / "results" / f"faults-{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    postgres = PostgresCluster(free_port()).start()
    private_redis = RedisServer(free_port()).start()
    smtp = RecordingSMTPServer().start()
    try:
        database_url = f"postgres://postgres@127.0.0.1:{postgres.port}/faults"
        _point_at(database_url=database_url, redis_url=private_redis.url)
        log(
            f"-- PostgreSQL {postgres.bin.parent.name} on port {postgres.port}, Redis on {private_redis.port}"
        )
        call_command("migrate", verbosity=0)
        bench_data_create(subscribers=subscribers, papers=papers, seed=1, now=timezone.now())
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.bench",
            "BENCH_DATABASE_URL": database_url,
            "BENCH_REDIS_URL": private_redis.url,
            "PYTHONPATH": str(REPO),
            **smtp.email_env(),
        }
        rig = Rig(postgres=postgres, redis=private_redis, smtp=smtp, env=env, logs=logs)
        report = FaultReport(machine=_machine(postgres), subscribers=subscribers, settings=_limits())
        for round_number in range(runs):
            for scenario in chosen:
                log(f"-- {scenario.title} (run {round_number + 1} of {runs})")
                try:
                    result = scenario_run(
                        rig, scenario, subscribers=subscribers, run=round_number + 1, log=log
                    )
                finally:
                    rig.stop_processes()
                report.runs.append(result)
                log(
                    f"   lost {result.lost}, duplicates {result.duplicates}, recovery {result.recovery} s, "
                    f"total {result.total} s"
                )
        return report
    finally:
        connection.close()
        smtp.stop()
        private_redis.kill()
        postgres.destroy()


def _point_at(*, database_url: str, redis_url: str) -> None:
    """This process's database and broker: the suite's own servers. Django connects lazily, so the
    connection opened next goes there; the database is created first."""
    import psycopg

    port = database_url.rsplit(":", 1)[1].split("/")[0]
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as db:
        db.execute("CREATE DATABASE faults")
    connection.close()
    settings.DATABASES["default"].update(HOST="127.0.0.1", PORT=port, NAME="faults", USER="postgres")
    app.conf.broker_url = redis_url


def _limits() -> dict:
    return {
        "claim_lease_s": settings.NEWSLETTER_CLAIM_LEASE.total_seconds(),
        "stale_pending_s": settings.NEWSLETTER_STALE_PENDING.total_seconds(),
        "sweep_every_s": settings.NEWSLETTER_SWEEP_SECONDS,
        "retry_backoff_s": settings.NEWSLETTER_RETRY_BACKOFF_SECONDS,
        "chunk_size": settings.NEWSLETTER_CHUNK_SIZE,
    }


def _machine(postgres: PostgresCluster) -> dict:
    import platform

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": postgres.bin.parent.name,
        "date": datetime.now().isoformat(timespec="seconds"),
        "workers": "celery worker -c 2 (prefork), celery beat",
    }


def report_json(report: FaultReport) -> str:
    return json.dumps(asdict(report), indent=2)


def report_table(report: FaultReport) -> str:
    """One line per scenario: its runs' values side by side, as in the issue's table."""
    lines = [
        f"{report.subscribers:,} due digests, fault at ~{FAULT_AT:.0%} of the send; recovery = last email "
        "minus fault time; delay = total time minus that of a run without fault",
        "",
        f"{'fault':<38} {'runs':>4}  {'lost':<9} {'recipients with 2 emails':<25} {'recovery s':<18} delay s",
    ]
    # The fault's cost: the run's total time minus the median of the runs without a fault.
    baseline = sorted(r.total for r in report.runs if r.scenario == "none")
    median = baseline[len(baseline) // 2] if baseline else None
    for scenario in SCENARIOS:
        runs = [r for r in report.runs if r.scenario == scenario.name]
        if not runs:
            continue
        lost = ", ".join(str(r.lost) for r in runs)
        duplicates = ", ".join(str(r.duplicates) for r in runs)
        recovery = ", ".join("—" if r.recovery is None else f"{r.recovery:.0f}" for r in runs)
        delay = ", ".join(
            "—" if median is None or r.recovery is None else f"{r.total - median:+.0f}" for r in runs
        )
        lines.append(
            f"{scenario.title:<38} {len(runs):>4}  {lost:<9} {duplicates:<25} {recovery:<18} {delay}"
        )
    limits = report.settings
    lines += [
        "",
        f"limits: lease {limits['claim_lease_s']:.0f} s, sweeper every {limits['sweep_every_s']} s, "
        f"stale pending {limits['stale_pending_s']:.0f} s, retry backoff {limits['retry_backoff_s']} s",
    ]
    return "\n".join(lines)
