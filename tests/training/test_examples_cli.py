"""``recpipe ranker examples|train --ds``: argument errors (no Spark, no lake)."""

from __future__ import annotations

from tests.conftest import recpipe


def test_train_needs_a_date_or_files(capsys):
    assert recpipe(["ranker", "train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "give --ds" in err and "--train, --valid, --out" in err


def test_train_with_a_date_refuses_file_arguments(tmp_path, capsys):
    code = recpipe(["ranker", "train", "--ds", "2024-01-24", "--out", str(tmp_path / "m")])
    assert code == 2
    assert "drop --train" in capsys.readouterr().err


def test_bad_date_exits_2(capsys):
    assert recpipe(["ranker", "examples", "--ds", "2024-13-01"]) == 2
    assert "not a date" in capsys.readouterr().err
