import math
from datetime import UTC, datetime

import pytest

from conf.pipeline import MatrixSettings
from jobs.training_matrix import transform

pytestmark = pytest.mark.spark


def _ts(s):
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def test_confidence_weighs_types_ratings_dwell_and_recency(spark):
    cfg = MatrixSettings(
        event_weights={"click": 1.0, "purchase": 5.0, "rating": 2.0, "view": 0.5,
                       "skip": -1.0},
        rating_center=3.0, dwell_weight=0.1, dwell_cap_s=10.0, half_life_days=1.0,
    )
    ds = "2024-01-10"  # recency measured from 2024-01-11T00:00Z
    rows = [
        ("u1", "a", "click", None, _ts("2024-01-10T00:00:00")),      # age 1 day: 1 * 0.5
        ("u1", "a", "purchase", None, _ts("2024-01-11T00:00:00")),   # age 0: 5
        ("u1", "b", "rating", 5.0, _ts("2024-01-09T00:00:00")),      # 2*(5-3) * 0.25 = 1
        ("u1", "c", "view", 30.0, _ts("2024-01-11T00:00:00")),       # 0.5 + 0.1*10 = 1.5
        ("u2", "a", "rating", 1.0, _ts("2024-01-11T00:00:00")),      # 2*(1-3) = -4: dropped
        ("u2", "b", "click", None, _ts("2024-01-11T00:00:00")),      # 1
        ("u2", "b", "skip", None, _ts("2024-01-11T00:00:00")),       # -1: total 0, dropped
    ]
    df = spark.createDataFrame(rows, ["user_id", "item_id", "event_type", "value", "ts"])
    out = {(r.user_id, r.item_id): r for r in transform(df, cfg, ds).collect()}
    assert set(out) == {("u1", "a"), ("u1", "b"), ("u1", "c")}
    assert math.isclose(out[("u1", "a")].confidence, 5.5)
    assert out[("u1", "a")].n_events == 2
    assert math.isclose(out[("u1", "b")].confidence, 1.0)
    assert math.isclose(out[("u1", "c")].confidence, 1.5)
    assert out[("u1", "a")].ds == ds


def test_negative_feedback_vetoes_the_pair_however_much_it_was_clicked(spark):
    cfg = MatrixSettings(half_life_days=1000.0)
    ds = "2024-01-10"
    rows = [("u1", "a", "click", None, _ts("2024-01-09T00:00:00")) for _ in range(5)]
    rows += [("u1", "a", "purchase", None, _ts("2024-01-09T01:00:00")),
             ("u1", "a", "hide", None, _ts("2024-01-10T00:00:00")),          # said no to a
             ("u1", "b", "click", None, _ts("2024-01-09T00:00:00")),
             ("u2", "a", "click", None, _ts("2024-01-09T00:00:00")),          # u2 did not
             ("u2", "b", "click", None, _ts("2024-01-09T00:00:00")),
             ("u2", "b", "not_interested", None, _ts("2024-01-09T02:00:00")),
             ("u2", "c", "dislike", None, _ts("2024-01-09T02:00:00"))]
    df = spark.createDataFrame(rows, "user_id string, item_id string, event_type string, "
                                     "value double, ts timestamp")
    out = {(r.user_id, r.item_id) for r in transform(df, cfg, ds).collect()}
    assert out == {("u1", "b"), ("u2", "a")}
