"""Real moving parts for the fault tests: Celery worker subprocesses, a private Redis, an SMTP server to fail.

Worker subprocesses use config.settings.test pointed at this test run's database (which the tests
commit to: they use `transactional_db`), so they see exactly what the test wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.conftest import REPO
from tests.support import RecordingSMTPServer, RedisServer, free_port, process_group_stop


def wait_until(condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.1):
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def faulty_smtp() -> Iterator[RecordingSMTPServer]:
    """A recording SMTP server on a fixed free port, not started: the test starts, stops and restarts it."""
    server = RecordingSMTPServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port())
    try:
        yield server
    finally:
        server.kill()


@dataclass
class Workers:
    """Starts `celery -A config worker` subprocesses on this test's database."""

    base_env: dict[str, str]
    log_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        return {**self.base_env, **overrides}

    def start(self, *, concurrency: int = 1, **env: str) -> subprocess.Popen:
        name = f"fault{len(self.processes)}-{os.getpid()}@%h"
        log = self.log_dir / f"worker-{len(self.processes)}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-c", str(concurrency), "-P", "prefork",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO", "-n", name,
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env(TEST_WORKER_LOG=str(log), **env),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches the pool children too
        )
        self.processes.append(process)
        return process

    def run_command(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "manage.py", *args]
        return subprocess.run(
            command, cwd=REPO, env=self.env(**env), capture_output=True, text=True, timeout=120
        )

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            process_group_stop(process, timeout=20)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.log_dir.glob("*.log")))


@pytest.fixture
def workers(transactional_db, tmp_path) -> Iterator[Workers]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "TEST_DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "NEWSLETTER_RETRY_BACKOFF_SECONDS": "1",
        "PYTHONPATH": str(REPO),
    }
    pool = Workers(base_env=env, log_dir=tmp_path)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()  # messages a killed worker never acknowledged must not leak into the next test
    try:
        yield pool
    finally:
        pool.stop_all()
        broker.flushdb()
        connection.close()
