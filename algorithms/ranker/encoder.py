"""Arrow record batches -> :class:`~algorithms.ranker.batch.RankerBatch`, with fitted id maps
and stats.

A :class:`FeatureEncoder` is fitted once on the training stream (id counts and dense
statistics), saved beside the model (``feature_spec.json``, ``dense_stats.json``,
``id_maps/<feature>.arrow``) and used unchanged for validation, test and inference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from algorithms.ranker.batch import RankerBatch
from algorithms.ranker.features import FeatureSpec
from algorithms.ranker.id_maps import IdCounter, IdMap
from algorithms.ranker.normalize import DenseStats, DenseStatsAccumulator
from conf.errors import ArtifactError, SchemaError

log = logging.getLogger(__name__)

Tabular = pa.RecordBatch | pa.Table

SPEC_FILE = "feature_spec.json"
STATS_FILE = "dense_stats.json"
ID_MAP_DIR = "id_maps"


def column(data: Tabular, name: str) -> pa.Array:
    """Column ``name`` of a record batch or table as one array.

    Raises:
        SchemaError: there is no such column (the message lists those there are).
    """
    if name not in data.schema.names:
        raise SchemaError(f"missing column {name!r}; the input has {data.schema.names}")
    values = data.column(name)
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _ids_and_lengths(data: Tabular, name: str, multi_hot: bool) -> tuple[pa.Array, np.ndarray]:
    values = column(data, name)
    is_list = pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
    if multi_hot != is_list:
        want = "a list" if multi_hot else "a scalar id"
        raise SchemaError(f"column {name!r} must hold {want} per row, got {values.type}")
    if not multi_hot:
        return values, np.ones(len(values), np.int64)
    lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
    return pc.list_flatten(values), lengths.astype(np.int64)


def raw_dense(data: Tabular, spec: FeatureSpec) -> np.ndarray:
    """The dense columns as float64 (B, F_dense), NaN where null."""
    cols = []
    for name in spec.dense_names:
        values = column(data, name)
        try:
            values = values.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"dense column {name!r} is not numeric: {values.type}") from exc
        cols.append(values.to_numpy(zero_copy_only=False))
    return np.stack(cols, axis=1) if cols else np.zeros((data.num_rows, 0))


class FeatureEncoder:
    """Encodes tables for the model with a spec, id maps and dense statistics.

    Args:
        spec: the feature spec; each sparse feature's ``num_buckets`` must equal its id
            map's.
        id_maps: one :class:`IdMap` per sparse feature.
        stats: statistics of the dense features, in spec order.
    """

    def __init__(self, spec: FeatureSpec, id_maps: dict[str, IdMap], stats: DenseStats) -> None:
        missing = [n for n in spec.sparse_names if n not in id_maps]
        if missing:
            raise ValueError(f"no id map for sparse features {missing}")
        for f in spec.sparse:
            if f.num_buckets < id_maps[f.name].num_buckets:
                raise ValueError(
                    f"feature {f.name!r}: table has {f.num_buckets} buckets, its id map "
                    f"needs {id_maps[f.name].num_buckets}"
                )
        if list(stats.names) != spec.dense_names:
            raise ValueError(f"dense stats cover {list(stats.names)}, spec {spec.dense_names}")
        self.spec = spec
        self.id_maps = id_maps
        self.stats = stats

    @classmethod
    def fit(
        cls, spec: FeatureSpec, batches: Iterable[Tabular], min_count: int = 1
    ) -> FeatureEncoder:
        """Count ids and accumulate dense statistics over the training stream.

        Args:
            spec: the spec whose ``num_buckets`` are caps (bucket 0 included).
            batches: the training record batches (one pass).
            min_count: ids seen fewer times share bucket 0.

        Returns:
            An encoder whose spec has the fitted table sizes, ``min(cap, kept ids + 1)``
            (at least 2).
        """
        counters = {f.name: IdCounter(f.name) for f in spec.sparse}
        acc = DenseStatsAccumulator(
            tuple(spec.dense_names), tuple(f.log1p for f in spec.dense)
        )
        rows = 0
        for data in batches:
            rows += data.num_rows
            for f in spec.sparse:
                ids, _ = _ids_and_lengths(data, f.name, f.multi_hot)
                counters[f.name].update(ids)
            acc.update(raw_dense(data, spec))
        if rows == 0:
            raise ValueError("cannot fit the feature encoder on an empty training stream")
        id_maps = {
            f.name: counters[f.name].to_id_map(f.num_buckets, min_count) for f in spec.sparse
        }
        sizes = {name: max(2, m.num_buckets) for name, m in id_maps.items()}
        log.info("fitted encoder on %d rows; table sizes %s", rows, sizes)
        return cls(spec.with_num_buckets(sizes), id_maps, acc.finish())

    def encode(self, data: Tabular, with_labels: bool = True) -> RankerBatch:
        """Encode a record batch or table of B rows.

        Args:
            data: the spec's feature columns (plus the label, and optionally the weight).
            with_labels: read the label column; if False labels are zeros.

        Returns:
            The :class:`RankerBatch` (on CPU).

        Raises:
            SchemaError: a column is missing, of the wrong kind, or a label is null.
        """
        b = data.num_rows
        values, lengths = [], []
        for f in self.spec.sparse:
            ids, lens = _ids_and_lengths(data, f.name, f.multi_hot)
            values.append(self.id_maps[f.name].lookup(ids))
            lengths.append(lens)
        sparse = KeyedJaggedTensor(
            keys=self.spec.sparse_names,
            values=torch.from_numpy(np.concatenate(values)),
            lengths=torch.from_numpy(np.concatenate(lengths)),
        )
        dense = torch.from_numpy(self.stats.apply(raw_dense(data, self.spec)))
        if with_labels:
            label = column(data, self.spec.label)
            if label.null_count:
                raise SchemaError(f"label column {self.spec.label!r} has {label.null_count} nulls")
            labels = label.cast(pa.float32()).to_numpy(zero_copy_only=False)
        else:
            labels = np.zeros(b, np.float32)
        weights = np.ones(b, np.float32)
        if self.spec.weight and self.spec.weight in data.schema.names:
            w = pc.fill_null(column(data, self.spec.weight).cast(pa.float32()), 1.0)
            weights = w.to_numpy(zero_copy_only=False)
        return RankerBatch(
            dense=dense,
            sparse=sparse,
            labels=torch.from_numpy(np.array(labels, np.float32)),
            weights=torch.from_numpy(np.array(weights, np.float32)),
        )

    def save(self, directory: Path) -> list[Path]:
        """Write spec, stats and id maps into ``directory``; return the files written."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ID_MAP_DIR).mkdir(exist_ok=True)
        (directory / SPEC_FILE).write_text(self.spec.to_json())
        (directory / STATS_FILE).write_text(self.stats.to_json())
        files = [directory / SPEC_FILE, directory / STATS_FILE]
        for name, id_map in self.id_maps.items():
            path = directory / ID_MAP_DIR / f"{name}.arrow"
            id_map.save(path)
            files.append(path)
        return files

    @classmethod
    def load(cls, directory: Path) -> FeatureEncoder:
        """Read what :meth:`save` wrote.

        Raises:
            ArtifactError: a file is missing or unreadable.
        """
        try:
            spec = FeatureSpec.from_json((directory / SPEC_FILE).read_text())
            stats = DenseStats.from_json((directory / STATS_FILE).read_text())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"cannot read the feature files in {directory}: {exc}") from exc
        id_maps = {
            name: IdMap.load(directory / ID_MAP_DIR / f"{name}.arrow", name)
            for name in spec.sparse_names
        }
        return cls(spec, id_maps, stats)
