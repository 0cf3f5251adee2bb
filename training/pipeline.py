"""Fit a ranker end to end: encoder on the training stream, model, training loop, export.

Sources are functions returning a fresh stream of Arrow record batches, so the data is read
again each epoch and never has to fit in memory: :func:`parquet_source` over files,
:func:`table_source` over an in-memory table (tests, benchmarks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from algorithms.ranker.batch import RankerBatch
from algorithms.ranker.encoder import FeatureEncoder
from algorithms.ranker.features import FeatureSpec
from algorithms.ranker.model import ModelConfig, RankerModel, build_model
from conf.ranker import RankerSettings
from training.data import parquet_batches, parquet_files, shuffle_rebatch, table_batches
from training.export import export_ranker
from training.train import TrainConfig, TrainResult, train

log = logging.getLogger(__name__)

Source = Callable[[np.random.Generator | None], Iterable[pa.RecordBatch]]
"""``rng -> record batches``: files (and rows, for tables) in an order drawn from ``rng``,
or in their stored order when ``rng`` is None."""

_READ_ROWS = 65_536


def parquet_source(
    paths: Sequence[str | Path], spec: FeatureSpec, with_label: bool = True
) -> Source:
    """A source reading the spec's columns (and the weight, where present) from Parquet."""
    files = parquet_files(paths)
    optional = [spec.weight] if spec.weight else []

    def source(rng: np.random.Generator | None) -> Iterator[pa.RecordBatch]:
        return parquet_batches(files, spec.columns(with_label), optional, _READ_ROWS, rng)

    return source


def table_source(table: pa.Table) -> Source:
    """A source over an in-memory table (rows permuted when given a generator)."""

    def source(rng: np.random.Generator | None) -> Iterator[pa.RecordBatch]:
        return table_batches(table, _READ_ROWS, rng)

    return source


@dataclass
class FittedRanker:
    """A trained model with what it needs: config, encoder and the training outcome."""

    model: RankerModel
    config: ModelConfig
    encoder: FeatureEncoder
    result: TrainResult

    def export(self, out_dir: Path, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Export with the best validation metrics recorded (see :func:`export_ranker`)."""
        metrics = {
            "valid_auc": self.result.best_auc,
            "valid_logloss": self.result.best_logloss,
            "best_epoch": float(self.result.best_epoch),
            "train_samples_per_s": self.result.train_samples_per_s,
        }
        return export_ranker(self.model, self.config, self.encoder, out_dir, metrics, params)


def encoded_batches(
    encoder: FeatureEncoder,
    source: Source,
    batch_size: int,
    buffer_rows: int,
    rng: np.random.Generator | None,
) -> Iterator[RankerBatch]:
    """Stream ``source`` as encoded batches of ``batch_size`` rows (shuffled if ``rng``)."""
    for table in shuffle_rebatch(source(rng), batch_size, buffer_rows, rng):
        yield encoder.encode(table)


def fit_ranker(
    settings: RankerSettings, spec: FeatureSpec, train_source: Source, valid_source: Source
) -> FittedRanker:
    """Fit the encoder on ``train_source``, then build and train the model.

    Args:
        settings: the ranker settings (architecture, sizes, optimisation, seed).
        spec: the features; sparse ``num_buckets`` are caps (fitting shrinks them).
        train_source: the training examples (read ``1 + epochs`` times).
        valid_source: the validation examples (read once per epoch).

    Returns:
        The trained model (best validation epoch), its config, encoder and history.
    """
    encoder = FeatureEncoder.fit(spec, train_source(None), settings.id_min_count)
    config = ModelConfig.from_settings(settings, encoder.spec)
    meta = torch.device("meta") if settings.sharded else None
    model = build_model(config, settings.seed, embedding_device=meta)

    def train_stream(epoch: int) -> Iterator[RankerBatch]:
        rng = np.random.default_rng([settings.seed, epoch])
        return encoded_batches(
            encoder, train_source, settings.batch_size, settings.shuffle_buffer_rows, rng
        )

    def valid_stream() -> Iterator[RankerBatch]:
        size = settings.eval_batch_size
        return encoded_batches(encoder, valid_source, size, size, None)

    result = train(model, train_stream, valid_stream, TrainConfig.from_settings(settings))
    return FittedRanker(model, config, encoder, result)
