"""A log of every ``recpipe`` command run for a date: what ran, how long, how it ended.

Each command with a ``--ds`` appends two JSON lines to ``<runs_dir>/<ds>.jsonl`` (start and
end, with the exit code and seconds). ``recpipe status`` reads them back, so a run's
progress and timings are visible while it is going and after, whichever scheduler ran it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path


def ds_of(argv: list[str]) -> str | None:
    """The value of ``--ds`` (or ``--date``) in ``argv``, if any."""
    for flag in ("--ds", "--date"):
        if flag in argv[:-1]:
            return argv[argv.index(flag) + 1]
        for arg in argv:
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return None


def append(runs_dir: Path, ds: str, record: dict) -> None:
    """Append one record to the date's log (one ``write`` call: lines never interleave)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
                       **record}, sort_keys=True) + "\n"
    with open(runs_dir / f"{ds}.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line)


def read(runs_dir: Path, ds: str) -> list[dict]:
    path = runs_dir / f"{ds}.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return out


def latest_by_command(records: list[dict]) -> dict[str, dict]:
    """Per command: its last start, and its end if it ended (``state`` running/ok/failed)."""
    state: dict[str, dict] = {}
    for rec in records:
        cmd = rec["command"]
        if rec["event"] == "start":
            state[cmd] = {"command": cmd, "started": rec["at"], "state": "running"}
        elif rec["event"] == "end" and cmd in state:
            state[cmd].update(state="ok" if rec["code"] == 0 else "failed",
                              seconds=rec["seconds"], code=rec["code"])
    return state
