"""The pure parts of the pipeline half of ``recpipe bench ranker``."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from bench.ranker import parse_seeds
from bench.ranker_pipeline import surface_metrics
from conf.errors import UsageError
from tests.conftest import recpipe


def test_running_the_nightly_to_the_candidates_runs_exactly_their_upstream_stages():
    """The bench builds its lake with ``recpipe run nightly --to-task candidates``: the
    stages run before it stops are the candidates' upstream, none after."""
    from recpipe.run import ordered
    from recpipe.stages import NIGHTLY

    order = [s.task_id for s in ordered(NIGHTLY)]
    ran = order[:order.index("candidates") + 1]
    by_id = {s.task_id: s for s in NIGHTLY}
    upstream, todo = set(), ["candidates"]
    while todo:
        task = todo.pop()
        if task not in upstream:
            upstream.add(task)
            todo.extend(by_id[task].upstream)
    assert set(ran) == upstream
    assert not {"topn", "ranker_examples", "ranker_train", "evaluate"} & set(ran)


def test_parse_seeds():
    assert parse_seeds("42, 1,2") == [42, 1, 2]
    with pytest.raises(UsageError, match="integers"):
        parse_seeds("1,x")


def test_bad_seeds_exit_2_before_any_work(capsys):
    assert recpipe(["bench", "ranker", "--part", "pipeline", "--seeds", "a"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_surface_metrics_by_hand():
    from conf.gate import OfflineEvalSettings
    from evaluation.holdout import build_holdout

    events = pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i2", "i9"],
                       "event_type": ["rating", "rating", "rating"], "value": [5.0, 4.0, 2.0]})
    train = pa.table({"user_id": ["u1"], "item_id": ["i5"]})
    holdout = build_holdout(events, train, ["i1", "i2", "i3", "i5", "i9"],
                            OfflineEvalSettings(), seed=0)
    topn = pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i3", "i1"],
                     "rank": [1, 2, 1]})
    got = surface_metrics(topn, holdout)
    # u1 alone has a positive (u2's rating of 2 is not): hit at rank 1 of 2 relevant items
    assert got["ndcg@10"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert got["recall@100"] == pytest.approx(0.5)
