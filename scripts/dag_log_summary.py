"""Print each task's final state from an `airflow dags test` log (for `make demo`)."""

import re
import sys

with open(sys.argv[1], encoding="utf-8", errors="replace") as fh:
    text = fh.read()
states: dict[str, str] = {}
for match in re.finditer(r"task_id='([^']+)'.*?state=<TaskInstanceState\.(\w+)", text):
    states[match.group(1)] = match.group(2).lower()
run = re.findall(r"DagRun Finished: .*?state=(\w+)", text)
for task, state in states.items():
    print(f"   {task:<18} {state}")
print(f"   dag run: {run[-1] if run else 'unknown'}")
if not run or run[-1] != "success":
    sys.exit(1)
