"""The digest benchmark: real Celery workers on Redis, the production code paths, a naive baseline.

Each phase makes every subscriber due, starts `celery -A config worker -c W` (prefork, W processes),
queues the production `dispatch_digests` task and waits until the database shows every delivery
finished. The workers' own instrumentation (bench/apps.py) reports per-chunk time, queries and memory.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from bench.cpu import ServerCpu, calibrate, parallel_capacity, process_cpu, self_cpu, thread_cpu
from bench.data import bench_data_create, deliveries_reset, feedback_clear, feedback_create
from bench.naive import naive_run
from config.celery import app
from newsletter.models import Delivery, Subscriber
from newsletter.tasks import dispatch_digests
from tests.support import RecordingSMTPServer, free_port

REPO = Path(__file__).resolve().parent.parent


# The feedback phases fit a model for 30% of the list first, about 40 ms each: 2 minutes at 10,000
# subscribers, 20 at 100,000. Above this size they are left out.
FEEDBACK_MAX_SIZE = 10_000


@dataclass
class Phase:
    name: str
    subscribers: int
    papers: int
    workers: int
    deliveries: int
    emails: int
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    peak_rss_mb: float
    queries_per_chunk: float | None = None
    chunk_size: int | None = None
    chunks: int | None = None
    # CPU milliseconds per digest, by part of the system: workers, postgres, redis, smtp_sink, total.
    cpu_ms: dict[str, float] = field(default_factory=dict)
    # CPU seconds of the fixed calibration loop (bench/cpu.py) timed just before the phase: the
    # machine's speed at that moment, so the phase's CPU figures can be given as calibrated ms.
    calibration_s: float | None = None
    # How many times one process's work 2 processes get done at once on the machine just before the
    # phase (bench/cpu.py parallel_capacity): the ceiling of any 2-worker scale-out at that moment.
    parallel_capacity: float | None = None


@dataclass
class Report:
    machine: dict
    data: list[dict] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)


def _connect(dbname: str | None = None) -> psycopg.Connection:
    """A connection of its own (autocommit) to the benchmark's server, outside Django's."""
    db = settings.DATABASES["default"]
    params = {"host": db["HOST"] or None, "port": db["PORT"] or None, "user": db["USER"] or None}
    params = {k: v for k, v in params.items() if v}
    return psycopg.connect(
        dbname=dbname or db["NAME"], password=db.get("PASSWORD") or None, autocommit=True, **params
    )


def database_ensure() -> None:
    """Create the benchmark database if it does not exist (Django connects lazily, so this runs first)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise SystemExit("The benchmark runs on PostgreSQL (set BENCH_DATABASE_URL).")
    with _connect("postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
    call_command("migrate", verbosity=0)


# The tables that fill up during a phase, and the ones the data set just filled.
_ANALYZED = ", ".join(
    [
        "newsletter_delivery",
        "newsletter_deliveryitem",
        "newsletter_subscriber",
        "newsletter_subscriber_topics",
    ]
)


class AutoAnalyze:
    """Planner statistics kept in step with the tables, as autovacuum's auto-analyze does.

    PostgreSQL's default is autovacuum on, and production must keep it; a server may run with it off
    (this development machine's does). Without statistics the planner takes the delivery tables for
    empty and reads them whole for every chunk: the cost per digest then grows with the list, which
    is the server's configuration, not the code's. So when autovacuum is off, the benchmark analyzes
    before each phase and every few seconds during it (in PostgreSQL: its CPU is counted there).
    """

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> AutoAnalyze:
        with _connect() as conn:
            if conn.execute("SHOW autovacuum").fetchone()[0] == "on":
                return self
            conn.execute(f"ANALYZE {_ANALYZED}")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with _connect() as conn:
            while not self._stop.wait(self.interval):
                conn.execute(f"ANALYZE {_ANALYZED}")

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)


class AiosmtpdSink(RecordingSMTPServer):
    """aiosmtpd in a thread of the benchmark process: accepts and counts, keeps nothing."""

    name = "aiosmtpd"

    def __init__(self) -> None:
        super().__init__(keep=False)

    def cpu(self) -> float:
        # The sink's event loop thread, whose CPU time is the sink's cost.
        return thread_cpu(self.thread_id) if self.thread_id else 0.0


