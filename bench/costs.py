"""What one digest costs each part of the system, measured in one process: the inputs of docs/scale.md.

`manage.py bench_costs` (settings config.settings.bench, on a database of its own) makes a list,
dispatches it, sends the first chunk to warm the process up, then sends the other chunks one by one
into an SMTP sink and measures, per chunk: the worker's CPU, the CPU of its PostgreSQL backend, the
SQL statements by verb, the WAL written, the Redis commands of the send-rate limiter and the bytes
handed to SMTP. Sizes of the delivery tables and their indexes per row are read at the end.

The WAL figure is the server's LSN advance, which counts every database of the server; when the
server's pg_wal is readable (run as root or postgres beside the server) `pg_waldump` also gives the
part that touched this database and its transactions, and how much of it was full-page images.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bench.cpu import process_cpu
from bench.data import deliveries_reset
from newsletter.models import Delivery, DeliveryItem, Subscriber
from newsletter.services.delivery import deliveries_send
from newsletter.services.dispatch import digests_dispatch
from papers.models import Paper

# One pg_waldump record line: total length (with any full-page image), transaction, blocks touched.
_WAL_RECORD = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+),")
_WAL_BLOCK = re.compile(r"rel \d+/(\d+)/\d+ (?:fork \w+ )?blk \d+( FPW)?")


@dataclass(frozen=True)
class WalShare:
    """WAL records of one database: those touching its relations, and their transactions' others
    (the commit records). Bytes are 8-byte aligned as in the WAL; page headers are not counted."""

    bytes: int
    full_page_bytes: int  # records carrying a full-page image (the first change of a page after a checkpoint)
    records: int


def wal_share(lines: list[str], *, database_oid: int) -> WalShare:
    """Attribute pg_waldump's record lines to one database (a pure function of its output)."""
    ours: set[str] = set()
    parsed = []
    for line in lines:
        record = _WAL_RECORD.search(line)
        if not record:
            continue
        blocks = _WAL_BLOCK.findall(line)
        touches = any(int(db) == database_oid for db, _ in blocks)
        if touches and record.group(2) != "0":
            ours.add(record.group(2))
        parsed.append((int(record.group(1)), record.group(2), touches, any(fpw for _, fpw in blocks)))
    total = full = count = 0
    for length, xid, touches, has_image in parsed:
        if touches or xid in ours:
            aligned = (length + 7) // 8 * 8
            total += aligned
            full += aligned if has_image else 0
            count += 1
    return WalShare(total, full, count)


def _lsn() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(cursor.fetchone()[0])


