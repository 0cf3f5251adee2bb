"""``recpipe bench quality`` end to end on small slices (``--quick``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.quality import REPO_ROOT
from tests.conftest import recpipe, require

KEYS = {"ndcg@10", "recall@10", "recall@20", "ndcg@20", "recall@100", "pop_ndcg@10",
        "pop_recall@100", "protocol", "seconds", "models", "best_model"}


def _write_split(folder: Path, rng: np.random.Generator) -> list[Path]:
    """Two taste groups of users (even / odd items), 8 items each in train, 2 valid, 2 test."""
    lines: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for user in range(40):
        mine = rng.permutation(np.arange(user % 2, 40, 2))[:12]
        for name, chunk in (("train", mine[:8]), ("valid", mine[8:10]), ("test", mine[10:])):
            lines[name].append(" ".join(str(v) for v in [user, *chunk]))
    paths = []
    for name, rows in lines.items():
        path = folder / f"{name}.txt"
        path.write_text("\n".join(rows) + "\n")
        paths.append(path)
    return paths


def test_fixed_split_quick_writes_every_key(tmp_path, capsys):
    train, valid, test = _write_split(tmp_path, np.random.default_rng(0))
    out = tmp_path / "out" / "result.json"
    code = recpipe(["bench", "quality", "--protocol", "fixed-split", "--train", str(train),
                    "--valid", str(valid),
                 "--test", str(test), "--quick", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result) >= KEYS
    assert result["protocol"] == "fixed-split"
    assert set(result["models"]) == {"ials", "ease", "gfcf", "rp3beta", "admmslim",
                                     "popularity"}
    best = result["models"][result["best_model"]]
    assert result["ndcg@10"] == best["test"]["ndcg@10"]
    assert result["ndcg@10_low"] < result["ndcg@10"] < result["ndcg@10_high"]
    assert result["recall@100_low"] <= result["recall@100"] <= result["recall@100_high"]
    assert set(best["params"]) and best["trials"]
    # the two taste groups are easy: any tuned model beats popularity clearly
    assert result["ndcg@10"] > result["pop_ndcg@10"] + 0.1
    assert result["dataset"]["test"] == 80
    assert "published" in result and "fixed-split" in capsys.readouterr().out


def test_msr_ml100k_quick_from_a_converted_events_file(tmp_path):
    rng = np.random.default_rng(1)
    users, items = [], []
    for user in range(1, 61):
        chosen = rng.choice(np.arange(1 + user % 3, 91, 3), size=16, replace=False)
        users += [str(user)] * 16
        items += [str(i) for i in chosen]
    folder = tmp_path / "movielens-100k"
    folder.mkdir()
    pq.write_table(pa.table({"user_id": users, "item_id": items}), folder / "events.parquet")
    out = tmp_path / "msr.json"
    code = recpipe(["bench", "quality", "--protocol", "msr-ml100k", "--quick", "--data-dir",
                    str(tmp_path),
                 "--json", str(out), "--models", "ease"])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result) >= KEYS
    assert result["dataset"]["train"] == 60 * 12 and result["dataset"]["test"] == 60 * 4
    assert set(result["models"]) == {"ease", "popularity"}


ML1M = REPO_ROOT / ".." / "shared" / "data" / "ml-1m"


@pytest.mark.slow
def test_recbole_ml1m_quick_on_the_shared_files(tmp_path):
    require((ML1M / "train.txt").is_file(), f"shared ML-1M files absent in {ML1M}")
    out = tmp_path / "ml1m.json"
    assert recpipe(["bench", "quality", "--protocol", "recbole-ml1m", "--quick", "--json",
                    str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) >= KEYS
    assert result["dataset"]["interactions_raw"] == 836_478
    assert 0.0 < result["pop_ndcg@10"] < result["ndcg@10"] < 1.0


def test_synthetic_quick_at_the_academic_size(tmp_path, capsys):
    # 300 users of the 30,000 x 40,000 x 1,000,000 data set (ADMM-SLIM, cubic in the
    # items, runs in the fixed-split test)
    out = tmp_path / "synthetic.json"
    assert recpipe(["bench", "quality", "--protocol", "synthetic", "--quick", "--json",
                    str(out), "--models", "ials,ease,gfcf,rp3beta"]) == 0
    result = json.loads(out.read_text())
    assert set(result) >= KEYS | {"peak_rss_mb"}
    assert result["dataset"]["generated"]["users"] == 30_000
    assert result["dataset"]["generated"]["items"] == 40_000
    assert result["dataset"]["generated"]["interactions"] == 1_000_000
    assert result["dataset"]["users"] == 300
    assert 5_000 < result["dataset"]["generated"]["pairs_drawn"] < 20_000  # ~33 per user
    assert result["models"]["gfcf"]["trials"]
    assert "synthetic" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protocol", "fixed-split"], "needs --train, --valid and --test"),
        (["--protocol", "fixed-split", "--train", "nope.txt", "--valid", "v", "--test", "t"],
         "not found"),
        (["--protocol", "recbole-ml1m", "--train", "x"], "are for fixed-split"),
        (["--protocol", "msr-ml100k", "--models", "slim"], "--models"),
        (["--protocol", "movielens"], "invalid choice"),
        (["--protocol", "synthetic", "--shape", "30000x40000"], "--shape must look like"),
        (["--protocol", "synthetic", "--shape", "10x10x90"], "do not fit"),
    ],
)
def test_bad_input_exits_2_with_a_message(argv, message, capsys):
    assert recpipe(["bench", "quality", *argv]) == 2
    assert message in capsys.readouterr().err