class PostfixSink:
    """Postfix's smtp-sink, the SMTP throughput-testing server written in C: a real SMTP server
    (EHLO, MAIL, RCPT, DATA, dot-stuffing) that answers 250 and keeps nothing. It costs a few
    microseconds per message where aiosmtpd costs about 1.5 ms, CPU that would otherwise be taken
    from the workers on a small machine. Its running counters (-c) give the messages received."""

    name = "postfix smtp-sink"

    def __init__(self) -> None:
        self.port = free_port()
        self.count = 0
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> PostfixSink:
        command = [shutil.which("smtp-sink") or "smtp-sink", "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
        command += [f"127.0.0.1:{self.port}", "1024"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read_counters, daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def _read_counters(self) -> None:
        # "sess=1 quit=1 mesg=3\r", written again as each message arrives; the last one counts.
        tail = b""
        while chunk := self.process.stdout.read1(4096):
            text = tail + chunk
            if found := re.findall(rb"mesg=(\d+)", text):
                self.count = max(self.count, int(found[-1]))
            tail = text[-64:]

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def cpu(self) -> float:
        return process_cpu(self.process.pid) if self.process else 0.0


def smtp_sink(kind: str) -> AiosmtpdSink | PostfixSink:
    if kind == "smtp-sink" or (kind == "auto" and shutil.which("smtp-sink")):
        return PostfixSink()
    return AiosmtpdSink()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _wait_for_workers(expected: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5)
        if len(replies) >= expected:
            return
    raise RuntimeError("benchmark worker did not start")


def _cpu_ms(*, count: int, workers: float, servers: ServerCpu, sink: float) -> dict[str, float]:
    parts = {"workers": workers, "postgres": servers.postgres, "redis": servers.redis, "smtp_sink": sink}
    parts["total"] = sum(parts.values())
    return {name: round(1000 * seconds / max(count, 1), 2) for name, seconds in parts.items()}


def _timed_run(
    *, name: str, command: list[str], env: dict, subscribers: int, smtp: AiosmtpdSink | PostfixSink | None
) -> tuple[float, ServerCpu, float]:
    """Start the workers, queue the dispatcher, wait until every delivery is finished.
    Returns the seconds it took and the CPU the servers and the SMTP sink spent meanwhile."""
    worker = subprocess.Popen(command, cwd=REPO, env=env)
    try:
        _wait_for_workers(1, time.monotonic() + 60)
        servers_before, sink_before = ServerCpu.now(), smtp.cpu() if smtp else 0.0
        started = time.perf_counter()
        dispatch_digests.delay()
        finished_states = [Delivery.Status.SENT, Delivery.Status.SKIPPED, Delivery.Status.FAILED]
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            done = Delivery.objects.filter(status__in=finished_states).count()
            if done >= subscribers:
                break
            # The count is a query too: rarer on long runs, where a second is well within the error.
            time.sleep(0.2 if subscribers <= 10_000 else 1.0)
        else:
            raise RuntimeError(f"{name}: only {done} of {subscribers} deliveries finished")
        elapsed = time.perf_counter() - started
        servers = ServerCpu.now() - servers_before
        sink_cpu = (smtp.cpu() - sink_before) if smtp else 0.0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
    return elapsed, servers, sink_cpu


def celery_phase(
    *,
    name: str,
    workers: int,
    subscribers: int,
    papers: int,
    smtp: AiosmtpdSink | PostfixSink | None,
    extra_env: dict[str, str] | None = None,
) -> Phase:
    """One timed run of the production pipeline through `workers` Celery processes."""
    now = timezone.now()
    deliveries_reset(now=now)
    app.control.purge()
    stats_dir = tempfile.mkdtemp(prefix="bench-stats-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.bench",
        "BENCH_STATS_DIR": stats_dir,
        "PYTHONPATH": str(REPO),
        **(extra_env or {}),
    }
    if smtp:
        env["EMAIL_BACKEND"] = "django.core.mail.backends.smtp.EmailBackend"
        env["EMAIL_URL"] = f"smtp://127.0.0.1:{smtp.port}"
    else:
        env["EMAIL_BACKEND"] = "bench.backends.SerializeOnlyBackend"
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-c", str(workers), "-P", "prefork",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
        "-n", f"bench-{os.getpid()}-{name}@%h",
    ]  # fmt: skip
    calibration, capacity = calibrate(), parallel_capacity()
    with AutoAnalyze():
        elapsed, servers, sink_cpu = _timed_run(
            name=name, command=command, env=env, subscribers=subscribers, smtp=smtp
        )
    records = [
        json.loads(line) for path in Path(stats_dir).glob("*.jsonl") for line in path.read_text().splitlines()
    ]
    shutil.rmtree(stats_dir, ignore_errors=True)
    chunks = [r for r in records if r["task"] == "newsletter.tasks.send_digest_chunk" and r["size"]]
    per_digest_ms = [1000 * r["seconds"] / r["size"] for r in chunks]
    sent = Delivery.objects.filter(status=Delivery.Status.SENT).count()
    return Phase(
        name=name,
        subscribers=subscribers,
        papers=papers,
        workers=workers,
        deliveries=subscribers,
        emails=sent,
        seconds=round(elapsed, 2),
        per_second=round(subscribers / elapsed, 1),
        p50_ms=round(_percentile(per_digest_ms, 0.5), 2),
        p95_ms=round(_percentile(per_digest_ms, 0.95), 2),
        peak_rss_mb=round(max((r["max_rss_kb"] for r in records), default=0) / 1024, 1),
        queries_per_chunk=round(statistics.mean(r["queries"] for r in chunks), 1) if chunks else None,
        chunk_size=settings.NEWSLETTER_CHUNK_SIZE,
        chunks=len(chunks),
        cpu_ms=_cpu_ms(
            count=subscribers,
            workers=sum(r.get("cpu_seconds", 0.0) for r in records),
            servers=servers,
            sink=sink_cpu,
        ),
        calibration_s=round(calibration, 4),
        parallel_capacity=round(capacity, 3),
    )


def naive_phase(*, subscribers: int, papers: int, sample: int, smtp: AiosmtpdSink | PostfixSink) -> Phase:
    now = timezone.now()
    deliveries_reset(now=now)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    ids = list(Subscriber.objects.order_by("id").values_list("id", flat=True)[:sample])
    calibration = calibrate()
    with AutoAnalyze():
        servers_before, sink_before, process_before = ServerCpu.now(), smtp.cpu(), self_cpu()
        started = time.perf_counter()
        latencies = naive_run(subscriber_ids=ids, now=now)
        elapsed = time.perf_counter() - started
    sink_cpu = smtp.cpu() - sink_before
    # The baseline runs in this process, beside the sink's thread.
    naive_cpu = self_cpu() - process_before - (sink_cpu if isinstance(smtp, AiosmtpdSink) else 0.0)
    servers = ServerCpu.now() - servers_before
    ms = [1000 * x for x in latencies]
    return Phase(
        name="naive",
        subscribers=subscribers,
        papers=papers,
        workers=1,
        deliveries=len(ids),
        emails=Delivery.objects.filter(status=Delivery.Status.SENT).count(),
        seconds=round(elapsed, 2),
        per_second=round(len(ids) / elapsed, 1),
        p50_ms=round(_percentile(ms, 0.5), 2),
        p95_ms=round(_percentile(ms, 0.95), 2),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        cpu_ms=_cpu_ms(count=len(ids), workers=naive_cpu, servers=servers, sink=sink_cpu),
        calibration_s=round(calibration, 4),
    )


def machine_info() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": pg,
        "date": datetime.now().isoformat(timespec="seconds"),
    }


