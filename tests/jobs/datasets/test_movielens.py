import zipfile
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from conf.errors import DatasetError
from jobs.datasets.formats import ITEMS_SCHEMA, RAW_EVENTS_SCHEMA, USERS_SCHEMA
from jobs.datasets.movielens import (
    EXPECTED_COUNTS,
    clean_item,
    convert_movielens_100k,
    fetch_movielens_100k,
)

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t10\t4\t881250949\n"
    "2\t10\t2\t978300760\n"
    "1\t20\t5\t874724710\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "10\tToy Story\t1995\tAnimation Children's Comedy\n"
    "20\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's\n"
    "30\tunkonwn\tunkonwn\tunknown\n"
)
USER = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "1\t24\tM\ttechnician\t85711\n"
    "2\t53\tF\tother\t94043\n"
    "3\t23\tM\twriter\tT8H1N\n"
)


def write_source(folder, inter=INTER, item=ITEM, user=USER):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml-100k.inter").write_text(inter)
    (folder / "ml-100k.item").write_text(item)
    (folder / "ml-100k.user").write_text(user)
    return folder


def test_convert_tiny_source(tmp_path):
    src = write_source(tmp_path / "src")
    counts = convert_movielens_100k(src, tmp_path / "out")
    assert counts == {"events": 3, "items": 3, "users": 3}

    events = pq.read_table(tmp_path / "out" / "events.parquet")
    assert events.schema.equals(RAW_EVENTS_SCHEMA)
    assert events.column("event_id").to_pylist() == [
        "ml100k-1-10-881250949", "ml100k-2-10-978300760", "ml100k-1-20-874724710"
    ]
    assert events.column("value").to_pylist() == ["4", "2", "5"]
    assert events.column("ts").to_pylist()[2] == "1997-09-20T03:05:10Z"

    items = pq.read_table(tmp_path / "out" / "items.parquet")
    assert items.schema.equals(ITEMS_SCHEMA)
    rows = {r["item_id"]: r for r in items.to_pylist()}
    assert rows["10"]["title"] == "Toy Story"
    assert rows["10"]["categories"] == ["Animation", "Children's", "Comedy"]
    assert dict(rows["10"]["attributes"]) == {"release_year": "1995"}
    assert rows["10"]["created_at"] == datetime(1995, 1, 1, tzinfo=UTC)
    assert rows["20"]["title"] == "Land Before Time III: The Time of the Great Giving"
    assert dict(rows["20"]["attributes"]) == {"release_year": "1995"}
    assert rows["30"]["title"] is None and rows["30"]["categories"] == []
    assert rows["30"]["created_at"] is None
    assert all(r["available"] and r["boost"] == 1.0 for r in rows.values())

    users = pq.read_table(tmp_path / "out" / "users.parquet")
    assert users.schema.equals(USERS_SCHEMA)
    urows = {r["user_id"]: r for r in users.to_pylist()}
    assert dict(urows["1"]["attributes"]) == {
        "age": "24", "gender": "M", "occupation": "technician", "zip_code": "85711"
    }
    # first rating of user 1 is epoch 874724710, of user 2 epoch 978300760; user 3 has none
    assert urows["1"]["created_at"] == datetime(1997, 9, 20, 3, 5, 10, tzinfo=UTC)
    assert urows["2"]["created_at"] == datetime(2000, 12, 31, 22, 12, 40, tzinfo=UTC)
    assert urows["3"]["created_at"] is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (("GoldenEye", "1995", "Action Thriller"), ("GoldenEye", "1995", ["Action", "Thriller"])),
        (("Good Morning", "1971", "unknown"), ("Good Morning", "1971", [])),
        (("Seven (Se7en)", "1995", "Crime"), ("Seven (Se7en)", "1995", ["Crime"])),
        (("Heat (1995)", "1995", "Action"), ("Heat", "1995", ["Action"])),
    ],
)
def test_clean_item(raw, expected):
    assert clean_item(*raw) == expected


def test_convert_rejects_event_of_unknown_item(tmp_path):
    src = write_source(tmp_path / "src", inter=INTER + "3\t99\t1\t881250949\n")
    with pytest.raises(DatasetError, match="unknown item_ids, e.g. 99"):
        convert_movielens_100k(src, tmp_path / "out")
    assert not (tmp_path / "out" / "events.parquet").exists()


def test_malformed_source_line_names_file_and_line(tmp_path):
    src = write_source(tmp_path / "src", user=USER + "4\t30\tM\n")
    with pytest.raises(ValueError, match=r"ml-100k\.user:5: expected 5 fields"):
        convert_movielens_100k(src, tmp_path / "out")


def test_fetch_uses_a_cached_wheel_without_pip(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    with zipfile.ZipFile(cache / "recbole-1.2.1-py3-none-any.whl", "w") as wheel:
        for name, text in (("inter", INTER), ("item", ITEM), ("user", USER)):
            wheel.writestr(f"recbole/dataset_example/ml-100k/ml-100k.{name}", text)
        wheel.writestr("recbole/other/ml-100k.yaml", "not me")
    src = fetch_movielens_100k(cache)
    assert src == cache / "ml-100k"
    assert sorted(p.name for p in src.iterdir()) == [
        "ml-100k.inter", "ml-100k.item", "ml-100k.user"
    ]
    assert (src / "ml-100k.item").read_text() == ITEM


def test_fetch_wheel_without_the_dataset_is_an_error(tmp_path):
    with zipfile.ZipFile(tmp_path / "recbole-1.2.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("recbole/__init__.py", "")
    with pytest.raises(DatasetError, match="lacks"):
        fetch_movielens_100k(tmp_path)


@pytest.mark.slow
def test_fetch_and_convert_real_movielens_100k(tmp_path):
    src = fetch_movielens_100k(tmp_path / "cache")
    counts = convert_movielens_100k(src, tmp_path / "out")
    assert counts == {"events": 100_000, "items": 1_682, "users": 943} == EXPECTED_COUNTS
    events = pq.read_table(tmp_path / "out" / "events.parquet")
    assert events.num_rows == 100_000
    assert set(events.column("value").to_pylist()) == {"1", "2", "3", "4", "5"}
    assert events.column("ts").to_pylist()[0] == "1997-12-04T15:55:49Z"  # 196 242 3 881250949
    assert pq.read_metadata(tmp_path / "out" / "items.parquet").num_rows == 1_682
    assert pq.read_metadata(tmp_path / "out" / "users.parquet").num_rows == 943
