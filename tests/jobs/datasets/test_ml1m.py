from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conf.errors import DatasetError
from jobs.datasets import ml1m
from jobs.datasets.formats import ITEMS_SCHEMA, RAW_EVENTS_SCHEMA, USERS_SCHEMA
from jobs.datasets.ml1m import convert_ml1m, synthetic_epochs
from tests.conftest import SHARED_DATA, recpipe, require

SHARED_ML1M = SHARED_DATA / "ml-1m"
TINY = {"train.txt": "0 10 11 12\n1 11\n", "valid.txt": "0 13\n", "test.txt": "0 14\n1 10\n"}
TINY_COUNTS = {"interactions": 7, "users": 2, "items": 5}


def write_tiny(folder: Path, files: dict[str, str] = TINY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_synthetic_epochs_by_hand():
    # user 5: 4 interactions over 4 days, one a day (day (2k+1)*4 // 8 = k), at 08:00 + 5 h;
    # user 12: 2 interactions on the midpoint days (1*4//4 = 1, 3*4//4 = 3), at 08:00 + 0 h
    got = synthetic_epochs(np.array([5, 12, 5, 5, 12, 5]), date(2024, 1, 4), days=4)
    assert got.tolist() == [
        epoch("2024-01-01T13:00:00"), epoch("2024-01-02T08:00:00"),
        epoch("2024-01-02T13:00:00"), epoch("2024-01-03T13:00:00"),
        epoch("2024-01-04T08:00:00"), epoch("2024-01-04T13:00:00"),
    ]


def test_synthetic_epochs_same_day_a_minute_apart_and_last_share_last():
    users = np.full(10, 3)
    got = synthetic_epochs(users, date(2024, 1, 5), days=5)
    days = (got - epoch("2024-01-01T00:00:00")) // 86_400
    assert days.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # last 1/5 of them on the last day
    assert (got[1] - got[0], got[9] - got[8]) == (60, 60)
    assert got[0] == epoch("2024-01-01T11:00:00")
    assert np.all(np.diff(got) > 0)


def test_synthetic_epochs_squeeze_a_full_day_and_refuse_an_impossible_one():
    got = synthetic_epochs(np.full(1_000, 0), date(2024, 1, 1), days=1)
    assert np.all(np.diff(got) == 57)  # (86400 - 8 h) // 1000 seconds apart, within the day
    assert got[-1] < epoch("2024-01-02T00:00:00")
    with pytest.raises(ValueError, match=r"user 11 has 100000 interactions .* days \(got 1\)"):
        synthetic_epochs(np.full(100_000, 11), date(2024, 1, 1), days=1)


def test_convert_tiny_folder(tmp_path):
    src = write_tiny(tmp_path / "ml-1m")
    counts = convert_ml1m(src, tmp_path / "out", end_date=date(2024, 3, 10), days=10,
                          expected=TINY_COUNTS)
    assert counts == {"events": 7, "items": 5, "users": 2}

    events = pq.read_table(tmp_path / "out" / "events.parquet")
    assert events.schema.equals(RAW_EVENTS_SCHEMA)
    assert events.column("event_id").to_pylist() == [
        "ml1m-train-0-10-0", "ml1m-train-0-11-1", "ml1m-train-0-12-2", "ml1m-train-1-11-3",
        "ml1m-valid-0-13-0", "ml1m-test-0-14-0", "ml1m-test-1-10-1",
    ]
    assert set(events.column("event_type").to_pylist()) == {"click"}
    assert events.column("value").null_count == 7
    rows = events.to_pylist()
    for user in ("0", "1"):  # each user's train, then valid, then test items, in time order
        mine = [r for r in rows if r["user_id"] == user]
        assert [r["ts"] for r in mine] == sorted(r["ts"] for r in mine)
        assert len({r["ts"] for r in mine}) == len(mine)
    assert min(r["ts"] for r in rows) >= "2024-03-01T"
    assert max(r["ts"] for r in rows) < "2024-03-11T"
    assert [r["ts"] for r in rows if r["user_id"] == "0"][-1].startswith("2024-03-10T")

    items = pq.read_table(tmp_path / "out" / "items.parquet")
    assert items.schema.equals(ITEMS_SCHEMA)
    assert items.column("item_id").to_pylist() == ["10", "11", "12", "13", "14"]
    assert items.column("available").to_pylist() == [True] * 5
    assert items.column("boost").to_pylist() == [1.0] * 5
    for name in ("title", "categories", "attributes", "created_at"):
        assert items.column(name).null_count == 5, name
    users = pq.read_table(tmp_path / "out" / "users.parquet")
    assert users.schema.equals(USERS_SCHEMA)
    assert users.column("user_id").to_pylist() == ["0", "1"]
    assert users.column("attributes").null_count == users.column("created_at").null_count == 2


def test_convert_is_deterministic(tmp_path):
    src = write_tiny(tmp_path / "ml-1m")
    for out in ("a", "b"):
        convert_ml1m(src, tmp_path / out, date(2024, 3, 10), 10, expected=None)
    assert pq.read_table(tmp_path / "a" / "events.parquet").equals(
        pq.read_table(tmp_path / "b" / "events.parquet"))


def test_counts_that_differ_are_named_and_nothing_is_written(tmp_path):
    src = write_tiny(tmp_path / "ml-1m")
    with pytest.raises(DatasetError, match=r"interactions 7 \(expected 836,478\); users 2 "):
        convert_ml1m(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_folder_and_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"ML-1M folder not found: .*nope"):
        convert_ml1m(tmp_path / "nope", tmp_path / "out", expected=None)
    src = write_tiny(tmp_path / "ml-1m", {"train.txt": "0 1\n", "test.txt": "0 2\n"})
    with pytest.raises(DatasetError, match=r"lacks valid\.txt"):
        convert_ml1m(src, tmp_path / "out", expected=None)


def test_malformed_line_names_file_and_line(tmp_path):
    src = write_tiny(tmp_path / "ml-1m", {**TINY, "valid.txt": "0 13\n1 x7\n"})
    with pytest.raises(ValueError, match=r"valid\.txt:2: .*'x7'"):
        convert_ml1m(src, tmp_path / "out", expected=None)


def test_cli_fetch_ml1m(tmp_path, monkeypatch, capsys):
    src = write_tiny(tmp_path / "ml-1m")
    monkeypatch.setattr(ml1m, "EXPECTED_COUNTS", TINY_COUNTS)
    assert recpipe(["data", "fetch", "ml-1m", "--src", str(src), "--out", str(tmp_path / "out"),
                 "--end-date", "2024-03-10", "--days", "3"]) == 0
    assert "events.parquet: 7 rows" in capsys.readouterr().out
    ts = pq.read_table(tmp_path / "out" / "events.parquet").column("ts").to_pylist()
    assert min(ts) >= "2024-03-08T" and max(ts) < "2024-03-11T"


@pytest.mark.parametrize(("files", "code", "message"), [
    (None, 1, "ML-1M folder not found"),
    (TINY, 1, "counts differ from the published ones"),
    ({**TINY, "test.txt": "0 14\n1 -10\n"}, 2, "test.txt:2"),
])
def test_cli_fetch_ml1m_failures(tmp_path, capsys, files, code, message):
    src = tmp_path / "ml-1m"
    if files is not None:
        write_tiny(src, files)
    assert recpipe(["data", "fetch", "ml-1m", "--src", str(src), "--out",
                    str(tmp_path / "out")]) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "events.parquet").exists()


def test_cli_ml1m_options_refused_for_movielens_100k(tmp_path, capsys):
    assert recpipe(["data", "fetch", "movielens-100k", "--days", "3", "--out", str(tmp_path)]) == 2
    assert "are for ml-1m" in capsys.readouterr().err


def test_shared_ml1m_has_the_published_counts(tmp_path):
    require(SHARED_ML1M.is_dir(), f"shared ML-1M files not present in {SHARED_ML1M}")
    counts = convert_ml1m(SHARED_ML1M, tmp_path / "out")
    assert counts == {"events": 836_478, "items": 3_628, "users": 6_039}
    ts = pq.read_table(tmp_path / "out" / "events.parquet", columns=["ts"]).column("ts")
    assert min(ts.to_pylist()) >= "2002-09-02T" and max(ts.to_pylist()) < "2003-03-01T"