def _pipeline_phase(
    report: Report,
    *,
    name: str,
    workers: int,
    size: int,
    papers: int,
    smtp: AiosmtpdSink | PostfixSink | None,
    extra_env: dict[str, str] | None = None,
) -> None:
    """One build or deliver phase into the report; a deliver phase must reach the SMTP server once
    per SENT delivery."""
    before = smtp.count if smtp else 0
    phase = celery_phase(
        name=name, workers=workers, subscribers=size, papers=papers, smtp=smtp, extra_env=extra_env or {}
    )
    if smtp:
        received = smtp.count - before
        if received != phase.emails:
            raise RuntimeError(f"SMTP sink received {received} emails for {phase.emails} SENT deliveries")
    report.phases.append(phase)


def _phase_line(phase: Phase) -> str:
    return (
        f"   {phase.name:<10} {phase.workers} workers: {phase.per_second:>8.1f} digests/s, "
        f"p50 {phase.p50_ms} ms, p95 {phase.p95_ms} ms, rss {phase.peak_rss_mb} MB"
    )


def _size_phases(
    report: Report,
    *,
    size: int,
    papers: int,
    workers: int,
    sink: AiosmtpdSink | PostfixSink,
    send_rate: str,
    scale_out: bool,
    feedback_rng: random.Random,
    log,
) -> None:
    """The Celery phases of one size. Every comparison runs A B B A around its B runs (the plain deliver
    with `workers` processes before and after them), so that a machine speeding up or slowing down
    weighs on both sides alike:
    - "deliver+rate": NEWSLETTER_SEND_RATE far above what the machine does, so only the limiter's own
      cost shows (a Redis round trip per batch of permits);
    - "deliver-1w": one worker process, for the scale-out ratio;
    - "deliver-fb": 30% of the readers have rated 20 papers and have a fitted model."""
    plain = (f"deliver-{n}" if n > 1 else "deliver" for n in itertools.count(1))

    def run(name: str, smtp: AiosmtpdSink | PostfixSink | None, count: int = workers, **env: str) -> None:
        _pipeline_phase(report, name=name, workers=count, size=size, papers=papers, smtp=smtp, extra_env=env)
        log(_phase_line(report.phases[-1]))

    run("build", None)
    run(next(plain), sink)
    if send_rate:
        run("deliver+rate", sink, NEWSLETTER_SEND_RATE=send_rate)
        run("deliver+rate-2", sink, NEWSLETTER_SEND_RATE=send_rate)
        run(next(plain), sink)
    if scale_out:
        run("deliver-1w", sink, 1)
        run("deliver-1w-2", sink, 1)
        run(next(plain), sink)
    if size > FEEDBACK_MAX_SIZE:
        log(f"   feedback phases: only up to {FEEDBACK_MAX_SIZE:,} subscribers (a fit takes ~40 ms)")
        return
    seconds = feedback_create(rng=feedback_rng, now=timezone.now())
    report.data[-1]["feedback_seconds"] = seconds
    log(f"   feedback: marks and fitted models in {seconds:.1f}s")
    run("build-fb", None)
    run("deliver-fb", sink)
    run("deliver-fb-2", sink)
    feedback_clear()
    run(next(plain), sink)


