"""How a nightly run ended, from its task states (``recpipe.dagrun.outcome``)."""

from recpipe.dagrun import outcome
from recpipe.stages import NIGHTLY, WATCHER


def states(**overrides: str) -> list[dict]:
    by_task = {s.task_id: "success" for s in NIGHTLY} | {WATCHER: "skipped"} | overrides
    return [{"task_id": t, "state": s} for t, s in by_task.items()]


def test_every_stage_succeeded():
    assert outcome(states()) == 0
    assert outcome(states(fetch_data="skipped")) == 0


def test_a_gate_rejection_is_its_own_outcome_although_the_watcher_failed_the_run():
    rejected = states(gate="failed", export="upstream_failed", publish="upstream_failed",
                      **{WATCHER: "failed"})
    assert outcome(rejected) == 3


def test_any_other_failure_is_a_failure():
    assert outcome(states(embeddings="failed", **{WATCHER: "failed"})) == 1
    assert outcome(states(gate="failed", run_summary="failed", **{WATCHER: "failed"})) == 1
    assert outcome([]) == 1


def test_the_task_list_is_found_among_log_lines():
    from recpipe.dagrun import json_list

    rows = [{"task_id": "gate", "state": "success"}]
    noisy = ("2026-11-29T19:35:59Z [warning  ] something is deprecated [py.warnings]\n"
             '[{"task_id": "gate", "state": "success"}]\n'
             "[info] done\n")
    assert json_list(noisy) == rows
    assert json_list('  [{"task_id": "gate",\n "state": "success"}]') == rows
    assert json_list("no table here [x]") == []
