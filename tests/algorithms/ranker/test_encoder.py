"""Encoding Arrow data into batches: KJT layout, cold ids, weights, errors, storage."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from algorithms.ranker.encoder import FeatureEncoder
from algorithms.ranker.features import DenseFeature, FeatureSpec, SparseFeature
from conf.errors import SchemaError
from tests.training.tables import planted_table, tiny_spec

SPEC = FeatureSpec(
    sparse=(SparseFeature("u", 100), SparseFeature("tags", 100, multi_hot=True)),
    dense=(DenseFeature("x"),),
)
TRAIN = pa.table({
    "u": ["a", "b", "b"],
    "tags": pa.array([[1, 2], [2], [2, 3]], pa.list_(pa.int64())),
    "x": [0.0, 2.0, 4.0],
    "label": [1.0, 0.0, 1.0],
})


@pytest.fixture
def encoder():
    return FeatureEncoder.fit(SPEC, [TRAIN], min_count=1)


def test_fit_sizes_tables_to_kept_ids(encoder):
    # u keeps b, a -> 3 buckets; tags keeps 2, 1, 3 -> 4 buckets
    assert [f.num_buckets for f in encoder.spec.sparse] == [3, 4]
    assert encoder.stats.mean == (2.0,)


def test_encode_layout_cold_ids_and_nulls(encoder):
    data = pa.table({
        "u": ["b", "zzz", None],
        "tags": pa.array([[3, 1], None, [9]], pa.list_(pa.int64())),
        "x": [2.0, None, 2.0 + np.sqrt(8 / 3)],
        "label": [1.0, 0.0, 1.0],
    })
    batch = encoder.encode(data)
    assert len(batch) == 3
    # u: b -> 1 (most frequent), unseen and null -> 0; tags: 2 -> 1, 1 -> 2, 3 -> 3
    assert batch.sparse.keys() == ["u", "tags"]
    assert batch.sparse.values().tolist() == [1, 0, 0, 3, 2, 0]
    assert batch.sparse.lengths().tolist() == [1, 1, 1, 2, 0, 1]
    np.testing.assert_allclose(batch.dense.numpy(), [[0.0], [0.0], [1.0]], atol=1e-6)
    assert batch.labels.tolist() == [1.0, 0.0, 1.0]
    assert batch.weights.tolist() == [1.0, 1.0, 1.0]
    assert batch.dense.dtype == torch.float32 and batch.sparse.values().dtype == torch.int64


def test_weights_column_is_used_nulls_count_one(encoder):
    data = TRAIN.append_column("weight", pa.array([2.0, None, 0.5]))
    assert encoder.encode(data).weights.tolist() == [2.0, 1.0, 0.5]


def test_unlabelled_encoding_needs_no_label(encoder):
    batch = encoder.encode(TRAIN.drop_columns(["label"]), with_labels=False)
    assert batch.labels.tolist() == [0.0, 0.0, 0.0]


def test_missing_column_is_named(encoder):
    with pytest.raises(SchemaError, match="missing column 'x'"):
        encoder.encode(TRAIN.drop_columns(["x"]))


def test_null_label_is_refused(encoder):
    data = TRAIN.set_column(3, "label", pa.array([1.0, None, 0.0]))
    with pytest.raises(SchemaError, match="1 nulls"):
        encoder.encode(data)


def test_scalar_column_for_multi_hot_feature_is_refused(encoder):
    data = TRAIN.set_column(1, "tags", pa.array([1, 2, 3]))
    with pytest.raises(SchemaError, match="'tags' must hold a list"):
        encoder.encode(data)


def test_non_numeric_dense_column_is_refused(encoder):
    data = TRAIN.set_column(2, "x", pa.array(["a", "b", "c"]))
    with pytest.raises(SchemaError, match="'x' is not numeric"):
        encoder.encode(data)


def test_save_load_gives_the_same_encoding(tmp_path):
    table = planted_table(300, seed=0)
    enc = FeatureEncoder.fit(tiny_spec(), table.to_batches(max_chunksize=64), min_count=2)
    enc.save(tmp_path)
    back = FeatureEncoder.load(tmp_path)
    assert back.spec == enc.spec and back.stats == enc.stats
    a, b = enc.encode(table), back.encode(table)
    assert torch.equal(a.sparse.values(), b.sparse.values())
    assert torch.equal(a.dense, b.dense)


def test_fitting_an_empty_stream_raises():
    with pytest.raises(ValueError, match="empty training stream"):
        FeatureEncoder.fit(SPEC, [], min_count=1)
