"""The pure parts of ``recpipe bench ranker``: examples from MovieLens-style tables, split."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from bench.ranker_ctr import ctr_examples, feature_spec, random_split
from tests.conftest import recpipe

MAP = pa.map_(pa.string(), pa.string())
EVENTS = pa.table({
    "user_id": ["u1", "u1", "u2", "u2", "u9"],
    "item_id": ["i1", "i2", "i1", "i3", "i1"],
    "event_type": ["rating", "rating", "rating", "rating", "click"],
    "value": ["5", "3", "2", "4", None],
})
ITEMS = pa.table({
    "item_id": ["i1", "i2", "i3"],
    "categories": pa.array([["Drama", "War"], ["Comedy"], []], pa.list_(pa.string())),
    "attributes": pa.array([[("release_year", "1995")], [], [("release_year", "1970")]], MAP),
})
USERS = pa.table({
    "user_id": ["u1", "u2"],
    "attributes": pa.array([[("age", "24"), ("gender", "M"), ("occupation", "writer")],
                            [("age", "53"), ("gender", "F")]], MAP),
})


def test_examples_drop_neutral_ratings_and_join_features():
    ex = ctr_examples(EVENTS, ITEMS, USERS)
    assert ex["label"].to_pylist() == [1.0, 0.0, 1.0]  # ratings 5, 2, 4; the 3 and click go
    assert ex["item_id"].to_pylist() == ["i1", "i1", "i3"]
    assert ex["user_gender"].to_pylist() == ["M", "F", "F"]
    assert ex["user_occupation"].to_pylist() == ["writer", None, None]
    assert ex["item_genres"].to_pylist() == [["Drama", "War"], ["Drama", "War"], []]
    assert ex["item_year"].to_pylist() == ["1995", "1995", "1970"]
    assert ex["release_year"].to_pylist() == [1995.0, 1995.0, 1970.0]
    assert ex["age"].to_pylist() == [24.0, 53.0, 53.0]


def test_keep_neutral_keeps_threes_as_negatives():
    ex = ctr_examples(EVENTS, ITEMS, USERS, keep_neutral=True)
    assert ex["label"].to_pylist() == [1.0, 0.0, 0.0, 1.0]


def test_examples_fit_the_bench_spec():
    spec = feature_spec(100)
    ex = ctr_examples(EVENTS, ITEMS, USERS)
    assert set(spec.columns()) <= set(ex.column_names)


def test_split_sizes_disjoint_and_seeded():
    table = pa.table({"i": np.arange(1000)})
    train, valid, test = random_split(table, (0.8, 0.1, 0.1), seed=3)
    assert (train.num_rows, valid.num_rows, test.num_rows) == (800, 100, 100)
    all_ids = train["i"].to_pylist() + valid["i"].to_pylist() + test["i"].to_pylist()
    assert sorted(all_ids) == list(range(1000))
    again = random_split(table, (0.8, 0.1, 0.1), seed=3)[2]
    assert again["i"].to_pylist() == test["i"].to_pylist()
    with pytest.raises(ValueError, match="summing to 1"):
        random_split(table, (0.8, 0.1, 0.2), seed=3)


def test_bad_models_argument_exits_2(capsys):
    assert recpipe(["bench", "ranker", "--models", "wide"]) == 2
    assert "--models" in capsys.readouterr().err


def test_the_pipeline_part_builds_the_candidates_of_every_label_window():
    from bench.ranker_pipeline import lake_dates
    from conf import load_settings
    from training.labels import window_dates

    settings = load_settings(overrides={
        "lake_root": "unused", "matrix": {"holdout_days": 14},
        "ranker": {"label_days": 14, "example_windows": 3}})
    assert window_dates(settings, "1998-04-22") == ["1998-04-22", "1998-04-08", "1998-03-25"]
    # D2 itself, and the candidates of D - 14 days for each window's date D
    assert lake_dates(settings) == ["1998-03-11", "1998-03-25", "1998-04-08", "1998-04-22"]
