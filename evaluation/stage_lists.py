"""The recommendation lists of each evaluated stage for the holdout users: the embedding
model's, popularity's, every retrieval strategy's and the merged candidates', and every
served surface's (read from ``gold/candidates`` and ``gold/topn``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from algorithms.topk import topk_inner_product
from conf.recs import STRATEGIES
from evaluation.embedding_model import EmbeddingModel
from evaluation.holdout import (
    Holdout,
    padded_lists,
)
from jobs.lake import Lake, delta_dataset
from jobs.tables import (
    CANDIDATES,
    TOPN,
)

log = logging.getLogger(__name__)

MODEL, POPULARITY, MERGED = "model", "popularity", "merged"
GATE_PREFIX = "gate"


def strategy_stage(name: str) -> str:
    return f"strategy/{name}"


def surface_stage(name: str) -> str:
    return f"topn/{name}"


def read_partition(lake: Lake, table: str, ds: str, columns: list[str],
                   users: Iterable[str] | None = None) -> pa.Table | None:
    """Rows of ``table`` with ``ds = <ds>`` (optionally only ``users``), ``None`` if absent.

    Works for tables declared elsewhere or partitioned by more than ``ds`` (``gold/topn``).
    """
    if not lake.exists(table):
        return None
    dataset = delta_dataset(lake.table(table), [("ds", "=", ds)])
    filt = None if users is None else pc.field("user_id").isin(list(users))
    got = dataset.to_table(columns=columns, filter=filt)
    return got if got.num_rows else None


# -- recommendation lists of each stage -----------------------------------------------------
def model_lists(model: EmbeddingModel, holdout: Holdout, width: int,
                fallback: np.ndarray | None = None) -> np.ndarray:
    """The model's top-``width`` lists (index rows, (U, width)), training items excluded.

    Args:
        model: the embedding model.
        holdout: the evaluated users and the item index.
        width: list length K.
        fallback: optional (U, >= K) lists given to users without a vector (the service
            serves them popular items); without it their lists are empty.

    Raises:
        ValueError: the model has an item the holdout's index lacks, or non-finite vectors.
    """
    to_index = holdout.items.rows(model.item_id_array)
    if (to_index < 0).any():
        raise ValueError(f"{int((to_index < 0).sum())} model items are not in the item index")
    exclude = holdout.seen[:, to_index]
    rows, _ = model.recommend(holdout.user_ids, width, exclude)
    recs = np.where(rows >= 0, to_index[np.maximum(rows, 0)], -1)
    if fallback is not None:
        unknown = model.user_rows(list(holdout.user_ids)) < 0
        recs[unknown] = fallback[unknown, :width]
    return recs


def popularity_lists(holdout: Holdout, width: int) -> np.ndarray:
    """Most popular catalogue items (training users per item, ties: lower item row first),
    training items excluded; index rows (U, width)."""
    n_cat = holdout.items.n_catalogue
    if n_cat == 0 or holdout.n_users == 0:
        return np.full((holdout.n_users, width), -1, np.int64)
    ones = np.ones((holdout.n_users, 1), np.float32)
    pop = holdout.item_users[:n_cat, None].astype(np.float32)
    rows, _ = topk_inner_product(ones, pop, min(width, n_cat),
                                 exclude=holdout.seen[:, :n_cat])
    out = np.full((holdout.n_users, width), -1, np.int64)
    out[:, : rows.shape[1]] = rows
    return out


def candidate_lists(table: pa.Table, holdout: Holdout, width: int) -> dict[str, np.ndarray]:
    """``merged`` (by rank) and ``strategy/<s>`` (by the strategy's score) lists from
    ``gold/candidates`` rows of the evaluated users."""
    upos = {u: i for i, u in enumerate(holdout.user_ids)}
    users = np.array([upos.get(u, -1) for u in table["user_id"].to_pylist()], np.int64)
    items = holdout.items.rows(table["item_id"])
    out = {MERGED: padded_lists(users, items, table["rank"].to_numpy(), holdout.n_users,
                                width)}
    for name in STRATEGIES:
        column = f"{name}_score"
        if column not in table.column_names:
            continue
        score = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
        found = ~np.isnan(score)
        out[strategy_stage(name)] = padded_lists(
            np.where(found, users, -1), items, -np.nan_to_num(score), holdout.n_users, width)
    return out


def topn_lists(table: pa.Table, holdout: Holdout, width: int) -> dict[str, np.ndarray]:
    """``topn/<surface>`` lists (by rank) from ``gold/topn`` rows of the evaluated users."""
    upos = {u: i for i, u in enumerate(holdout.user_ids)}
    out = {}
    for surface in sorted(set(table["surface"].to_pylist())):
        part = table.filter(pc.equal(table["surface"], surface))
        users = np.array([upos.get(u, -1) for u in part["user_id"].to_pylist()], np.int64)
        out[surface_stage(surface)] = padded_lists(
            users, holdout.items.rows(part["item_id"]), part["rank"].to_numpy(),
            holdout.n_users, width)
    return out


def stage_lists(model: EmbeddingModel, holdout: Holdout, tables: Mapping[str, pa.Table],
                width: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(stage, (U, width) lists)`` of every stage, one at a time (a stage's lists can be
    dropped once scored). The model stage is left out when its vectors are not finite."""
    popular = popularity_lists(holdout, width)
    if model.non_finite():
        log.error("embedding vectors hold %d non-finite values; stage %s scores NaN",
                  model.non_finite(), MODEL)
    else:
        yield MODEL, model_lists(model, holdout, width, fallback=popular)
    yield POPULARITY, popular
    if CANDIDATES.name in tables:
        yield from candidate_lists(tables[CANDIDATES.name], holdout, width).items()
    if TOPN.name in tables:
        yield from topn_lists(tables[TOPN.name], holdout, width).items()


def read_stage_tables(lake: Lake, ds: str, users: list[str]) -> dict[str, pa.Table]:
    """``gold/candidates`` and ``gold/topn`` rows of ``ds`` for ``users`` (missing tables
    are left out with a warning)."""
    wanted = {CANDIDATES.name: ["user_id", "item_id", "rank", *[f"{s}_score" for s in STRATEGIES]],
              TOPN.name: ["user_id", "item_id", "rank", "surface"]}
    tables = {}
    for name, columns in wanted.items():
        got = read_partition(lake, name, ds, columns, users)
        if got is None:
            log.warning("%s has no rows for ds=%s and the evaluated users: its stages are "
                        "skipped", name, ds)
        else:
            tables[name] = got
    return tables
