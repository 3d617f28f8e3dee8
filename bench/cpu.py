"""CPU seconds spent by each part of the system during a phase, read from Linux's /proc.

Throughput alone does not say where the time goes on a machine where the workers, PostgreSQL, Redis
and the SMTP sink share the same cores; these counters do. Zero everywhere on systems without /proc.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CALIBRATION_LOOP = 5_000_000
# The loop's CPU seconds on the machine that the calibrated figures are expressed for (this VM in a
# fast hour). Only a unit: any fixed value makes calibrated figures of different runs comparable.
CALIBRATION_REFERENCE_S = 0.25


def _loop(loop: int) -> None:
    """The calibration loop: fixed pure-Python work."""
    total = 0
    for i in range(loop):
        total += i & 7


def calibrate(loop: int = CALIBRATION_LOOP, repeats: int = 3) -> float:
    """CPU seconds of a fixed pure-Python loop (the least of `repeats`): the machine's speed now."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        _loop(loop)
        best = min(best, time.process_time() - started)
    return best


def _loop_seconds(loop: int) -> float:
    """The calibration loop's wall-clock seconds."""
    started = time.perf_counter()
    _loop(loop)
    return time.perf_counter() - started


def _loop_on_signal() -> None:
    """A child of parallel_capacity: says it is ready, waits for the start line, prints its loop's
    seconds."""
    print("ready", flush=True)
    sys.stdin.readline()
    print(_loop_seconds(int(sys.argv[1])), flush=True)


def loops_together(processes: int, loop: int) -> list[float]:
    """The loop's wall-clock seconds in each of `processes` fresh processes started at the same moment.
    (Fresh interpreters, not forks: the benchmark process has threads, which a fork may find holding a
    lock.)"""
    command = [sys.executable, "-c", "from bench.cpu import _loop_on_signal; _loop_on_signal()", str(loop)]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    children = [
        subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    for child in children:
        child.stdout.readline()
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    return [float(child.communicate(timeout=120)[0]) for child in children]


def parallel_capacity(processes: int = 2, loop: int = CALIBRATION_LOOP, repeats: int = 3) -> float:
    """How many times one process's work `processes` processes get done at once on this machine now:
    the calibration loop alone, then in `processes` processes started together, wall-clock (the most
    of `repeats`). A VM's vCPUs may be hyperthreads of one core or share a busy host: each then runs
    slower when all run, which CPU-time counters do not show, and no program scales out further.
    Measured here at 1.84-1.92x for 2 processes on a quiet machine (2026-12-05)."""
    best = 0.0
    for _ in range(repeats):
        alone = _loop_seconds(loop)
        best = max(best, processes * alone / max(loops_together(processes, loop)))
    return best


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(path: Path) -> tuple[str, int, list[int]] | None:
    """(command name, parent pid, [utime, stime, cutime, cstime] in ticks) of one /proc stat file."""
    try:
        raw = path.read_text()
    except OSError:  # the process ended meanwhile
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is the state (stat field 3); utime..cstime are stat fields 14..17.
    return name, int(fields[1]), [int(v) for v in fields[11:15]]


def _processes() -> dict[int, tuple[str, int, list[int]]]:
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _stat(entry / "stat")
        if stat is not None:
            found[int(entry.name)] = stat
    return found


def _server_cpu(processes: dict, name: str) -> float:
    """All processes called `name`; the root of each tree also counts its exited children (the
    PostgreSQL backends of connections closed during the phase)."""
    ticks = 0
    for _, (comm, parent, (utime, stime, cutime, cstime)) in processes.items():
        if comm != name:
            continue
        ticks += utime + stime
        if processes.get(parent, ("",))[0] != name:
            ticks += cutime + cstime
    return ticks / _TICK


def _own_cpu(path: Path) -> float:
    """user + system seconds of one process or thread (not its children); 0 once it is gone."""
    stat = _stat(path)
    return (stat[2][0] + stat[2][1]) / _TICK if stat else 0.0


def process_cpu(pid: int) -> float:
    return _own_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu(tid: int) -> float:
    """A thread of this process (the aiosmtpd sink's event loop)."""
    return _own_cpu(Path(f"/proc/self/task/{tid}/stat"))


def self_cpu() -> float:
    """user + system seconds of the calling process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class ServerCpu:
    postgres: float
    redis: float

    @classmethod
    def now(cls) -> ServerCpu:
        processes = _processes()
        return cls(postgres=_server_cpu(processes, "postgres"), redis=_server_cpu(processes, "redis-server"))

    def __sub__(self, earlier: ServerCpu) -> ServerCpu:
        return ServerCpu(postgres=self.postgres - earlier.postgres, redis=self.redis - earlier.redis)
