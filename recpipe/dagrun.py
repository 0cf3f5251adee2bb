"""How an ``airflow dags test`` run ended, task by task (used by ``make demo`` and the e2e
tests): ``python -m recpipe.dagrun DAG_ID LOGFILE`` prints each task's state and seconds.

Exit status: 0 when every task succeeded (or was skipped); 3 when the promotion gate
rejected the model and only the tasks after it did not run (a legitimate outcome: nothing
is published); 1 for any other failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from recpipe.stages import WATCHER

GATE = "gate"
AFTER_GATE = {"export", "publish"}

OK = {"success", "skipped"}


def task_states(dag_id: str, log_text: str) -> list[dict]:
    """Task instances of the run named in the log (from Airflow's metadata database)."""
    run_ids = re.findall(r"run_id=(manual__[^,\s]+)", log_text)
    if not run_ids:
        return []
    airflow = str(Path(sys.executable).with_name("airflow"))
    out = subprocess.run([airflow, "tasks", "states-for-dag-run", dag_id, run_ids[-1], "-o",
                          "json"], capture_output=True, text=True, check=False)
    return json_list(out.stdout)


def json_list(text: str) -> list[dict]:
    """The JSON array in ``text``: the first line that starts one and parses (Airflow may
    print log lines such as ``... [warning ] ...`` around it); ``[]`` if there is none."""
    decoder = json.JSONDecoder()
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("["):
            try:
                value, _ = decoder.raw_decode(text, offset + len(line) - len(line.lstrip()))
            except ValueError:
                pass
            else:
                if isinstance(value, list):
                    return value
        offset += len(line)
    return []


def outcome(states: list[dict]) -> int:
    """0, 3 or 1 as in the module docstring."""
    by_task = {s["task_id"]: s["state"] for s in states}
    if not by_task:
        return 1
    bad = {t for t, s in by_task.items() if s not in OK}
    if not bad:
        return 0
    if by_task.get(GATE) == "failed" and bad <= {GATE, WATCHER} | AFTER_GATE:
        return 3
    return 1


def _seconds(s: dict) -> float | None:
    if not s.get("start_date") or not s.get("end_date"):
        return None
    return (datetime.fromisoformat(s["end_date"])
            - datetime.fromisoformat(s["start_date"])).total_seconds()


def main(argv: list[str]) -> int:
    dag_id, log_path = argv
    states = task_states(dag_id, Path(log_path).read_text(errors="replace"))
    for s in states:
        secs = _seconds(s)
        print(f"   {s['task_id']:<18} {s['state'] or '-':<16} "
              f"{'' if secs is None else f'{secs:7.1f} s'}")
    code = outcome(states)
    print({0: "   dag run: success", 3: "   dag run: the gate rejected the model; nothing "
           "was published", 1: "   dag run: FAILED"}[code])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
