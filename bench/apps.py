"""Instrumentation of benchmark workers: one JSON line per task with its time, queries and memory.

Installed only by config.settings.bench. Every worker process appends to its own file in
BENCH_STATS_DIR; the benchmark reads them after the run.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

from django.apps import AppConfig


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


class BenchConfig(AppConfig):
    name = "bench"

    def ready(self) -> None:
        stats_dir = os.environ.get("BENCH_STATS_DIR")
        if not stats_dir:
            return
        from celery.signals import task_postrun, task_prerun
        from django.db import connection

        from bench.cpu import self_cpu

        running: dict[str, tuple[float, float, QueryCounter]] = {}

        @task_prerun.connect(weak=False)
        def started(task_id=None, task=None, args=None, **kwargs) -> None:
            counter = QueryCounter()
            connection.execute_wrappers.append(counter)
            running[task_id] = (time.perf_counter(), self_cpu(), counter)

        @task_postrun.connect(weak=False)
        def finished(task_id=None, task=None, args=None, state=None, **kwargs) -> None:
            began, began_cpu, counter = running.pop(task_id, (None, None, None))
            if began is None:
                return
            if counter in connection.execute_wrappers:
                connection.execute_wrappers.remove(counter)
            record = {
                "task": task.name,
                "size": len(args[0]) if args and isinstance(args[0], list) else 0,
                "seconds": time.perf_counter() - began,
                "cpu_seconds": self_cpu() - began_cpu,
                "queries": counter.count,
                "state": state,
                "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "pid": os.getpid(),
            }
            with (Path(stats_dir) / f"worker-{os.getpid()}.jsonl").open("a") as out:
                out.write(json.dumps(record) + "\n")