def _lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _wal_of_database(start: int, end: int) -> WalShare | None:
    """pg_waldump over [start, end) filtered to this database; None where pg_wal cannot be read."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('data_directory'), oid FROM pg_database "
            "WHERE datname = current_database()"
        )
        data_dir, oid = cursor.fetchone()
        cursor.execute("SELECT current_setting('server_version_num')::int / 10000")
        major = cursor.fetchone()[0]
    waldump = shutil.which("pg_waldump") or f"/usr/lib/postgresql/{major}/bin/pg_waldump"
    wal_dir = Path(data_dir) / "pg_wal"
    if not Path(waldump).exists() or not wal_dir.is_dir():
        return None
    try:
        output = subprocess.run(
            [waldump, "-p", str(wal_dir), "-s", _lsn_text(start), "-e", _lsn_text(end)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = output.stdout.splitlines()
    if not any(_WAL_RECORD.search(line) for line in lines[:100]):
        # pg_waldump could not read the range (a segment already recycled, an unflushed end): unknown, not 0.
        return None
    return wal_share(lines, database_oid=oid)


class StatementCounter:
    """A Django execute wrapper counting statements by their first word (SELECT, INSERT, ...)."""

    def __init__(self) -> None:
        self.verbs: Counter[str] = Counter()

    def __call__(self, execute, sql, params, many, context):
        self.verbs[sql.lstrip(" (").split(None, 1)[0].upper()] += len(params) if many else 1
        return execute(sql, params, many, context)


@contextmanager
def redis_commands() -> Iterator[Counter[str]]:
    """Count the Redis commands this process sends (the limiter's EVALSHA); pipelines count once."""
    counts: Counter[str] = Counter()
    original = redis.Redis.execute_command

    def counting(client, *args, **options):
        counts[str(args[0]).upper()] += 1
        return original(client, *args, **options)

    redis.Redis.execute_command = counting
    try:
        yield counts
    finally:
        redis.Redis.execute_command = original


@contextmanager
def smtp_bytes() -> Iterator[list[int]]:
    """The size of each message handed to SMTP (the DATA payload, CRLF line ends): through smtplib's
    sendmail (other backends' path) or the lean transaction of newsletter/services/smtp.py."""
    import smtplib

    from newsletter.services import smtp

    sizes: list[int] = []
    original, lean = smtplib.SMTP.sendmail, smtp.transaction_send

    def recording(client, from_addr, to_addrs, msg, *args, **kwargs):
        sizes.append(len(msg))
        return original(client, from_addr, to_addrs, msg, *args, **kwargs)

    def recording_lean(client, *, sender, recipients, content):
        sizes.append(len(content))
        return lean(client, sender=sender, recipients=recipients, content=content)

    smtplib.SMTP.sendmail, smtp.transaction_send = recording, recording_lean
    try:
        yield sizes
    finally:
        smtplib.SMTP.sendmail, smtp.transaction_send = original, lean


@dataclass
class StepCosts:
    """Sums over the digests of a step (dispatch, or the measured chunks of send)."""

    digests: int = 0
    emails: int = 0
    chunks: int = 0
    worker_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0
    wall_s: float = 0.0
    statements: Counter[str] = field(default_factory=Counter)
    wal_bytes: int = 0  # the whole server's
    wal_own_bytes: int | None = None  # this database's (pg_waldump)
    wal_full_page_bytes: int | None = None
    redis: Counter[str] = field(default_factory=Counter)
    smtp_bytes: int = 0

    def per_digest(self) -> dict[str, float | dict[str, float] | None]:
        n = max(self.digests, 1)
        per = {
            "worker_cpu_ms": 1000 * self.worker_cpu_s / n,
            "postgres_cpu_ms": 1000 * self.postgres_cpu_s / n,
            "wall_ms": 1000 * self.wall_s / n,
            "statements": {verb: count / n for verb, count in sorted(self.statements.items())},
            "wal_bytes": self.wal_bytes / n,
            "wal_own_bytes": None if self.wal_own_bytes is None else self.wal_own_bytes / n,
            "wal_full_page_bytes": None if self.wal_full_page_bytes is None else self.wal_full_page_bytes / n,
            "redis_commands": {name: count / n for name, count in sorted(self.redis.items())},
            "smtp_bytes_per_email": self.smtp_bytes / max(self.emails, 1),
        }
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in per.items()}


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def measured(step: StepCosts, *, digests: int, action: Callable[[], object], new_connection: bool) -> object:
    """Run `action` and add what it cost to `step`. With `new_connection` it runs on a connection of
    its own, as each task of a Celery worker does with Django's default CONN_MAX_AGE of 0: the
    PostgreSQL figure is then that backend's whole life, its start-up and cold caches included."""
    counter = StatementCounter()
    cpu_start, wall_start = time.process_time(), time.perf_counter()  # the worker's side of connecting too
    if new_connection:
        connection.close()
    wal_start, backend = _lsn(), _backend_pid()
    pg_start = 0.0 if new_connection else process_cpu(backend)
    with connection.execute_wrapper(counter), redis_commands() as commands, smtp_bytes() as sizes:
        result = action()
    step.wall_s += time.perf_counter() - wall_start
    step.worker_cpu_s += time.process_time() - cpu_start
    step.postgres_cpu_s += process_cpu(backend) - pg_start
    wal_end = _lsn()  # not counted as a statement: outside the wrapper
    step.wal_bytes += wal_end - wal_start
    if (share := _wal_of_database(wal_start, wal_end)) is not None:
        step.wal_own_bytes = (step.wal_own_bytes or 0) + share.bytes
        step.wal_full_page_bytes = (step.wal_full_page_bytes or 0) + share.full_page_bytes
    step.statements.update(counter.verbs)
    step.redis.update(commands)
    step.smtp_bytes += sum(sizes)
    step.emails += len(sizes)
    step.digests += digests
    step.chunks += 1
    return result


def table_sizes() -> dict[str, dict[str, float]]:
    """Bytes per row of the delivery tables (heap with TOAST, each index), as they stand."""
    sizes = {}
    with connection.cursor() as cursor:
        for table in ("newsletter_delivery", "newsletter_deliveryitem"):
            cursor.execute(f"SELECT count(*), pg_table_size('{table}') FROM {table}")  # constant names
            rows, heap = cursor.fetchone()
            cursor.execute(
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
                "WHERE indrelid = %s::regclass ORDER BY 1",
                [table],
            )
            row = {"rows": rows, "heap": round(heap / max(rows, 1), 1)}
            row.update({name: round(size / max(rows, 1), 1) for name, size in cursor.fetchall()})
            sizes[table] = row
    return sizes


