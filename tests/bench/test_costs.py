"""The arithmetic of `bench_costs` (docs/scale.md's inputs): WAL attribution, statement counts, per-digest
figures. (The measurement itself needs a PostgreSQL server and an SMTP sink: `manage.py bench_costs`.)"""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend

from bench.costs import StatementCounter, StepCosts, smtp_bytes, wal_share
from newsletter.services.smtp import LeanSmtpSender
from tests.support import RecordingSMTPServer

# pg_waldump lines (PostgreSQL 15): database 17781 is "ours", 18035 another one on the same server.
WALDUMP = [
    "rmgr: Heap        len (rec/tot):     54/    54, tx:      21952, lsn: 0/226AA0A0, prev 0/226AA078, "
    "desc: LOCK off 2: xid 21952: flags 0x00 LOCK_ONLY EXCL_LOCK , blkref #0: rel 1663/17781/25224 blk 52",
    "rmgr: Heap        len (rec/tot):    243/   243, tx:      21952, lsn: 0/226AA0D8, prev 0/226AA0A0, "
    "desc: UPDATE off 2 xmax 21952 flags 0x00 ; new off 18 xmax 0, blkref #0: rel 1663/17781/25224 blk 56, "
    "blkref #1: rel 1663/17781/25224 blk 52",
    "rmgr: Btree       len (rec/tot):     64/  8256, tx:      21952, lsn: 0/226AA1D0, prev 0/226AA0D8, "
    "desc: INSERT_LEAF off 153, blkref #0: rel 1663/17781/25226 blk 9 FPW",
    "rmgr: Transaction len (rec/tot):     34/    34, tx:      21952, lsn: 0/226AA2E8, prev 0/226AA298, "
    "desc: COMMIT 2026-12-05 17:58:24.995573 UTC",
    "rmgr: Heap        len (rec/tot):    243/   243, tx:      21953, lsn: 0/226AA348, prev 0/226AA310, "
    "desc: UPDATE off 61 xmax 21953 flags 0x00 ; new off 23 xmax 0, blkref #0: rel 1663/18035/24478 blk 424",
    "rmgr: Transaction len (rec/tot):     34/    34, tx:      21953, lsn: 0/226AA440, prev 0/226AA348, "
    "desc: COMMIT 2026-12-05 17:58:24.996001 UTC",
    "rmgr: Standby     len (rec/tot):     50/    50, tx:          0, lsn: 0/226AA468, prev 0/226AA440, "
    "desc: RUNNING_XACTS nextXid 21954 latestCompletedXid 21953 oldestRunningXid 21954",
    "first record is after 0/226AA000, at 0/226AA028, skipping over 40 bytes",
]


def test_wal_share_counts_our_relations_and_our_transactions_commits_only() -> None:
    share = wal_share(WALDUMP, database_oid=17781)

    # 54, 243, 8256 and the commit's 34, each rounded up to 8 bytes as the WAL aligns records.
    assert share == type(share)(bytes=56 + 248 + 8256 + 40, full_page_bytes=8256, records=4)


def test_wal_share_of_a_database_that_wrote_nothing_is_zero() -> None:
    share = wal_share(WALDUMP, database_oid=5)

    assert (share.bytes, share.full_page_bytes, share.records) == (0, 0, 0)


def test_statements_are_counted_by_verb_and_executemany_by_its_rows() -> None:
    counter = StatementCounter()

    def execute(sql, params, many, context):
        return None

    counter(execute, "  SELECT 1", None, False, {})
    counter(execute, "(SELECT 1) UNION (SELECT 2)", None, False, {})
    counter(execute, "update t set a = %s", [(1,), (2,), (3,)], True, {})

    assert counter.verbs == Counter({"SELECT": 2, "UPDATE": 3})


def test_per_digest_figures_divide_by_digests_and_smtp_bytes_by_emails() -> None:
    step = StepCosts(
        digests=400,
        emails=380,
        chunks=2,
        worker_cpu_s=1.0,
        postgres_cpu_s=0.2,
        statements=Counter({"UPDATE": 404, "SELECT": 28}),
        wal_bytes=4_000_000,
        redis=Counter({"EVALSHA": 20}),
        smtp_bytes=380 * 40_000,
    )

    per = step.per_digest()

    assert per["worker_cpu_ms"] == 2.5 and per["postgres_cpu_ms"] == 0.5
    assert per["statements"] == {"SELECT": 0.07, "UPDATE": 1.01}
    assert per["wal_bytes"] == 10_000.0 and per["wal_own_bytes"] is None
    assert per["redis_commands"] == {"EVALSHA": 0.05}
    assert per["smtp_bytes_per_email"] == 40_000.0


@pytest.mark.parametrize("lean", [True, False], ids=["lean transaction", "django send_messages"])
def test_smtp_bytes_counts_each_message_whichever_path_sends_it(lean: bool) -> None:
    message = EmailMessage("Subject", "body\n", "digest@example.org", ["reader@example.org"])
    with RecordingSMTPServer() as server, smtp_bytes() as sizes:
        backend = EmailBackend(host=server.host, port=server.port, use_tls=False, username="", password="")
        backend.open()
        try:
            LeanSmtpSender(backend).send(message) if lean else backend.send_messages([message])
        finally:
            backend.close()

    (received,) = server.messages
    assert len(sizes) == 1 and sizes[0] > len(b"body\r\n")
    assert abs(sizes[0] - len(received.content)) < 200  # the server may add its own trace lines
