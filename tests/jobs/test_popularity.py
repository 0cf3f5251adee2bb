import math
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from conf.errors import EmptyInput
from conf.retrieval import PopularitySettings, SegmentRule
from jobs.lake import Lake
from jobs.popularity import rank_top_k, run, transform
from jobs.tables import POPULARITY, SILVER_INTERACTIONS, SILVER_USERS
from jobs.user_segments import segment_table
from tests.conftest import recpipe

pytestmark = pytest.mark.spark

DS = "2024-01-10"  # window of 3 days: [2024-01-08T00:00, 2024-01-11T00:00)
GENDER = SegmentRule(attribute="gender")
CFG = PopularitySettings(half_life_days=1.0, window_days=3, user_item_cap=2.0,
                         event_weights={"view": 1.0, "click": 1.0, "purchase": 3.0,
                                        "skip": 0.0},
                         segments=[GENDER], min_segment_users=1, top_k=10)


def _ts(s):
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


EVENTS = [
    ("u1", "a", "click", _ts("2024-01-10T00:00:00")),     # age 1 day: 0.5
    ("u1", "a", "purchase", _ts("2024-01-10T12:00:00")),  # 3 * 2**-0.5 = 2.121; u1,a capped 2
    ("u2", "a", "view", _ts("2024-01-09T00:00:00")),      # age 2: 0.25
    ("u2", "b", "view", _ts("2024-01-10T00:00:00")),      # 0.5
    ("u4", "b", "click", _ts("2024-01-10T00:00:00")),     # 0.5 (u4 has no user row)
    ("u3", "b", "click", _ts("2024-01-07T23:00:00")),     # before the window
    ("u3", "b", "click", _ts("2024-01-11T00:00:00")),     # after the end of ds
    ("u3", "c", "skip", _ts("2024-01-10T00:00:00")),      # weight 0
    ("u3", "c", "rating", _ts("2024-01-10T00:00:00")),    # type not listed
]
USERS = [("u1", {"gender": "F"}), ("u2", {"gender": "M"}), ("u3", {"gender": "M"})]


def _events_df(spark, rows=EVENTS):
    return spark.createDataFrame(rows, "user_id string, item_id string, event_type string, "
                                       "ts timestamp")


def _segments(spark, rules):
    users = pa.table({"user_id": [u for u, _ in USERS],
                      "attributes": pa.array([list(a.items()) for _, a in USERS],
                                             pa.map_(pa.string(), pa.string()))})
    return spark.createDataFrame(segment_table(users, rules))


def _table(df):
    return {(r.segment, r.item_id): (r.score, r.rank) for r in df.collect()}


def test_decay_cap_window_and_segments(spark):
    out = _table(transform(_events_df(spark), _segments(spark, [GENDER]), CFG,
                           DS, DS))
    # all: a = 2 (capped) + 0.25 = 2.25, b = 0.5 + 0.5 = 1.0
    assert set(out) == {("all", "a"), ("all", "b"), ("gender=F", "a"), ("gender=M", "a"),
                        ("gender=M", "b"), ("gender=unknown", "b")}
    assert out[("all", "a")] == (1.0, 1)
    assert math.isclose(out[("all", "b")][0], 1.0 / 2.25)
    assert out[("all", "b")][1] == 2
    assert out[("gender=F", "a")] == (1.0, 1)
    assert out[("gender=M", "b")] == (1.0, 1)            # 0.5 beats a's 0.25
    assert math.isclose(out[("gender=M", "a")][0], 0.5)
    assert out[("gender=M", "a")][1] == 2
    assert out[("gender=unknown", "b")] == (1.0, 1)      # u4 is missing from users


def test_small_segments_are_left_out_and_top_k_cuts(spark):
    cfg = CFG.model_copy(update={"min_segment_users": 2, "top_k": 1})
    out = _table(transform(_events_df(spark), _segments(spark, [GENDER]), cfg,
                           DS, DS))
    # F has 1 active user, M has 1 (u3's events do not count), unknown 1: only "all" stays
    assert out == {("all", "a"): (1.0, 1)}


def test_without_users_every_user_is_unknown_and_no_rules_gives_only_all(spark):
    out = _table(transform(_events_df(spark), None, CFG, DS, DS))
    assert {s for s, _ in out} == {"all", "gender=unknown"}
    assert out[("gender=unknown", "a")] == out[("all", "a")]
    only_all = _table(transform(_events_df(spark), None,
                                CFG.model_copy(update={"segments": []}), DS, DS))
    assert {s for s, _ in only_all} == {"all"}


