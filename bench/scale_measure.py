"""Running one ``recpipe`` task as a subprocess and measuring its wall time and peak memory.

Peak memory is the high-water mark of the task's whole process tree, Spark's JVM and its
Python workers included. Where the machine lets us create a cgroup (v1 memory controller,
as root), the task runs in its own cgroup and the figure is the cgroup's
``memory.max_usage_in_bytes`` minus the page cache it held at the end (files the task wrote
or read stay cached and would otherwise count); elsewhere it is the largest ``ru_maxrss``
of the task's processes (``RUSAGE_CHILDREN``), a lower bound, and the result says which.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CGROUP_V1 = Path("/sys/fs/cgroup/memory")


@dataclass(frozen=True)
class TaskRun:
    """One task's figures."""

    seconds: float
    peak_rss_mb: float
    method: str
    """``cgroup`` (the tree's high-water mark) or ``ru_maxrss`` (the largest process)."""
    code: int


def _cgroup() -> Path | None:
    """A fresh memory cgroup under the current one, or None when we may not make one."""
    if not (CGROUP_V1 / "memory.max_usage_in_bytes").exists():
        return None
    own = ""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            own = parts[2].lstrip("/")
    folder = CGROUP_V1 / own / f"recpipe-task-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir()
    except OSError:
        return None
    return folder


def _cache_bytes(folder: Path) -> int:
    for line in (folder / "memory.stat").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == "cache":
            return int(value)
    return 0


def run_task(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> TaskRun:
    """Run ``argv`` (a whole command line) with ``env``, output to ``log``; measure it."""
    folder = _cgroup()

    def enter() -> None:  # runs in the child before exec: join the cgroup
        if folder is not None:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    began = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=enter)
        _, status, usage = os.wait4(proc.pid, 0)  # this task's tree only, not earlier ones
    seconds = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    if folder is not None:
        peak = int((folder / "memory.max_usage_in_bytes").read_text())
        peak_mb = max(0, peak - _cache_bytes(folder)) / 2**20
        with contextlib.suppress(OSError):  # a straggler process still in it
            folder.rmdir()
        return TaskRun(round(seconds, 2), round(peak_mb, 1), "cgroup", code)
    return TaskRun(round(seconds, 2), round(usage.ru_maxrss / 1024, 1), "ru_maxrss", code)
