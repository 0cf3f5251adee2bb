"""The small, fast ranker settings that the ranker and training tests share."""

from __future__ import annotations

import pytest


@pytest.fixture
def ranker_settings():
    """Small, fast ranker settings (tiny MLPs, 3 epochs)."""
    from conf.ranker import RankerSettings

    return RankerSettings(
        embedding_dim=8,
        dense_arch_layer_sizes=[16, 8],
        over_arch_layer_sizes=[16, 1],
        dcn_num_layers=2,
        dcn_low_rank_dim=4,
        batch_size=256,
        eval_batch_size=1024,
        shuffle_buffer_rows=2048,
        epochs=3,
        patience=1,
        id_min_count=1,
        dense_lr=0.01,
    )
