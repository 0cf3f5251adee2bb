"""Id maps: frequency order, caps, the cold bucket, storage."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from algorithms.ranker.id_maps import IdCounter, IdMap
from conf.errors import ArtifactError, SchemaError


def fitted(values, cap=10, min_count=1, chunks=1) -> IdMap:
    counter = IdCounter("f")
    arr = pa.array(values)
    step = max(1, len(values) // chunks)
    for start in range(0, len(values), step):
        counter.update(arr.slice(start, step))
    return counter.to_id_map(cap, min_count)


def test_most_frequent_first_ties_by_id_rare_and_unseen_to_zero():
    # counts: 5 x3, 7 x2, 9 x2, 3 x1, null ignored
    m = fitted([9, 5, 7, 5, 3, 9, 5, 7, None], cap=3, min_count=2)
    assert m.keys.to_pylist() == [5, 7]  # cap 3 keeps 2 ids; 7 beats 9 on the tie
    assert m.num_buckets == 3
    got = m.lookup(pa.array([5, 7, 9, 3, 42, None]))
    assert got.tolist() == [1, 2, 0, 0, 0, 0]
    assert got.dtype == np.int64


def test_min_count_sends_rare_ids_to_zero():
    m = fitted(["a", "a", "b"], cap=10, min_count=2)
    assert m.lookup(pa.array(["a", "b", "c"])).tolist() == [1, 0, 0]


def test_streamed_counts_equal_one_pass():
    rng = np.random.default_rng(0)
    values = rng.zipf(1.5, 5000) % 300
    one = fitted(values.tolist(), cap=50)
    many = fitted(values.tolist(), cap=50, chunks=100)  # forces compaction (> 32 parts)
    assert one.keys.to_pylist() == many.keys.to_pylist()
    np.testing.assert_array_equal(one.counts, many.counts)
    uniq, counts = np.unique(values, return_counts=True)
    assert one.counts[0] == counts.max()
    assert one.keys[0].as_py() == uniq[counts == counts.max()].min()


def test_other_int_widths_and_dictionaries_are_normalised():
    m = fitted(["x", "y", "y"])
    assert m.lookup(pa.array(["y", "x"]).dictionary_encode()).tolist() == [1, 2]
    n = fitted([1, 2, 2])
    assert n.lookup(pa.array([2, 1, 3], pa.int32())).tolist() == [1, 2, 0]


def test_int_ids_looked_up_in_a_string_map_are_cast():
    m = fitted(["10", "20", "20"])
    assert m.lookup(pa.array([20, 10, 30])).tolist() == [1, 2, 0]


def test_unusable_types_and_type_changes_raise():
    with pytest.raises(SchemaError, match="'f'.*double"):
        IdCounter("f").update(pa.array([1.5]))
    counter = IdCounter("f")
    counter.update(pa.array([1, 2]))
    with pytest.raises(SchemaError, match="changed id type"):
        counter.update(pa.array(["a"]))


def test_empty_map_maps_everything_to_zero():
    m = IdCounter("f").to_id_map(10, 1)
    assert m.num_buckets == 1
    assert m.lookup(pa.array([1, 2])).tolist() == [0, 0]


def test_save_load_round_trip(tmp_path):
    m = fitted(["b", "a", "a"])
    m.save(tmp_path / "f.arrow")
    back = IdMap.load(tmp_path / "f.arrow", "f")
    assert back.keys.to_pylist() == ["a", "b"]
    assert back.counts.tolist() == [2, 1]
    assert back.lookup(pa.array(["a", "b", "z"])).tolist() == [1, 2, 0]


def test_loading_a_missing_map_raises(tmp_path):
    with pytest.raises(ArtifactError, match="cannot read id map"):
        IdMap.load(tmp_path / "nope.arrow", "f")
