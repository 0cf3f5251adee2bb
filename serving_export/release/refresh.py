"""Refreshing the lists of the users an hour changed, on a parent release: which events are
new since the nightly base, the users' folded vectors, their candidates scored by the base
date's ranker and ordered by the surfaces' rules."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conf import Settings
from conf.errors import FoldInError
from jobs.foldin import (
    backfill_lists,
    fold_vectors,
    foldin_matrix,
    new_events,
)
from jobs.lake import Lake
from jobs.tables import (
    ITEM_EMBEDDINGS,
    SILVER_INTERACTIONS,
    spec_for,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from serving_export.release.reader import Release

log = logging.getLogger(__name__)
EVENT_COLUMNS = ["event_id", "user_id", "item_id", "event_type", "value", "ts"]
USERS_PER_PARTITION = 2000


def changed_partitions(lake: Lake, name: str, version: int) -> list[str]:
    """Partition values of table ``name`` whose files differ between ``version`` and now."""
    column = f"partition.{spec_for(name).partition_by[0]}"

    def files(v: int | None) -> dict[str, str]:
        actions = pa.table(lake.table(name, v).get_add_actions(flatten=True))
        return dict(zip(actions.column("path").to_pylist(),
                        actions.column(column).to_pylist(), strict=True))

    before, now = files(version), files(None)
    return sorted({p for f, p in now.items() if f not in before}
                  | {p for f, p in before.items() if f not in now})


def silver_since(lake: Lake, version: int, cutoff: datetime) -> pa.Table:
    """Silver events before ``cutoff`` that were not in ``silver/interactions`` at
    ``version`` (:func:`jobs.foldin.new_events` over the partitions changed since)."""
    name = SILVER_INTERACTIONS.name
    dates = changed_partitions(lake, name, version)
    if not dates:
        return SILVER_INTERACTIONS.schema.empty_table().select(EVENT_COLUMNS)
    before = lake.read_arrow(name, dates, ["event_id"], version=version).column("event_id")
    return new_events(lake.read_arrow(name, dates, EVENT_COLUMNS), before, cutoff)


def settings_key(settings: Settings) -> dict[str, Any]:
    """The settings that shape an hourly release (part of its id)."""
    return {"matrix": settings.matrix.model_dump(), "als": settings.als.model_dump(),
            "candidates": settings.candidates.model_dump(), "seed": settings.seed,
            "surfaces": {k: v.model_dump() for k, v in sorted(settings.surfaces.items())}}


def _decode(ids: np.ndarray) -> list[str]:
    return [x.decode("utf-8") for x in ids.tolist()]


def candidate_users(spark: SparkSession, window_events: DataFrame, users: pa.Table,
                    settings: Settings) -> DataFrame:
    """``user_id, vector, history, excluded, segment`` rows for :func:`jobs.candidates.
    transform`: history and exclusions from the window's events, plus the items of the new
    events (``users.recent``) excluded."""
    from pyspark.sql import functions as F

    from jobs.candidates import user_rows

    history = user_rows(window_events, settings.candidates)
    empty = F.array().cast("array<string>")
    return (spark.createDataFrame(users).join(history, "user_id", "left")
            .select("user_id", "vector", "segment", F.coalesce("history", empty)
                    .alias("history"),
                    F.array_union(F.coalesce("excluded", empty), F.coalesce("recent", empty))
                    .alias("excluded"))
            .repartition(max(1, settings.spark.shuffle_partitions), "user_id"))


def check_item_side(lake: Lake, rel: Release, base_ds: str) -> None:
    """Refuse a release without item vectors, or whose model is not the gold one of
    ``base_ds`` (candidates read the gold tables of ``base_ds``).

    Raises:
        FoldInError: as above.
    """
    if rel.item_vectors is None:
        raise FoldInError(f"release {rel.id} has no item vectors to fold users into")
    gold = set(lake.read_arrow(ITEM_EMBEDDINGS.name, [base_ds], ["model_version"])
               .column("model_version").to_pylist())
    served = (rel.manifest.get("model_versions") or {}).get("embeddings")
    if served and gold != {served}:
        raise FoldInError(f"gold/item_embeddings ds={base_ds} holds {sorted(gold)} but "
                          f"release {rel.id} serves {served}")


def fold_users(rel: Release, matrix: pa.Table, users: list[str], settings: Settings
               ) -> tuple[np.ndarray, np.ndarray, list[list[float] | None]]:
    """Fold the users' matrix rows into vectors with the release's item vectors fixed.

    Returns:
        ``(vectors (B, F), has (B,), retrieval)``: ``retrieval`` is the vector each user is
        retrieved with: the folded one, else (no usable pair) the parent's, else None.
    """
    item_ids = _decode(rel.item_ids)
    has_vec = np.asarray(rel.item_has_vector)
    item_row = {item: i for i, item in enumerate(item_ids) if has_vec[i]}
    vectors, has = fold_vectors(np.asarray(rel.item_vectors),
                                foldin_matrix(matrix, users, item_row, len(item_ids)),
                                settings.als)
    retrieval: list[list[float] | None] = []
    for i, user in enumerate(users):
        row = rel.user_row(user)
        if has[i]:
            retrieval.append(vectors[i].tolist())
        elif row >= 0 and rel.user_has_vector is not None and rel.user_has_vector[row]:
            retrieval.append(np.asarray(rel.user_vectors[row]).tolist())
        else:
            retrieval.append(None)
    return vectors, has, retrieval


def refreshed_lists(spark: SparkSession, settings: Settings, lake: Lake, rel: Release,
                    base_ds: str, ds: str, users_df: DataFrame, users: list[str]
                    ) -> dict[str, pa.Table]:
    """Every surface's new lists for ``users``: candidates from the item side of ``base_ds``
    (``gold/item_context``), scored by the ranker of ``base_ds`` and ordered by the
    surfaces' rules (:func:`jobs.topn.ranked_topn`); a user left without a list keeps
    the parent's minus the items excluded for them (:func:`jobs.foldin.backfill_lists`)."""
    from jobs import topn as topn_job
    from jobs.candidates import transform as candidates_transform
    from jobs.item_side import read_item_context

    users_df = users_df.cache()
    context = read_item_context(lake, base_ds, settings)
    cands = candidates_transform(users_df, spark.sparkContext.broadcast(context.retrieval()),
                                 settings.candidates, ds)
    # About USERS_PER_PARTITION users a partition (a handful of users need no more tasks)
    parts = max(1, min(settings.spark.shuffle_partitions, len(users) // USERS_PER_PARTITION))
    top = topn_job.ranked_topn(spark, cands, spark.sparkContext.broadcast(context.meta()),
                               settings, base_ds, ds, parts).toArrow()
    blocked = {r["user_id"]: set(r["excluded"] or ())
               for r in users_df.select("user_id", "excluded").toArrow().to_pylist()}
    users_df.unpersist()
    columns = ["user_id", "item_id", "score", "rank", "sources"]
    empty = pa.schema([top.schema.field(c) for c in columns]).empty_table()
    out = {}
    for surface in sorted({*rel.surfaces, *top.column("surface").to_pylist()}):
        mine = top.filter(pc.equal(top.column("surface"), surface)).select(columns) \
            if top.num_rows else empty
        previous = {}
        if surface in rel.surfaces:
            for user in users:
                items_, scores, masks = rel.topn(surface, rel.user_row(user))
                previous[user] = [(rel.item_id(int(i)), float(sc), rel.sources_names(int(m)))
                                  for i, sc, m in zip(items_, scores, masks, strict=True)]
        out[surface] = backfill_lists(mine, users, previous, blocked)
    return out
