import pyarrow.parquet as pq
import pytest

from tests.conftest import recpipe


def test_convert_ratings_dat(tmp_path, capsys):
    src = tmp_path / "ratings.dat"
    src.write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    assert recpipe(["data", "convert", "--format", "ratings.dat", "--input", str(src),
                 "--out", str(tmp_path / "out")]) == 0
    table = pq.read_table(tmp_path / "out" / "events.parquet")
    assert table.column("item_id").to_pylist() == ["1193", "661"]
    assert "2 rows" in capsys.readouterr().out


def test_convert_fixed_split_default_prefix(tmp_path):
    src = tmp_path / "ml-1m" / "test.txt"
    src.parent.mkdir()
    src.write_text("0 4 2\n1 4\n")
    assert recpipe(["data", "convert", "--format", "fixed-split", "--input", str(src),
                 "--out", str(tmp_path / "out")]) == 0
    table = pq.read_table(tmp_path / "out" / "events.parquet")
    assert table.column("event_id").to_pylist() == [
        "ml-1m-test-0-4-0", "ml-1m-test-0-2-1", "ml-1m-test-1-4-2"
    ]


def test_convert_bad_line_exit_2_names_file_and_line(tmp_path, capsys):
    src = tmp_path / "u.data"
    src.write_text("1\t2\t3\t881250949\n1\t2\n")
    assert recpipe(["data", "convert", "--format", "u.data", "--input", str(src),
                 "--out", str(tmp_path / "out")]) == 2
    assert "u.data:2: expected 4 fields" in capsys.readouterr().err
    assert not (tmp_path / "out" / "events.parquet").exists()


def test_convert_missing_input_exit_2(tmp_path, capsys):
    assert recpipe(["data", "convert", "--format", "events", "--input", str(tmp_path / "nope.csv"),
                 "--out", str(tmp_path)]) == 2
    assert "input file not found" in capsys.readouterr().err


def test_synth(tmp_path, capsys):
    out = tmp_path / "synth"
    assert recpipe(["data", "synth", "--users", "20", "--items", "30", "--events", "500",
                    "--days", "2",
                 "--seed", "5", "--end-date", "2024-03-01", "--out", str(out)]) == 0
    assert pq.read_metadata(out / "events.parquet").num_rows == 500
    assert pq.read_metadata(out / "users.parquet").num_rows == 20
    assert "500 rows" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["synth", "--end-date", "2024-02-30"],
    ["synth", "--users", "-3", "--end-date", "2024-02-01"],
    ["synth", "--users", "many", "--end-date", "2024-02-01"],
    ["convert", "--format", "xml", "--input", "a", "--out", "b"],
    ["fetch", "movielens-25m"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        recpipe(["data", *argv])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
