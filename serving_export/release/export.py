"""``recpipe export --ds D [--publish]``: the gold tables of ``ds`` -> a release directory.

Reads the precomputed tables, the catalogue, the embeddings and the gate's verdict for
``ds``, builds the sharded FAISS index over the item vectors (its ``efSearch`` tuned on the
user vectors), and writes ``releases/<id>/`` with :func:`serving_export.release.write_release`.
The release id is ``<ds>-<hash of the Delta versions read>``: exporting the same inputs
again finds the release already there and writes nothing. ``--publish`` then points
``CURRENT`` at it; publishing refuses a release that did not pass the gate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from algorithms.segments import ALL
from conf import Settings
from conf.errors import EmptyInput
from conf.pipeline import NEGATIVE_FEEDBACK
from jobs.asof import latest_partition_at_or_before
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.tables import ITEM_CONTENT, SILVER_INTERACTIONS, SILVER_ITEMS, SILVER_USERS
from jobs.user_segments import segments_as_of
from serving_export.release.data import Embeddings, GateVerdict, ReleaseData
from serving_export.release.format import OVERALL
from serving_export.release.promotion import publish_release
from serving_export.release.publish import list_releases
from serving_export.release.writer import write_release

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
READS = ("gold/topn", "gold/similar_items", "gold/popularity", "gold/user_embeddings",
         "gold/item_embeddings", ITEM_CONTENT.name, SILVER_ITEMS.name, SILVER_USERS.name,
         SILVER_INTERACTIONS.name, "gold/evaluation")


def release_id(ds: str, table_versions: dict[str, int | None]) -> str:
    """``<ds>-<8 hex>``: the same inputs give the same id."""
    key = json.dumps(table_versions, sort_keys=True).encode()
    return f"{ds}-{hashlib.sha256(key).hexdigest()[:8]}"


def items_by_user(events: pa.Table, types: tuple[str, ...], name: str) -> pa.Table:
    """``user_id, <name>`` (list of distinct item ids) from interaction rows of ``types``."""
    rows = events.filter(pc.is_in(events.column("event_type"), pa.array(types, pa.string())))
    grouped = rows.group_by("user_id").aggregate([("item_id", "distinct")])
    return grouped.rename_columns(["user_id", name])



def read_verdict(lake: Lake, ds: str) -> tuple[GateVerdict, dict[str, float]]:
    """The gate's verdict and headline metrics for ``ds`` from ``gold/evaluation``.

    A missing verdict is a failed gate: nothing unevaluated is ever published.
    """
    from evaluation.gate import load_verdict

    found = load_verdict(lake, ds)
    if found is None:
        return GateVerdict(False, ("no gate verdict recorded for this date",)), {}
    passed, reasons, metrics = found
    return GateVerdict(bool(passed), tuple(reasons)), dict(metrics)


def with_content_vectors(item_emb: Embeddings, lake: Lake, ds: str) -> tuple[Embeddings, int]:
    """``item_emb`` plus the content-predicted vectors (``gold/item_content.vector``, in the
    same space) of items that have no collaborative one, so a new item has similar items
    and can be found through the FAISS shards. Returns the vectors and how many were added.
    """
    if ds not in lake.partitions(ITEM_CONTENT.name):
        return item_emb, 0
    content = lake.read_arrow(ITEM_CONTENT.name, [ds], columns=["id", "vector", "has_cf"])
    known = pa.array([str(i) for i in item_emb.ids], pa.string())
    cold = content.filter(pc.and_(pc.invert(content.column("has_cf")),
                                  pc.invert(pc.is_in(content.column("id"), known))))
    if cold.num_rows == 0:
        return item_emb, 0
    extra = Embeddings.from_table(cold)
    if len(item_emb.ids) and extra.vectors.shape[1] != item_emb.vectors.shape[1]:
        raise ValueError(f"{ITEM_CONTENT.name}: vectors have {extra.vectors.shape[1]} "
                         f"dimensions, the item embeddings {item_emb.vectors.shape[1]}")
    return Embeddings(ids=[*item_emb.ids, *extra.ids],
                      vectors=np.concatenate([item_emb.vectors, extra.vectors])), cold.num_rows


def build_faiss(settings: Settings, item_emb: Embeddings, user_emb: Embeddings,
                folder: Path) -> Path | None:
    """The sharded HNSW index over item vectors (ids are rows of ``item_emb``)."""
    from serving_export.index.build import build_index

    if len(item_emb.ids) < 2:
        return None
    queries = user_emb.vectors if len(user_emb.ids) else None
    index = build_index(item_emb.vectors, np.arange(len(item_emb.ids), dtype=np.int64),
                        settings.index, queries=queries)
    return index.save(folder / "faiss")


def collect(settings: Settings, lake: Lake, ds: str) -> tuple[ReleaseData, dict]:
    """Everything the release of ``ds`` holds, read from the lake."""
    topn = lake.read_arrow("gold/topn", [ds])
    if topn.num_rows == 0:
        raise EmptyInput(f"gold/topn has no rows for ds={ds}; run `recpipe topn` first")
    surfaces = {}
    for surface in sorted(set(topn.column("surface").to_pylist())):
        part = topn.filter(pc.equal(topn.column("surface"), surface))
        surfaces[surface] = part.select(["user_id", "item_id", "score", "rank", "sources"])
    pop = lake.read_arrow("gold/popularity", [ds], columns=["segment", "item_id", "score",
                                                             "rank"])
    pop = pop.set_column(0, "segment", pc.if_else(pc.equal(pop.column("segment"), ALL),
                                                   OVERALL, pop.column("segment")))
    items_ds = latest_partition_at_or_before(lake, SILVER_ITEMS.name, ds)
    items = lake.read_arrow(SILVER_ITEMS.name, [items_ds] if items_ds else [],
                            columns=["item_id", "title", "categories", "available", "boost"])
    seg = segments_as_of(lake, settings, ds)
    dates = [d for d in lake.partitions(SILVER_INTERACTIONS.name) if d <= ds]
    events = lake.read_arrow(SILVER_INTERACTIONS.name, dates,
                             columns=["user_id", "item_id", "event_type"])
    bought = items_by_user(events, ("purchase",), "purchased")
    bought_of = dict(zip(bought.column("user_id").to_pylist(),
                         bought.column("purchased").to_pylist(), strict=True))
    said_no = items_by_user(events, NEGATIVE_FEEDBACK, "blocked")
    blocked_of = dict(zip(said_no.column("user_id").to_pylist(),
                          said_no.column("blocked").to_pylist(), strict=True))
    seg_of = dict(zip(seg.column("user_id").to_pylist(), seg.column("segment").to_pylist(),
                      strict=True))
    everyone = sorted(set(seg_of) | set(bought_of) | set(blocked_of))
    user_table = pa.table({
        "user_id": pa.array(everyone, pa.string()),
        "segment": pa.array([seg_of.get(u) for u in everyone], pa.string()),
        "purchased": pa.array([bought_of.get(u) or [] for u in everyone],
                              pa.list_(pa.string())),
        "blocked": pa.array([blocked_of.get(u) or [] for u in everyone],
                            pa.list_(pa.string())),
    })
    user_emb = Embeddings.from_table(lake.read_arrow("gold/user_embeddings", [ds]))
    item_emb_t = lake.read_arrow("gold/item_embeddings", [ds])
    item_emb, content_only = with_content_vectors(
        Embeddings.from_table(item_emb_t), lake, ds)
    versions = sorted(set(item_emb_t.column("model_version").to_pylist()))
    gate, metrics = read_verdict(lake, ds)
    table_versions = {name: lake.version(name) for name in READS}
    data = ReleaseData(
        ds=ds, gate=gate, topn=surfaces,
        similar_items=lake.read_arrow("gold/similar_items", [ds],
                                      columns=["item_id", "similar_item_id", "score", "rank"]),
        popularity=pop, items=items, users=user_table,
        user_embeddings=user_emb, item_embeddings=item_emb,
        model_versions={"embeddings": versions[0] if versions else ""},
        table_versions={k: v for k, v in table_versions.items() if v is not None},
        metrics={k: float(v) for k, v in metrics.items()},
        extra={"item_vectors": {"collaborative": len(item_emb.ids) - content_only,
                                "content": content_only}},
    )
    return data, table_versions


def run(spark: SparkSession | None, settings: Settings, ds: str) -> dict:
    """Export the release of ``ds`` (publishing is the ``publish`` stage's)."""
    lake = Lake(settings)
    root = Path(settings.resolve(settings.serving.releases_root))
    data, table_versions = collect(settings, lake, ds)
    rid = release_id(ds, table_versions)
    existing = {r.release_id for r in list_releases(root)}
    report = {"ds": ds, "release_id": rid, "gate_passed": data.gate.passed,
              "gate_reasons": list(data.gate.reasons)}
    if rid in existing:
        log.info("release %s already exists; nothing to write", rid)
        report["written"] = False
    else:
        with tempfile.TemporaryDirectory(prefix="recpipe-faiss-") as tmp:
            faiss_dir = build_faiss(settings, data.item_embeddings, data.user_embeddings,
                                    Path(tmp))
            data.faiss_dir = faiss_dir
            path = write_release(root, rid, data)
            shutil.rmtree(tmp, ignore_errors=True)
        report["written"] = True
        report["path"] = str(path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe export", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    parser.add_argument("--publish", action="store_true",
                        help="point CURRENT at the release (only if it passed the gate)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    report = run(None, settings, args.ds)
    if args.publish:  # CURRENT, then the MLflow aliases (serving_export.release.promotion)
        root = Path(settings.resolve(settings.serving.releases_root))
        report["previous"], report["champions"] = publish_release(settings, root,
                                                                  report["release_id"])
        report["published"] = True
    print(json.dumps(report, indent=2))
    return 0