def bench_run(
    *,
    sizes: list[int],
    papers: int,
    workers: int,
    naive_sample: int,
    scale_out_at: int | None,
    seed: int,
    sink: str = "auto",
    send_rate: str = "",
    log=print,
) -> Report:
    database_ensure()
    report = Report(machine=machine_info())
    with smtp_sink(sink) as sink:
        report.machine["smtp_sink"] = sink.name
        for size in sizes:
            log(f"-- {size} subscribers, {papers} papers: creating data")
            timings = bench_data_create(subscribers=size, papers=papers, seed=seed, now=timezone.now())
            report.data.append({"subscribers": size, "papers": papers, **asdict(timings)})
            log(
                f"   data: papers {timings.papers_seconds:.1f}s, tagging {timings.tagging_seconds:.1f}s, "
                f"subscribers {timings.subscribers_seconds:.1f}s"
            )
            _size_phases(
                report,
                size=size,
                papers=papers,
                workers=workers,
                sink=sink,
                send_rate=send_rate,
                scale_out=scale_out_at == size and workers != 1,
                feedback_rng=random.Random(seed),
                log=log,
            )
            if naive_sample:
                phase = naive_phase(
                    subscribers=size, papers=papers, sample=min(naive_sample, size), smtp=sink
                )
                report.phases.append(phase)
                log(f"   naive    1 process: {phase.per_second:>8.1f} digests/s, p50 {phase.p50_ms} ms")
    return report