@dataclass
class CostsReport:
    subscribers: int
    papers: int
    chunk_size: int
    send_rate: str
    checkpoint: bool = False
    new_connections: bool = True
    dispatch: dict = field(default_factory=dict)
    send: dict = field(default_factory=dict)
    send_totals: dict = field(default_factory=dict)
    rows_per_digest: dict[str, float] = field(default_factory=dict)
    table_bytes_per_row: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def costs_measure(
    *,
    send_rate: str,
    smtp_port: int,
    chunks_max: int | None = None,
    checkpoint: bool = False,
    new_connections: bool = True,
) -> CostsReport:
    """Dispatch every due subscriber, then send chunk by chunk into the SMTP server on smtp_port;
    the first chunk only warms the process up (about twice a later one's cost). `checkpoint` runs a
    CHECKPOINT before each measured chunk: every page the chunk changes is then logged whole once,
    the WAL of a list much larger than the server's checkpoint interval covers."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.NEWSLETTER_SEND_RATE = send_rate
    now = timezone.now()
    deliveries_reset(now=now)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE newsletter_subscriber, newsletter_delivery, newsletter_deliveryitem")
    subscribers = Subscriber.objects.count()
    report = CostsReport(
        subscribers=subscribers,
        papers=Paper.objects.count(),
        chunk_size=settings.NEWSLETTER_CHUNK_SIZE,
        send_rate=send_rate or "(none)",
        checkpoint=checkpoint,
        new_connections=new_connections,
    )
    dispatch = StepCosts()
    chunks = measured(
        dispatch,
        digests=subscribers,
        action=lambda: digests_dispatch(now=now),
        new_connection=new_connections,
    )
    deliveries_send(delivery_ids=chunks[0], now=now)
    send = StepCosts()
    for chunk in chunks[1:][:chunks_max]:
        if checkpoint:
            with connection.cursor() as cursor:
                cursor.execute("CHECKPOINT")
        measured(
            send,
            digests=len(chunk),
            action=lambda c=chunk: deliveries_send(delivery_ids=c, now=now),
            new_connection=new_connections,
        )
    report.dispatch = dispatch.per_digest()
    report.send = send.per_digest()
    report.send_totals = {"digests": send.digests, "emails": send.emails, "chunks": send.chunks}
    # Per digest built (with --chunks the rest stays PENDING, without picks).
    deliveries = Delivery.objects.exclude(status=Delivery.Status.PENDING).count()
    report.rows_per_digest = {
        "delivery": 1.0,
        "deliveryitem": round(DeliveryItem.objects.count() / max(deliveries, 1), 2),
        "sent": round(Delivery.objects.filter(status=Delivery.Status.SENT).count() / max(deliveries, 1), 3),
    }
    report.table_bytes_per_row = table_sizes()
    return report


def costs_table(report: CostsReport) -> str:
    """The report as text: one line per figure, dispatch and send side by side."""
    lines = [
        f"{report.subscribers:,} subscribers, {report.papers:,} papers, chunks of {report.chunk_size}, "
        f"send rate {report.send_rate}{', CHECKPOINT before each chunk' if report.checkpoint else ''}, "
        f"{'a new connection per chunk (as Celery tasks)' if report.new_connections else 'one connection'}; "
        f"send measured over {report.send_totals['chunks']} chunks "
        f"({report.send_totals['digests']:,} digests, {report.send_totals['emails']:,} emails; the first "
        "chunk, a warm-up, left out)",
        "",
        f"{'per digest':<34}{'dispatch':>12}{'send':>12}",
    ]
    dispatch, send = report.dispatch, report.send

    def row(label: str, a: float | None, b: float | None, fmt: str = ".3f") -> None:
        shown = [format(v, fmt) if v is not None else "-" for v in (a, b)]
        lines.append(f"{label:<34}{shown[0]:>12}{shown[1]:>12}")

    for key, label in (
        ("worker_cpu_ms", "worker CPU ms"),
        ("postgres_cpu_ms", "PostgreSQL backend CPU ms"),
        ("wall_ms", "wall ms (one process)"),
    ):
        row(label, dispatch[key], send[key])
    for verb in sorted(set(dispatch["statements"]) | set(send["statements"])):
        row(f"SQL {verb}", dispatch["statements"].get(verb, 0.0), send["statements"].get(verb, 0.0))
    row("WAL bytes (whole server)", dispatch["wal_bytes"], send["wal_bytes"], ",.0f")
    row("WAL bytes (this database)", dispatch["wal_own_bytes"], send["wal_own_bytes"], ",.0f")
    row("  of which full-page images", dispatch["wal_full_page_bytes"], send["wal_full_page_bytes"], ",.0f")
    for name in sorted(set(dispatch["redis_commands"]) | set(send["redis_commands"])):
        row(
            f"Redis {name}",
            dispatch["redis_commands"].get(name, 0.0),
            send["redis_commands"].get(name, 0.0),
            ".4f",
        )
    row("SMTP bytes per email", None, send["smtp_bytes_per_email"], ",.0f")
    lines += ["", "rows per digest: " + ", ".join(f"{k} {v}" for k, v in report.rows_per_digest.items())]
    for table, sizes in report.table_bytes_per_row.items():
        parts = ", ".join(f"{k} {v}" for k, v in sizes.items() if k != "rows")
        lines.append(f"{table} ({sizes['rows']:,} rows), bytes per row: {parts}")
    return "\n".join(lines)
