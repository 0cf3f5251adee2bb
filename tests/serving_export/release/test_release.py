"""Release writer, reader, verification, incremental releases."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from bench.release_synth import tiny_release_data
from conf.errors import ReleaseCorrupt, ReleaseExists, ReleaseIncomplete
from serving_export.release.data import Embeddings, GateVerdict, ReleaseData
from serving_export.release.reader import load_release, verify_release
from serving_export.release.writer import write_release


@pytest.fixture
def root(tmp_path):
    return tmp_path / "releases"


def _ids(rel, rows):
    return [rel.item_id(int(r)) for r in rows]


def test_written_release_reads_back_lists_in_rank_order(root):
    rel = load_release(write_release(root, "r1", tiny_release_data()))
    assert rel.surfaces == ("home_feed", "email")
    items, scores, masks = rel.topn("home_feed", rel.user_row("alice"))
    assert _ids(rel, items) == ["i1", "i2", "i3", "i4", "i5", "i6"]
    assert scores.tolist() == pytest.approx([.9, .8, .7, .6, .5, .4])
    assert [list(rel.sources_names(int(m))) for m in masks[:2]] == [["als"], ["als", "covis"]]
    assert _ids(rel, rel.topn("email", rel.user_row("alice"))[0]) == ["i6", "i5"]
    assert len(rel.topn("email", rel.user_row("bob"))[0]) == 0
    assert _ids(rel, rel.similar(rel.item_row("i1"))[0]) == ["i5", "i8", "i2"]
    assert _ids(rel, rel.similar(rel.item_row("i3"))[0]) == []
    pop_items, pop_scores, segment = rel.popular_for(rel.user_row("carol"))
    assert (segment, _ids(rel, pop_items)) == ("young", ["i8", "i6"])
    assert _ids(rel, rel.popular_for(rel.user_row("bob"))[0]) == ["i7", "i8", "i1", "i2"]
    assert _ids(rel, rel.purchased(rel.user_row("alice"))) == ["i2"]
    assert not rel.available[rel.item_row("i4")]
    assert rel.item_categories(rel.item_row("i3")) == ["comedy", "drama"]
    assert rel.user_row("nobody") == -1 and rel.item_row("i9") == -1
    assert rel.item_row("i1" * 100) == -1  # longer than any stored id: never truncated
    assert rel.user_vectors[rel.user_row("alice")].tolist() == [1.0, 0.0]
    assert not rel.item_has_vector[rel.item_row("i4")]


def test_rows_given_out_of_order_are_sorted_by_rank(root):
    data = tiny_release_data()
    data.topn = {"home_feed": pa.table({"user_id": ["u", "v", "u", "u"],
                                        "item_id": ["i3", "i1", "i1", "i2"],
                                        "score": [.1, .5, .2, .9], "rank": [3, 1, 1, 2]})}
    data.users = data.user_embeddings = None
    rel = load_release(write_release(root, "r1", data))
    assert _ids(rel, rel.topn("home_feed", rel.user_row("u"))[0]) == ["i1", "i2", "i3"]


def test_manifest_records_lineage_checksums_and_gate(root):
    path = write_release(root, "r1", tiny_release_data())
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["ds"] == "2024-01-01"
    assert manifest["gate"] == {"passed": True, "reasons": []}
    assert manifest["model_versions"] == {"ranker": "3"}
    assert manifest["table_versions"] == {"gold/topn": 7}
    assert manifest["counts"]["users"] == 3 and manifest["counts"]["items"] == 8
    entry = next(f for f in manifest["files"] if f["path"] == "items/boost.npy")
    import hashlib
    data = (path / "items/boost.npy").read_bytes()
    assert entry["bytes"] == len(data)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert (path / "_SUCCESS").read_text().strip() == hashlib.sha256(
        (path / "manifest.json").read_bytes()).hexdigest()
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]


def test_release_is_written_once(root):
    write_release(root, "r1", tiny_release_data())
    with pytest.raises(ReleaseExists):
        write_release(root, "r1", tiny_release_data())


@pytest.mark.parametrize("bad", ["", "../x", "CURRENT", "a b", "x.tmp-1"])
def test_bad_release_ids_are_refused(root, bad):
    with pytest.raises(ValueError, match="invalid release id"):
        write_release(root, bad, tiny_release_data())


def test_bad_tables_are_refused_naming_the_problem(root):
    data = tiny_release_data()
    data.topn = {"home_feed": pa.table({"user_id": ["a"], "item_id": ["i1"],
                                        "score": [float("nan")]})}
    with pytest.raises(ValueError, match="non-finite"):
        write_release(root, "r1", data)
    data = tiny_release_data()
    data.user_embeddings = Embeddings(["alice"], np.array([[np.nan, 0]], np.float32))
    with pytest.raises(ValueError, match="NaN"):
        write_release(root, "r1", data)
    data = tiny_release_data()
    data.popularity = pa.table({"segment": ["young"], "item_id": ["i1"], "score": [1.0]})
    with pytest.raises(ValueError, match="overall"):
        write_release(root, "r1", data)
    data = tiny_release_data()
    data.topn = {"home_feed": pa.table({"user_id": ["a", "a"], "item_id": ["i1", "i1"],
                                        "score": [1.0, 0.5]})}
    with pytest.raises(ValueError, match="duplicate"):
        write_release(root, "r1", data)
    assert not root.exists() or not list(root.iterdir())  # failed builds leave nothing


def test_corrupt_file_is_detected(root):
    path = write_release(root, "r1", tiny_release_data())
    target = path / "topn/home_feed/scores.npy"
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(ReleaseCorrupt, match="scores.npy"):
        verify_release(path)
    with pytest.raises(ReleaseCorrupt):
        load_release(path)


def test_missing_success_or_file_is_incomplete(root):
    path = write_release(root, "r1", tiny_release_data())
    (path / "similar/items.npy").unlink()
    with pytest.raises(ReleaseIncomplete, match="similar/items.npy"):
        verify_release(path)
    (path / "_SUCCESS").unlink()
    with pytest.raises(ReleaseIncomplete, match="_SUCCESS"):
        verify_release(path)


def test_edited_manifest_is_detected(root):
    path = write_release(root, "r1", tiny_release_data())
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["gate"]["passed"] = True
    manifest["metrics"]["ndcg@10"] = 0.99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ReleaseCorrupt, match="manifest"):
        verify_release(path)


def test_incremental_release_links_unchanged_files_and_updates_users(root):
    write_release(root, "r1", tiny_release_data())
    update = ReleaseData(
        ds="2024-01-01", gate=GateVerdict(True),
        topn={"home_feed": pa.table({"user_id": ["bob", "dave"], "item_id": ["i7", "i8"],
                                     "score": [2.0, 1.0]})},
        user_embeddings=Embeddings(["dave"], np.array([[3, 4]], np.float32)),
    )
    path = write_release(root, "r2", update, parent="r1")
    rel = load_release(path)
    assert rel.manifest["parent"] == "r1"
    # changed users get the new lists, others keep theirs, new users appear
    assert _ids(rel, rel.topn("home_feed", rel.user_row("bob"))[0]) == ["i7"]
    assert _ids(rel, rel.topn("home_feed", rel.user_row("dave"))[0]) == ["i8"]
    assert _ids(rel, rel.topn("home_feed", rel.user_row("alice"))[0]) == [
        "i1", "i2", "i3", "i4", "i5", "i6"]
    assert _ids(rel, rel.topn("email", rel.user_row("alice"))[0]) == ["i6", "i5"]
    assert rel.user_vectors[rel.user_row("dave")].tolist() == [3.0, 4.0]
    assert rel.user_vectors[rel.user_row("alice")].tolist() == [1.0, 0.0]
    assert _ids(rel, rel.purchased(rel.user_row("alice"))) == ["i2"]
    assert rel.popular_for(rel.user_row("carol"))[2] == "young"
    # unchanged groups are the parent's files (hard links), recorded with their origin
    files = {f["path"]: f for f in rel.manifest["files"]}
    assert files["similar/items.npy"]["origin"] == "r1"
    assert files["topn/home_feed/items.npy"]["origin"] is None
    assert (path / "items/ids.npy").stat().st_ino == (root / "r1/items/ids.npy").stat().st_ino
    with pytest.raises(ValueError, match="keeps the parent's items"):
        write_release(root, "r3", ReleaseData(ds="2024-01-01", gate=GateVerdict(True),
                                              items=pa.table({"item_id": ["x"]})), parent="r1")


def test_topn_table_round_trips(root):
    rel = load_release(write_release(root, "r1", tiny_release_data()))
    rows = rel.topn_table("email").to_pylist()
    assert [(r["user_id"], r["rank"], r["item_id"]) for r in rows] == [
        ("alice", 1, "i6"), ("alice", 2, "i5")]