def test_ties_rank_by_item_id(spark):
    df = spark.createDataFrame([("s", "z", 2.0), ("s", "y", 2.0), ("s", "x", 1.0)],
                               "segment string, item_id string, score double")
    out = {r.item_id: (r.score, r.rank) for r in rank_top_k(df, 5).collect()}
    assert out == {"y": (1.0, 1), "z": (1.0, 2), "x": (0.5, 3)}


def test_no_positive_weight_is_refused(spark):
    cfg = CFG.model_copy(update={"event_weights": {"view": 0.0}})
    with pytest.raises(ValueError, match="event_weights"):
        transform(_events_df(spark), None, cfg, DS, DS)


def _silver_events(rows):
    n = len(rows)
    return pa.table({
        "event_id": [f"e{i}" for i in range(n)],
        "user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
        "event_type": [r[2] for r in rows], "value": pa.nulls(n, pa.float64()),
        "ts": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
        "surface": pa.nulls(n, pa.string()), "content_hash": ["h"] * n,
        "event_date": [r[3].date().isoformat() for r in rows],
    })


def test_run_counts_events_up_to_the_training_cutoff_and_a_rerun_is_identical(spark,
                                                                              settings):
    run_ds = "2024-01-11"  # one holdout day: events of 2024-01-11 are left out, cutoff = DS
    settings = settings.model_copy(update={
        "popularity": CFG, "matrix": settings.matrix.model_copy(update={"holdout_days": 1})})
    lake = Lake(settings)
    with pytest.raises(EmptyInput, match="no event_date partition"):
        run(spark, settings, run_ds)
    lake.append(SILVER_INTERACTIONS.name, _silver_events(EVENTS), "b1")
    users = pa.table({"user_id": [u for u, _ in USERS],
                      "attributes": pa.array([list(a.items()) for _, a in USERS],
                                             SILVER_USERS.schema.field("attributes").type),
                      "created_at": pa.nulls(len(USERS), pa.timestamp("us", tz="UTC")),
                      "ds": ["2024-01-01"] * len(USERS)})
    lake.overwrite_partitions(SILVER_USERS.name, users)  # older snapshot: read as of run_ds

    first = run(spark, settings, run_ds)
    assert (first["events_from"], first["events_until"]) == ("2024-01-08", DS)
    assert first["users_partition"] == "2024-01-01"
    assert first["rows"] == 6 and first["segments"] == 4
    rows1 = sorted(lake.read_arrow(POPULARITY.name, [run_ds]).to_pylist(),
                   key=lambda r: (r["segment"], r["rank"]))
    run(spark, settings, run_ds)
    rows2 = sorted(lake.read_arrow(POPULARITY.name, [run_ds]).to_pylist(),
                   key=lambda r: (r["segment"], r["rank"]))
    assert rows1 == rows2
    assert len(rows1) == 6
    assert {(r["segment"], r["item_id"]) for r in rows1 if r["rank"] == 1} == {
        ("all", "a"), ("gender=F", "a"), ("gender=M", "b"), ("gender=unknown", "b")}
    assert math.isclose(next(r["score"] for r in rows1
                             if (r["segment"], r["item_id"]) == ("all", "b")), 1.0 / 2.25)


def test_main_reports_an_empty_window_on_stderr_with_exit_2(spark, tmp_path, capsys):

    assert recpipe(["popularity", "--ds", DS, "--lake-root", str(tmp_path / "lake")]) == 2
    assert "no event_date partition" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        recpipe(["popularity", "--ds", "2024-13-01"])
    assert exc.value.code == 2


def test_exact_sum_does_not_depend_on_the_row_order(spark):
    """A double sum's last bits follow the order Spark adds rows in (0.1 + 0.2 + 0.3 !=
    0.3 + 0.2 + 0.1); the weights of popularity and the training matrix are summed with
    ``exact_sum``, so a rerun whose shuffle delivers rows in another order writes the same
    scores."""
    from pyspark.sql import functions as F

    from jobs.spark import exact_sum

    def total(values, agg):
        df = spark.createDataFrame([(v,) for v in values], "w double").coalesce(1)
        return df.agg(agg.alias("s")).collect()[0]["s"]

    forward, backward = [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]
    assert total(forward, F.sum("w")) != total(backward, F.sum("w"))
    assert total(forward, exact_sum("w")) == total(backward, exact_sum("w")) == 0.6
    assert total([-1.5, 2 ** -0.5], exact_sum("w")) == pytest.approx(-1.5 + 2 ** -0.5,
                                                                      abs=1e-12)
