import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.datasets.formats import RAW_EVENTS_SCHEMA
from jobs.datasets.loaders import (
    iter_u_data,
    load_events_file,
    load_ratings_csv,
    load_ratings_dat,
    load_u_data,
)

# Epochs and their UTC times, checked with GNU `date -u -d @<epoch>`.
EPOCH_A, TS_A = 881250949, "1997-12-04T15:55:49Z"
EPOCH_B, TS_B = 978300760, "2000-12-31T22:12:40Z"
EPOCH_C, TS_C = 1112486027, "2005-04-02T23:53:47Z"


def test_u_data(tmp_path):
    path = tmp_path / "u.data"
    path.write_text(f"196\t242\t3\t{EPOCH_A}\n186\t302\t5\t{EPOCH_B}\n")
    table = load_u_data(path)
    assert table.schema.equals(RAW_EVENTS_SCHEMA)
    assert table.to_pylist() == [
        {"event_id": f"ml100k-196-242-{EPOCH_A}", "user_id": "196", "item_id": "242",
         "event_type": "rating", "value": "3", "ts": TS_A, "surface": None},
        {"event_id": f"ml100k-186-302-{EPOCH_B}", "user_id": "186", "item_id": "302",
         "event_type": "rating", "value": "5", "ts": TS_B, "surface": None},
    ]


def test_u_data_chunks_keep_order(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t7\t4\t{EPOCH_A + u}\n" for u in range(5)))
    chunks = list(iter_u_data(path, chunk_rows=2))
    assert [c.num_rows for c in chunks] == [2, 2, 1]
    users = [u for c in chunks for u in c.column("user_id").to_pylist()]
    assert users == ["0", "1", "2", "3", "4"]


def test_ratings_dat(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text(f"1::1193::5::{EPOCH_B}\r\n6040::2::1::{EPOCH_A}\r\n\n")
    table = load_ratings_dat(path)
    assert table.column("event_id").to_pylist() == [
        f"ml1m-1-1193-{EPOCH_B}", f"ml1m-6040-2-{EPOCH_A}"
    ]
    assert table.column("value").to_pylist() == ["5", "1"]
    assert table.column("ts").to_pylist() == [TS_B, TS_A]


def test_ratings_csv_half_stars_and_prefix(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(f"userId,movieId,rating,timestamp\n1,296,3.5,{EPOCH_C}\n2,1,0.5,{EPOCH_A}\n")
    table = load_ratings_csv(path, prefix="ml25m")
    assert table.column("value").to_pylist() == ["3.5", "0.5"]
    assert table.column("event_id").to_pylist() == [
        f"ml25m-1-296-{EPOCH_C}", f"ml25m-2-1-{EPOCH_A}"
    ]
    assert table.column("ts").to_pylist() == [TS_C, TS_A]


@pytest.mark.parametrize(
    ("loader", "name", "text", "message"),
    [
        (load_u_data, "u.data", f"1\t2\t3\t{EPOCH_A}\n1\t2\t3\n",
         r"u\.data:2: expected 4 fields .* got 3"),
        (load_u_data, "u.data", f"1\t2\tfive\t{EPOCH_A}\n", r"u\.data:1: rating 'five'"),
        (load_u_data, "u.data", "1\t2\t3\tyesterday\n", r"u\.data:1: timestamp 'yesterday'"),
        (load_u_data, "u.data", f"1\t\t3\t{EPOCH_A}\n", r"u\.data:1: empty user or item"),
        (load_ratings_dat, "ratings.dat", f"1::2::3::{EPOCH_A}\n1:2:3:4\n",
         r"ratings\.dat:2: expected 4 fields"),
        (load_ratings_csv, "ratings.csv", f"user,item,rating,ts\n1,2,3,{EPOCH_A}\n",
         r"ratings\.csv:1: expected the header"),
        (load_ratings_csv, "ratings.csv",
         f"userId,movieId,rating,timestamp\n1,2,3,{EPOCH_A}\n1,2,nan,{EPOCH_A}\n",
         r"ratings\.csv:3: rating 'nan' is not a number"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, loader, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        loader(path)


def test_events_csv_reorders_columns_and_nulls_empties(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "ts,user_id,item_id,event_type,value,surface,event_id,extra\n"
        "2024-01-02T03:04:05Z,u1,i9,view,12.5,home_feed,e1,x\n"
        "2024-01-02T03:05:00Z,u1,i9,click,,,e2,y\n"
    )
    table = load_events_file(path)
    assert table.schema.equals(RAW_EVENTS_SCHEMA)
    assert table.to_pylist() == [
        {"event_id": "e1", "user_id": "u1", "item_id": "i9", "event_type": "view",
         "value": "12.5", "ts": "2024-01-02T03:04:05Z", "surface": "home_feed"},
        {"event_id": "e2", "user_id": "u1", "item_id": "i9", "event_type": "click",
         "value": None, "ts": "2024-01-02T03:05:00Z", "surface": None},
    ]


def test_events_csv_missing_columns_are_all_named(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("event_id,user_id,item_id,ts\ne1,u1,i1,2024-01-01T00:00:00Z\n")
    with pytest.raises(ValueError, match=r"events\.csv: missing columns \['event_type', "
                                         r"'value', 'surface'\]"):
        load_events_file(path)


def test_events_csv_wrong_field_count_names_line(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,user_id,item_id,event_type,value,ts,surface\n"
        "e1,u1,i1,click,,2024-01-01T00:00:00Z,\n"
        "e2,u1,i1,click,2024-01-01T00:00:00Z\n"
    )
    with pytest.raises(ValueError, match=r"events\.csv:3: expected 7 fields, got 5"):
        load_events_file(path)


def test_events_parquet_casts_types_to_strings(tmp_path):
    path = tmp_path / "events.parquet"
    table = pa.table({
        "event_id": ["a", "b"],
        "user_id": pa.array([17, 18], pa.int64()),
        "item_id": ["x", "y"],
        "event_type": ["view", "rating"],
        "value": pa.array([30.0, 4.5]),
        "ts": pa.array([EPOCH_A * 1_000_000, EPOCH_B * 1_000_000], pa.timestamp("us", "UTC")),
        "surface": ["search", ""],
    })
    pq.write_table(table, path)
    out = load_events_file(path)
    assert out.schema.equals(RAW_EVENTS_SCHEMA)
    assert out.column("user_id").to_pylist() == ["17", "18"]
    assert out.column("value").to_pylist() == ["30", "4.5"]
    assert out.column("ts").to_pylist() == [TS_A, TS_B]
    assert out.column("surface").to_pylist() == ["search", None]


def test_events_parquet_missing_column(tmp_path):
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"event_id": ["a"], "user_id": ["u"]}), path)
    with pytest.raises(ValueError, match=r"events\.parquet: missing columns \['item_id'"):
        load_events_file(path)


def test_events_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"unknown events file type '\.json'"):
        load_events_file(tmp_path / "events.json")
