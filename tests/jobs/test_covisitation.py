import math
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from conf.retrieval import CovisitationSettings
from jobs.covisitation import run, session_items, sessionize, transform
from jobs.lake import Lake
from jobs.tables import COVISITATION, SILVER_INTERACTIONS
from tests.conftest import recpipe

pytestmark = pytest.mark.spark

DS = "2024-01-10"
CFG = CovisitationSettings(session_gap_minutes=30, window_size=10, max_session_items=200,
                           window_days=1, min_co_count=1, top_k=10,
                           event_types=["view", "click"])


def _ts(hm, day="2024-01-10"):
    return datetime.fromisoformat(f"{day}T{hm}:00").replace(tzinfo=UTC)


EVENTS = [
    ("u1", "a", "view", _ts("10:00")),   # u1 session 1: a b c (a again at 10:20)
    ("u1", "b", "view", _ts("10:10")),
    ("u1", "a", "click", _ts("10:20")),
    ("u1", "c", "view", _ts("10:25")),
    ("u1", "d", "view", _ts("11:30")),   # 65 min gap: session 2: d a
    ("u1", "a", "view", _ts("11:40")),
    ("u2", "b", "view", _ts("09:00")),   # u2: b c
    ("u2", "c", "click", _ts("09:05")),
    ("u2", "d", "skip", _ts("09:06")),   # type not counted
    ("u3", "a", "view", _ts("08:00")),   # u3: a c (20 min gap stays one session)
    ("u3", "c", "view", _ts("08:20")),
    ("u3", "b", "view", _ts("23:00", "2024-01-09")),   # before the 1-day window
    ("u3", "d", "view", _ts("00:00", "2024-01-11")),   # after the end of ds
]
# sessions: [a b c], [d a], [b c], [a c]; sessions(a)=3, b=2, c=3, d=1
# window 10: co(a,b)=1, co(a,c)=2, co(b,c)=2, co(a,d)=1


def _df(spark, rows=EVENTS):
    return spark.createDataFrame(rows, "user_id string, item_id string, event_type string, "
                                       "ts timestamp")


def _pairs(df):
    return {(r.item_id, r.neighbor_id): (r.score, r.co_count, r.rank) for r in df.collect()}


def test_sessions_split_on_gaps_longer_than_the_setting(spark):
    rows = _df(spark).where("user_id = 'u1'")
    out = [(r.item_id, r.session) for r in sessionize(rows, 30).orderBy("ts").collect()]
    assert out == [("a", 1), ("b", 1), ("a", 1), ("c", 1), ("d", 2), ("a", 2)]
    # a 70-minute threshold keeps the 65-minute gap inside one session
    assert {r.session for r in sessionize(rows, 70).collect()} == {1}


def test_session_items_are_distinct_by_first_occurrence_and_capped(spark):
    sessions = sessionize(_df(spark).where("user_id = 'u1'"), 30)
    out = {r.session: r.items for r in session_items(sessions, 200).collect()}
    assert out == {1: ["a", "b", "c"], 2: ["d", "a"]}
    capped = {r.session: r.items for r in session_items(sessions, 2).collect()}
    assert capped == {1: ["a", "b"], 2: ["d", "a"]}


def test_cosine_scores_counts_and_ranks(spark):
    out = _pairs(transform(_df(spark), CFG, DS, DS))
    assert set(out) == {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a"), ("b", "c"),
                        ("c", "b"), ("a", "d"), ("d", "a")}
    expected = {("a", "b"): (1, 1 / math.sqrt(6)), ("a", "c"): (2, 2 / 3),
                ("b", "c"): (2, 2 / math.sqrt(6)), ("a", "d"): (1, 1 / math.sqrt(3))}
    for (i, j), (co, score) in expected.items():
        for key in ((i, j), (j, i)):
            assert out[key][1] == co
            assert math.isclose(out[key][0], score)
    # a's neighbours: c 0.667 > d 0.577 > b 0.408
    assert [out[("a", n)][2] for n in ("c", "d", "b")] == [1, 2, 3]
    assert out[("b", "c")][2] == 1 and out[("b", "a")][2] == 2


def test_window_size_limits_pairs_to_nearby_positions(spark):
    out = _pairs(transform(_df(spark), CFG.model_copy(update={"window_size": 1}), DS, DS))
    # in [a b c], a and c are two apart: only u3's session pairs them
    assert out[("a", "c")][1] == 1
    assert out[("b", "c")][1] == 2


def test_conditional_normalisation_min_count_and_top_k(spark):
    cfg = CFG.model_copy(update={"normalisation": "conditional", "min_co_count": 2,
                                 "top_k": 1})
    out = _pairs(transform(_df(spark), cfg, DS, DS))
    # pairs with co_count >= 2: a-c and b-c. c: a and b tie at 2/3 and co_count 2: id a first
    assert set(out) == {("a", "c"), ("b", "c"), ("c", "a")}
    assert math.isclose(out[("a", "c")][0], 2 / 3)   # 2 of a's 3 sessions
    assert math.isclose(out[("b", "c")][0], 1.0)     # both of b's sessions
    assert math.isclose(out[("c", "a")][0], 2 / 3)


def test_run_counts_events_up_to_the_training_cutoff_and_a_rerun_is_identical(spark,
                                                                              settings):
    run_ds = "2024-01-11"  # one holdout day: u3's event on 2024-01-11 stays out
    settings = settings.model_copy(update={
        "covisitation": CFG, "matrix": settings.matrix.model_copy(update={"holdout_days": 1})})
    lake = Lake(settings)
    n = len(EVENTS)
    lake.append(SILVER_INTERACTIONS.name, pa.table({
        "event_id": [f"e{i}" for i in range(n)],
        "user_id": [r[0] for r in EVENTS], "item_id": [r[1] for r in EVENTS],
        "event_type": [r[2] for r in EVENTS], "value": pa.nulls(n, pa.float64()),
        "ts": pa.array([r[3] for r in EVENTS], pa.timestamp("us", tz="UTC")),
        "surface": pa.nulls(n, pa.string()), "content_hash": ["h"] * n,
        "event_date": [r[3].date().isoformat() for r in EVENTS],
    }), "b1")
    report = run(spark, settings, run_ds)
    assert (report["events_from"], report["events_until"]) == (DS, DS)
    assert report["event_partitions"] == 1 and report["rows"] == 8
    key = lambda r: (r["item_id"], r["rank"])  # noqa: E731
    rows1 = sorted(lake.read_arrow(COVISITATION.name, [run_ds]).to_pylist(), key=key)
    run(spark, settings, run_ds)
    rows2 = sorted(lake.read_arrow(COVISITATION.name, [run_ds]).to_pylist(), key=key)
    assert rows1 == rows2
    assert [(r["neighbor_id"], r["co_count"]) for r in rows1 if r["item_id"] == "a"] == [
        ("c", 2), ("d", 1), ("b", 1)]


def test_main_reports_an_empty_window_on_stderr_with_exit_2(spark, tmp_path, capsys):

    assert recpipe(["covisitation", "--ds", DS, "--lake-root", str(tmp_path / "lake")]) == 2
    assert "no event_date partition" in capsys.readouterr().err
