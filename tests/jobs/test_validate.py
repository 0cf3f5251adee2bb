import pytest

from conf.pipeline import IngestSettings
from jobs.validate import resolve_duplicates, typed_interactions, validate_events

pytestmark = pytest.mark.spark
COLS = ("event_id string, user_id string, item_id string, event_type string, value string, "
        "ts string, surface string, raw_record string, _source string, _row long")

CASES = [
    # (row, expected reason)
    (("ok1", "u", "i", "rating", "4", "2024-01-01T10:00:00Z", "home_feed", None), None),
    (("ok2", "u", "i", "click", "", "1704103200", "", None), None),
    (("ok3", "u", "i", "VIEW ", "12.5", "2024-01-01 11:00:00", None, None), None),
    (("bad1", "u", "i", "click", None, None, None, "bad1,u,i"), "malformed_row"),
    ((" ", "u", "i", "click", None, "2024-01-01T00:00:00Z", None, None), "missing_event_id"),
    (("b2", None, "i", "click", None, "2024-01-01T00:00:00Z", None, None), "missing_user_id"),
    (("b3", "u", "", "click", None, "2024-01-01T00:00:00Z", None, None), "missing_item_id"),
    (("b4", "u", "i", "teleport", None, "2024-01-01T00:00:00Z", None, None),
     "unknown_event_type"),
    (("b5", "u", "i", "click", None, "yesterday", None, None), "bad_ts"),
    (("b6", "u", "i", "click", None, "1980-01-01T00:00:00Z", None, None), "ts_out_of_range"),
    (("b7", "u", "i", "click", None, "2024-01-03T00:00:00Z", None, None), "ts_out_of_range"),
    (("b8", "u", "i", "rating", "four", "2024-01-01T00:00:00Z", None, None), "bad_value"),
    (("b9", "u", "i", "rating", "NaN", "2024-01-01T00:00:00Z", None, None), "bad_value"),
    (("b10", "u", "i", "rating", None, "2024-01-01T00:00:00Z", None, None), "missing_rating"),
    (("b11", "u", "i", "rating", "5.5", "2024-01-01T00:00:00Z", None, None),
     "rating_out_of_range"),
    (("b12", "u", "i", "rating", "0.4", "2024-01-01T00:00:00Z", None, None),
     "rating_out_of_range"),
    (("b13", "u", "i", "view", "-1", "2024-01-01T00:00:00Z", None, None), "negative_dwell"),
    (("b14", "u", "i", "view", "90000", "2024-01-01T00:00:00Z", None, None),
     "dwell_out_of_range"),
    # ingest date 2024-01-01 with max_future_days=1: 2024-01-02 23:59 is still in range
    (("ok4", "u", "i", "purchase", None, "2024-01-02T23:59:59Z", None, None), None),
]


def test_each_bad_row_gets_its_reason(spark):
    rows = [(*row, "f", i) for i, (row, _) in enumerate(CASES)]
    df = spark.createDataFrame(rows, COLS)
    out = {r["_row"]: r["reason"] for r in
           validate_events(df, IngestSettings(), "2024-01-01").collect()}
    assert [out[i] for i in range(len(CASES))] == [reason for _, reason in CASES]


def test_typed_values(spark):
    df = spark.createDataFrame([(*CASES[1][0], "f", 0), (*CASES[2][0], "f", 1)], COLS)
    typed = typed_interactions(validate_events(df, IngestSettings(), "2024-01-01"))
    rows = {r["event_id"]: r for r in typed.collect()}
    assert rows["ok2"]["value"] is None and rows["ok2"]["surface"] is None
    assert rows["ok2"]["event_date"] == "2024-01-01"  # 1704103200 = 2024-01-01T10:00Z
    assert rows["ok3"]["event_type"] == "view" and rows["ok3"]["value"] == 12.5


def test_duplicates_and_conflicts(spark):
    base = ("u", "i", "click", None, "2024-01-01T00:00:00Z", None, None)
    rows = [("a", *base, "f", 0), ("a", *base, "f", 1),              # exact repeat
            ("b", "u", "i", "click", None, "2024-01-01T00:00:00Z", None, None, "f", 2),
            ("b", "u", "j", "click", None, "2024-01-01T00:00:00Z", None, None, "f", 3),
            ("c", *base, "f", 4),                                   # stored identically
            ("d", *base, "f", 5)]                                   # stored differently
    typed = typed_interactions(validate_events(spark.createDataFrame(rows, COLS),
                                               IngestSettings(), "2024-01-01"))
    stored_rows = typed.where("event_id in ('c')").select("event_id", "content_hash").collect()
    stored = spark.createDataFrame(
        [(r.event_id, r.content_hash) for r in stored_rows] + [("d", "other")],
        ["event_id", "content_hash"])
    accepted, dups, conflicts = resolve_duplicates(typed, stored)
    assert sorted(r["_row"] for r in accepted.collect()) == [0]
    assert sorted(r["_row"] for r in dups.collect()) == [1, 4]
    assert sorted(r["_row"] for r in conflicts.collect()) == [2, 3, 5]
