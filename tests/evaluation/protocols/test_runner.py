"""``run_protocol``: models over the cubic-size limit are skipped with their reason."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from conf.evaluation import QualityBenchSettings
from evaluation.protocols import ProtocolData, format_table, run_protocol


def _data(seed: int) -> ProtocolData:
    rng = np.random.default_rng(seed)
    train = sp.csr_matrix((rng.random((60, 30)) < 0.3).astype(np.float32))
    truth = sp.csr_matrix(((rng.random((60, 30)) < 0.1) & (train.toarray() == 0))
                          .astype(np.float32))
    return ProtocolData("unit", train, truth, train, train, truth, train)


def test_a_model_over_its_cubic_limit_is_skipped_with_the_reason() -> None:
    settings = QualityBenchSettings(models=["ease", "rp3beta"], max_cubic_dim={"ease": 29})
    result = run_protocol(_data(0), settings, seed=0, quick=True)
    assert "cube of 30" in result["models"]["ease"]["skipped"]
    assert "max_cubic_dim['ease'] = 29" in result["models"]["ease"]["skipped"]
    assert result["best_model"] == "rp3beta"
    assert "skipped: its fit costs the cube of 30" in format_table(result)


def test_within_the_limit_the_model_is_tuned() -> None:
    settings = QualityBenchSettings(models=["ease"], max_cubic_dim={"ease": 30})
    result = run_protocol(_data(0), settings, seed=0, quick=True)
    assert "skipped" not in result["models"]["ease"] and result["models"]["ease"]["trials"]
