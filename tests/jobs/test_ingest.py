"""Ingest end to end on small files: quarantine reasons, idempotency, bad sources."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.ingest import ingest_source
from jobs.lake import Lake
from tests.conftest import recpipe

pytestmark = pytest.mark.spark
DS = "2024-01-01"
HEADER = "event_id,user_id,item_id,event_type,value,ts,surface\n"
GOOD = [
    "g1,u1,i1,rating,4,2024-01-01T10:00:00Z,home_feed",
    "g2,u1,i2,click,,1704103200,",
    "g3,u2,i1,view,30.5,2024-01-01 11:00:00,search",
    "g4,u2,i3,purchase,,2023-12-31T23:00:00Z,email",
]
BAD = {  # line -> expected reason
    "b1,,i1,click,,2024-01-01T10:00:00Z,": "missing_user_id",
    ",u3,i1,click,,2024-01-01T10:00:00Z,": "missing_event_id",
    "b3,u3,,click,,2024-01-01T10:00:00Z,": "missing_item_id",
    "b4,u3,i9,teleport,,2024-01-01T10:00:00Z,": "unknown_event_type",
    "b5,u3,i9,click,,not-a-time,": "bad_ts",
    "b6,u3,i9,click,,2031-01-01T00:00:00Z,": "ts_out_of_range",
    "b7,u3,i9,rating,9,2024-01-01T10:00:00Z,": "rating_out_of_range",
    "b8,u3,i9,view,-4,2024-01-01T10:00:00Z,": "negative_dwell",
    "b9,u3,i9,rating,lots,2024-01-01T10:00:00Z,": "bad_value",
    "b10,u3,i9": "malformed_row",
    "g2,u1,i2,purchase,,1704103200,": "conflicting_duplicate",
}


def _write(path, lines):
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def _silver(lake):
    rows = lake.read_arrow("silver/interactions").to_pylist()
    return sorted((r["event_id"], r["user_id"], r["item_id"], r["event_type"], r["value"],
                   r["ts"], r["surface"], r["event_date"]) for r in rows)


def test_bad_rows_are_quarantined_with_reasons_and_good_rows_land(spark, settings, tmp_path):
    src = _write(tmp_path / "events.csv", GOOD + list(BAD) + [GOOD[0]])  # + exact repeat
    summary = ingest_source(spark, settings, DS, src)
    lake = Lake(settings)
    quarantine = lake.read_arrow("quarantine/events").to_pylist()
    got = sorted((r["event_id"] or "", r["reason"]) for r in quarantine)
    expected = sorted((line.split(",")[0], reason) for line, reason in BAD.items())
    # g2 conflicts with itself: both of its variants are quarantined
    expected.append(("g2", "conflicting_duplicate"))
    assert got == sorted(expected)
    assert [r[0] for r in _silver(lake)] == ["g1", "g3", "g4"]
    assert summary.accepted == 3 and summary.duplicates == 1
    assert summary.quarantined == len(BAD) + 1
    assert summary.by_reason["conflicting_duplicate"] == 2
    assert summary.source_rows == len(GOOD) + len(BAD) + 1
    silver = {r[0]: r for r in _silver(lake)}
    assert silver["g4"][-1] == "2023-12-31"  # partitioned by the event's own date
    assert silver["g1"][4] == 4.0 and silver["g3"][6] == "search"
    malformed = [r for r in quarantine if r["reason"] == "malformed_row"][0]
    assert malformed["raw_record"] == "b10,u3,i9"


def test_reingest_same_file_changes_nothing(spark, settings, tmp_path):
    src = _write(tmp_path / "events.csv", GOOD + ["b1,,i1,click,,2024-01-01T10:00:00Z,"])
    ingest_source(spark, settings, DS, src)
    lake = Lake(settings)
    before = (_silver(lake), lake.read_arrow("bronze/events").num_rows,
              lake.read_arrow("quarantine/events").num_rows, lake.version("silver/interactions"))
    again = ingest_source(spark, settings, DS, src)
    after = (_silver(lake), lake.read_arrow("bronze/events").num_rows,
             lake.read_arrow("quarantine/events").num_rows, lake.version("silver/interactions"))
    assert after == before
    assert again.bronze_appended is False and again.accepted == 0
    assert again.duplicates == len(GOOD)


def test_second_file_merges_into_existing_partitions(spark, settings, tmp_path):
    ingest_source(spark, settings, DS, _write(tmp_path / "a.csv", GOOD[:2]))
    second = ingest_source(spark, settings, DS, _write(tmp_path / "b.csv", GOOD[1:]))
    assert second.accepted == 2 and second.duplicates == 1
    assert [r[0] for r in _silver(Lake(settings))] == ["g1", "g2", "g3", "g4"]


def test_jsonl_and_parquet_sources(spark, settings, tmp_path):
    (tmp_path / "e.jsonl").write_text(
        '{"event_id": "j1", "user_id": 7, "item_id": "i1", "event_type": "click", '
        '"ts": 1704103200}\n{not json\n')
    pq.write_table(pa.table({
        "event_id": ["p1"], "user_id": ["u"], "item_id": ["i"], "event_type": ["rating"],
        "value": [3.5], "ts": ["2024-01-01T00:00:00Z"]}), tmp_path / "e.parquet")
    s1 = ingest_source(spark, settings, DS, tmp_path / "e.jsonl")
    s2 = ingest_source(spark, settings, DS, tmp_path / "e.parquet")
    assert (s1.accepted, s1.by_reason) == (1, {"malformed_row": 1})
    assert s2.accepted == 1
    silver = {r[0]: r for r in _silver(Lake(settings))}
    assert silver["j1"][1] == "7" and silver["p1"][4] == 3.5


def test_missing_source_is_a_clear_error_and_writes_nothing(settings, tmp_path, capsys):
    code = recpipe(["ingest", "--source", str(tmp_path / "nope.csv"), "--ds", DS,
                 "--lake-root", settings.lake_root])
    assert code == 2
    assert "source not found" in capsys.readouterr().err
    assert not Lake(settings).exists("bronze/events")


def test_bad_header_is_a_clear_error(spark, settings, tmp_path):
    from conf.errors import SourceError

    (tmp_path / "x.csv").write_text("id,user,item\n1,2,3\n")
    with pytest.raises(SourceError, match="lacks required column"):
        ingest_source(spark, settings, DS, tmp_path / "x.csv")
    assert not Lake(settings).exists("bronze/events")


def test_cli_writes_json_summary(spark, settings, tmp_path):
    src = _write(tmp_path / "events.csv", GOOD)
    out = tmp_path / "summary.json"
    assert recpipe(["ingest", "--source", str(src), "--ds", DS, "--json", str(out),
                 "--lake-root", settings.lake_root]) == 0
    data = json.loads(out.read_text())
    assert (data["accepted"], data["quarantined"], data["duplicates"]) == (4, 0, 0)
