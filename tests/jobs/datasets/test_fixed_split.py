from datetime import UTC, datetime

import numpy as np
import pytest

from jobs.datasets.fixed_split import fixed_split_to_events, read_fixed_split
from jobs.datasets.formats import RAW_EVENTS_SCHEMA


def test_read_fixed_split_gives_one_entry_per_interaction_in_file_order(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("0 5 3 9\n2 7\n\n1\n4 3 3\n")
    users, items = read_fixed_split(path)
    assert users.dtype == np.int64 and items.dtype == np.int64
    assert users.tolist() == [0, 0, 0, 2, 4, 4]
    assert items.tolist() == [5, 3, 9, 7, 3, 3]


def test_read_fixed_split_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    users, items = read_fixed_split(path)
    assert users.shape == (0,) and items.shape == (0,)


@pytest.mark.parametrize(
    ("text", "line", "token"),
    [("0 1 2\n1 x 3\n", 2, "'x'"), ("0 1\n1 -3\n", 2, "'-3'"), ("0 1.5\n", 1, "'1.5'")],
)
def test_read_fixed_split_bad_token_names_file_line_and_token(tmp_path, text, line, token):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.txt:{line}: .*{token}"):
        read_fixed_split(path)


def test_read_fixed_split_rejects_a_user_on_two_lines(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("3 1\n4 2\n3 5\n")
    with pytest.raises(ValueError, match=r"dup\.txt:3: user 3 already listed on line 1"):
        read_fixed_split(path)


def test_fixed_split_to_events_synthetic_ts_and_ids():
    table = fixed_split_to_events(
        np.array([7, 7, 2]), np.array([1, 4, 1]), prefix="ml1m-train",
        base_ts=datetime(2000, 1, 1, tzinfo=UTC),
    )
    assert table.schema.equals(RAW_EVENTS_SCHEMA)
    assert table.column("event_id").to_pylist() == [
        "ml1m-train-7-1-0", "ml1m-train-7-4-1", "ml1m-train-2-1-2"
    ]
    assert table.column("ts").to_pylist() == [
        "2000-01-01T00:00:00Z", "2000-01-01T00:00:01Z", "2000-01-01T00:00:02Z"
    ]
    assert table.column("event_type").to_pylist() == ["click"] * 3
    assert table.column("user_id").to_pylist() == ["7", "7", "2"]
    assert table.column("value").null_count == 3


def test_fixed_split_to_events_rejects_misaligned_arrays():
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        fixed_split_to_events(np.array([1, 2]), np.array([1, 2, 3]))


def test_fixed_split_to_events_explicit_epochs():
    table = fixed_split_to_events(np.array([1, 1]), np.array([3, 4]), epoch_s=np.array([0, 90]))
    assert table.column("ts").to_pylist() == ["1970-01-01T00:00:00Z", "1970-01-01T00:01:30Z"]
    with pytest.raises(ValueError, match=r"epoch_s must have the shape of users \(2,\)"):
        fixed_split_to_events(np.array([1, 1]), np.array([3, 4]), epoch_s=np.array([0]))
