"""``recpipe ranker train|score`` end to end on tiny Parquet files."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.conftest import recpipe
from tests.training.tables import planted_table, tiny_spec


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("RECPIPE_RANKER__EMBEDDING_DIM", "4")
    monkeypatch.setenv("RECPIPE_RANKER__DENSE_ARCH_LAYER_SIZES", "[8, 4]")
    monkeypatch.setenv("RECPIPE_RANKER__OVER_ARCH_LAYER_SIZES", "[8, 1]")
    monkeypatch.setenv("RECPIPE_RANKER__BATCH_SIZE", "128")
    (tmp_path / "train").mkdir()
    for i in range(2):  # a folder of two files
        pq.write_table(planted_table(300, i), tmp_path / "train" / f"part-{i}.parquet")
    pq.write_table(planted_table(200, 7), tmp_path / "valid.parquet")
    test = planted_table(50, 8).drop_columns(["label"])
    pq.write_table(test, tmp_path / "test.parquet")
    (tmp_path / "spec.json").write_text(tiny_spec().to_json())
    return tmp_path


def test_train_then_score(files, capsys):
    out = files / "model"
    code = recpipe(["ranker", "train", "--train", str(files / "train"), "--valid",
                    str(files / "valid.parquet"),
                 "--out", str(out), "--spec", str(files / "spec.json"), "--epochs", "1",
                 "--architecture", "dlrm"])
    assert code == 0, capsys.readouterr().err
    assert (out / "manifest.json").is_file()
    scored = files / "scored.parquet"
    code = recpipe(["ranker", "score", "--model", str(out), "--input", str(files / "test.parquet"),
                 "--output", str(scored), "--batch-size", "16"])
    assert code == 0, capsys.readouterr().err
    table = pq.read_table(scored)
    assert table.column_names == ["user_id", "item_id", "score"]
    assert table.num_rows == 50
    expected_users = pq.read_table(files / "test.parquet")["user_id"].to_pylist()
    assert table["user_id"].to_pylist() == expected_users


def test_missing_input_exits_2(files, capsys):
    code = recpipe(["ranker", "train", "--train", str(files / "nope"), "--valid",
                    str(files / "valid.parquet"),
                 "--out", str(files / "m"), "--spec", str(files / "spec.json")])
    assert code == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_candidate_spec_on_other_columns_names_the_missing_one(files, capsys):
    code = recpipe(["ranker", "train", "--train", str(files / "train"), "--valid",
                    str(files / "valid.parquet"),
                 "--out", str(files / "m")])
    assert code == 2
    assert "lacks columns" in capsys.readouterr().err


def test_existing_output_exits_2(files, capsys):
    (files / "m").mkdir()
    code = recpipe(["ranker", "train", "--train", str(files / "train"), "--valid",
                    str(files / "valid.parquet"),
                 "--out", str(files / "m"), "--spec", str(files / "spec.json")])
    assert code == 2
    assert "already exists" in capsys.readouterr().err


def test_scoring_a_non_export_exits_1(files, capsys):
    """A folder that is not a ranker export is a model error (ArtifactError), exit 1."""
    code = recpipe(["ranker", "score", "--model", str(files), "--input",
                    str(files / "test.parquet"), "--output", str(files / "s.parquet")])
    assert code == 1
    assert "manifest.json" in capsys.readouterr().err


def test_bad_flag_exits_2(capsys):
    assert recpipe(["ranker", "train", "--architecture", "wide"]) == 2
