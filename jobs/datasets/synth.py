"""Synthetic interaction data of any size, with the structure a recommender should find.

The model, in short (every draw comes from ``numpy.random.default_rng`` seeded by ``seed``):

- **Catalogue**: ``items`` items with a power-law popularity: item of rank ``r`` (0-based,
  ranks shuffled over ids) has weight ``(r + 1) ** -zipf_exponent``. Each item has one latent
  taste (of ``tastes``), shown as its first category. A ``cold_item_fraction`` of items is
  created during the last 30% of the window and gets no event before its ``created_at``; the
  others exist before the window starts.
- **Users**: each has a latent taste and a log-normal activity level; an
  ``inactive_user_fraction`` has no events at all (half of them sign up inside the window).
  ``attributes.segment`` is the user's taste for 70% of users, a random taste otherwise.
- **Sessions**: events come in bursts. A session picks a user (by activity), a start time, a
  surface and a session taste (the user's with probability ``taste_affinity``); it holds a
  geometric number of events (mean ``mean_session_events``) spaced by exponential gaps (mean
  ``mean_gap_s`` seconds). Each event draws an item by popularity within the session taste
  (probability ``session_focus``) or within the whole catalogue.
- **Event types** (shares in :data:`EVENT_TYPE_SHARES`): views carry a log-normal dwell in
  seconds (median 20 s), ratings a 0.5-5 star value, higher on the user's taste.

Events are written in chunks of ``chunk_rows`` (one Parquet row group each), chunk ``c``
covering its own slice of the window, sorted by time within the chunk, so memory stays flat
for any ``events``. Same spec and seed give byte-identical tables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conf.errors import UsageError
from jobs.datasets.formats import (
    EVENT_TYPES,
    ITEMS_SCHEMA,
    RAW_EVENTS_SCHEMA,
    SURFACES,
    USERS_SCHEMA,
    UTC_TIMESTAMP,
    events_table,
    write_parquet,
    write_parquet_stream,
)

logger = logging.getLogger(__name__)

EVENT_TYPE_SHARES: dict[str, float] = {
    "view": 0.52, "click": 0.22, "skip": 0.10, "add_to_cart": 0.07, "rating": 0.05,
    "purchase": 0.04,
}
"""Expected share of each event type among all events (sums to 1)."""
SURFACE_SHARES: dict[str, float] = {
    "home_feed": 0.5, "similar_items": 0.2, "search": 0.2, "email": 0.1,
}
"""Share of sessions started on each surface (rating events have no surface)."""
TASTE_NAMES = ("books", "music", "film", "games", "sports", "garden", "kitchen", "fashion",
               "toys", "tech", "beauty", "travel")
COUNTRIES = (("US", 0.35), ("GB", 0.15), ("DE", 0.12), ("FR", 0.1), ("IN", 0.1),
             ("BR", 0.08), ("JP", 0.06), ("ES", 0.04))
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
DAY_S = 86_400
_COLD_FROM = 0.7
"""Cold items are created in the last ``1 - _COLD_FROM`` of the window."""
_PRE_WINDOW_S = 730 * DAY_S
"""Warm items and active users are created up to two years before the window."""


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. Sizes are counts; see the module docstring for the model."""

    users: int
    items: int
    events: int
    days: int
    seed: int
    end_date: date
    """Last day of the window (UTC); events fall in the ``days`` days ending with it."""
    tastes: int = 8
    zipf_exponent: float = 1.0
    taste_affinity: float = 0.8
    session_focus: float = 0.9
    inactive_user_fraction: float = 0.05
    cold_item_fraction: float = 0.05
    mean_session_events: float = 6.0
    mean_gap_s: float = 45.0
    chunk_rows: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("users", "items", "days", "tastes", "chunk_rows"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("events", "seed"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("taste_affinity", "session_focus", "inactive_user_fraction",
                     "cold_item_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("zipf_exponent", "mean_gap_s"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.mean_session_events < 1:
            raise UsageError(f"mean_session_events must be >= 1, got {self.mean_session_events}")

    @property
    def window_end_s(self) -> int:
        """Epoch seconds of the window's (exclusive) end: midnight UTC after ``end_date``."""
        end = datetime.combine(self.end_date + timedelta(days=1), datetime.min.time(), UTC)
        return int(end.timestamp())

    @property
    def window_start_s(self) -> int:
        """Epoch seconds of the window's (inclusive) start."""
        return self.window_end_s - self.days * DAY_S


@dataclass(frozen=True)
class Catalog:
    """Latent item structure; arrays of shape (M,)."""

    weight: np.ndarray
    """float64 popularity weight (Zipf by a shuffled rank)."""
    taste: np.ndarray
    """int64 latent taste in ``[0, tastes)``."""
    created_s: np.ndarray
    """int64 creation time, epoch seconds."""
    cold: np.ndarray
    """bool, created inside the window."""


@dataclass(frozen=True)
class Population:
    """Latent user structure; arrays of shape (N,)."""

    activity: np.ndarray
    """float64 relative session rate; 0 for users without events."""
    taste: np.ndarray
    """int64 latent taste."""
    created_s: np.ndarray
    """int64 sign-up time, epoch seconds."""


def taste_name(k: int) -> str:
    """Readable category name of latent taste ``k``."""
    return TASTE_NAMES[k] if k < len(TASTE_NAMES) else f"category_{k}"


def make_catalog(spec: SynthSpec) -> Catalog:
    """Draw the items' popularity, taste and creation time."""
    rng = np.random.default_rng([spec.seed, 0])
    m = spec.items
    rank = rng.permutation(m)
    weight = (rank + 1.0) ** -spec.zipf_exponent
    taste = rng.integers(spec.tastes, size=m)
    cold = np.zeros(m, dtype=bool)
    n_cold = min(m - 1, round(spec.cold_item_fraction * m))
    cold[rng.choice(m, size=n_cold, replace=False)] = True
    start, end = spec.window_start_s, spec.window_end_s
    created = start - rng.integers(1, _PRE_WINDOW_S, size=m)
    cold_from = start + int(_COLD_FROM * (end - start))
    created[cold] = rng.integers(cold_from, end, size=n_cold)
    return Catalog(weight=weight, taste=taste, created_s=created, cold=cold)


def make_population(spec: SynthSpec) -> Population:
    """Draw the users' activity, taste and sign-up time."""
    rng = np.random.default_rng([spec.seed, 1])
    n = spec.users
    activity = rng.lognormal(0.0, 1.0, size=n)
    taste = rng.integers(spec.tastes, size=n)
    start, end = spec.window_start_s, spec.window_end_s
    created = start - rng.integers(1, _PRE_WINDOW_S, size=n)
    n_inactive = min(n - 1, round(spec.inactive_user_fraction * n))
    inactive = rng.choice(n, size=n_inactive, replace=False)
    activity[inactive] = 0.0
    late = inactive[: n_inactive // 2]
    created[late] = rng.integers(start, end, size=late.shape[0])
    return Population(activity=activity, taste=taste, created_s=created)


class ItemSampler:
    """Draw items by popularity, within a taste or over the whole catalogue."""

    def __init__(self, catalog: Catalog, tastes: int) -> None:
        self._pools: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}
        everything = np.arange(catalog.weight.shape[0])
        warm = np.flatnonzero(~catalog.cold)
        self._pools[(-1, False)] = self._pool(everything, catalog.weight)
        self._pools[(-1, True)] = self._pool(warm, catalog.weight)
        for k in range(tastes):
            for warm_only, ids in ((False, everything), (True, warm)):
                mine = ids[catalog.taste[ids] == k]
                if mine.shape[0]:
                    self._pools[(k, warm_only)] = self._pool(mine, catalog.weight)

    @staticmethod
    def _pool(ids: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cdf = np.cumsum(weight[ids])
        return ids, cdf / cdf[-1]

    def draw(self, rng: np.random.Generator, taste: np.ndarray, warm_only: bool) -> np.ndarray:
        """Items for each entry of ``taste`` (shape (n,); -1 = any taste), int64 (n,)."""
        out = np.empty(taste.shape[0], dtype=np.int64)
        u = rng.random(taste.shape[0])
        for k in np.unique(taste):
            ids, cdf = self._pools.get((int(k), warm_only), self._pools[(-1, warm_only)])
            at = taste == k
            out[at] = ids[np.minimum(np.searchsorted(cdf, u[at], side="right"), len(ids) - 1)]
        return out


def _session_lengths(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Geometric session lengths (>= 1, mean ``mean``) summing to exactly ``n``."""
    parts, total = [], 0
    while total < n:
        draw = rng.geometric(1.0 / mean, size=int((n - total) / mean * 1.2) + 16)
        parts.append(draw)
        total += int(draw.sum())
    lengths = np.concatenate(parts)
    keep = int(np.searchsorted(np.cumsum(lengths), n)) + 1
    lengths = lengths[:keep]
    lengths[-1] -= int(lengths.sum()) - n
    return lengths


def generate_chunk(
    spec: SynthSpec,
    catalog: Catalog,
    population: Population,
    sampler: ItemSampler,
    chunk: int,
    n: int,
    span_s: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Draw ``n`` events whose sessions start within ``span_s`` (epoch seconds, [a, b)).

    Returns:
        Arrays of shape (n,), sorted by time: ``user``, ``item`` (int64 indices), ``type``
        (int64 index into :data:`EVENT_TYPES`), ``value`` (float64, NaN = none), ``ts``
        (int64 epoch s), ``surface`` (int64 index into :data:`SURFACES`, -1 = none).
    """
    rng = np.random.default_rng([spec.seed, 2, chunk])
    lengths = _session_lengths(rng, n, spec.mean_session_events)
    s = lengths.shape[0]
    user_cdf = np.cumsum(population.activity)
    user_cdf /= user_cdf[-1]
    s_user = np.searchsorted(user_cdf, rng.random(s), side="right")
    s_start = rng.integers(span_s[0], max(span_s[1], span_s[0] + 1), size=s)
    s_surface = np.searchsorted(np.cumsum(list(SURFACE_SHARES.values())), rng.random(s))
    s_taste = np.where(rng.random(s) < spec.taste_affinity, population.taste[s_user],
                       rng.integers(spec.tastes, size=s))

    session = np.repeat(np.arange(s), lengths)
    gaps = np.cumsum(rng.exponential(spec.mean_gap_s, size=n))
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ts = s_start[session] + np.floor(gaps - gaps[first][session]).astype(np.int64)
    ts = np.minimum(ts, spec.window_end_s - 1)
    user = s_user[session]

    e_taste = np.where(rng.random(n) < spec.session_focus, s_taste[session], -1)
    item = sampler.draw(rng, e_taste, warm_only=False)
    early = ts < catalog.created_s[item]
    item[early] = sampler.draw(rng, e_taste[early], warm_only=True)

    share_cdf = np.cumsum([EVENT_TYPE_SHARES[t] for t in EVENT_TYPES])
    etype = np.minimum(np.searchsorted(share_cdf, rng.random(n)), len(EVENT_TYPES) - 1)
    value = np.full(n, np.nan)
    views = etype == EVENT_TYPES.index("view")
    value[views] = np.clip(np.round(rng.lognormal(math.log(20.0), 1.0, views.sum()), 1),
                           0.1, 3600.0)
    rated = etype == EVENT_TYPES.index("rating")
    liked = catalog.taste[item[rated]] == population.taste[user[rated]]
    stars = np.where(liked, 4.0, 3.0) + rng.normal(0.0, 1.0, rated.sum())
    value[rated] = np.clip(np.round(stars * 2.0) / 2.0, 0.5, 5.0)
    surface = np.where(rated, -1, s_surface[session])

    order = np.argsort(ts, kind="stable")
    return {"user": user[order], "item": item[order], "type": etype[order],
            "value": value[order], "ts": ts[order], "surface": surface[order]}


def _ids(prefix: str, n: int) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pa.array(np.arange(n)).cast(pa.string()), "")


def _chunks(spec: SynthSpec, catalog: Catalog, population: Population) -> Iterator[pa.Table]:
    sampler = ItemSampler(catalog, spec.tastes)
    user_ids, item_ids = _ids("u", spec.users), _ids("i", spec.items)
    type_names = pa.array(EVENT_TYPES, pa.string())
    surface_names = pa.array([*SURFACES, None], pa.string())  # index -1 -> None
    start, span = spec.window_start_s, spec.window_end_s - spec.window_start_s
    for chunk, first in enumerate(range(0, spec.events, spec.chunk_rows)):
        n = min(spec.chunk_rows, spec.events - first)
        slice_s = (start + span * first // spec.events, start + span * (first + n) // spec.events)
        draw = generate_chunk(spec, catalog, population, sampler, chunk, n, slice_s)
        surface_index = np.where(draw["surface"] < 0, len(SURFACES), draw["surface"])
        yield events_table(
            event_id=pc.binary_join_element_wise(
                f"syn{spec.seed}-", pa.array(np.arange(first, first + n)).cast(pa.string()), ""
            ),
            user_id=user_ids.take(pa.array(draw["user"])),
            item_id=item_ids.take(pa.array(draw["item"])),
            event_type=type_names.take(pa.array(draw["type"])),
            epoch_s=draw["ts"],
            value=draw["value"],
            surface=surface_names.take(pa.array(surface_index)),
        )
        logger.info("generated events %d-%d of %d", first, first + n, spec.events)


def _string_map(keys: tuple[str, ...], columns: list[pa.Array]) -> pa.Array:
    """A map array whose row ``i`` is ``{keys[j]: columns[j][i]}``."""
    n, f = len(columns[0]), len(keys)
    offsets = pa.array(np.arange(0, n * f + 1, f, dtype=np.int32))
    key_arr = pa.array(np.tile(np.array(keys, dtype=object), n), pa.string())
    values = pa.concat_arrays([c.cast(pa.string()) for c in columns])
    order = pa.array(np.arange(n * f).reshape(f, n).T.ravel())  # interleave per row
    return pa.MapArray.from_arrays(offsets, key_arr, values.take(order))


def items_table(spec: SynthSpec, catalog: Catalog) -> pa.Table:
    """The items table (ITEMS_SCHEMA) of a catalogue."""
    rng = np.random.default_rng([spec.seed, 3])
    m = spec.items
    names = pa.array([taste_name(k) for k in range(spec.tastes)], pa.string())
    first_cat = names.take(pa.array(catalog.taste))
    second = rng.integers(spec.tastes, size=m)
    has_second = (rng.random(m) < 0.3) & (second != catalog.taste)
    counts = 1 + has_second.astype(np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    flat = np.repeat(catalog.taste, counts)
    flat[np.cumsum(counts)[has_second] - 1] = second[has_second]
    categories = pa.ListArray.from_arrays(offsets, names.take(pa.array(flat)))
    title = pc.binary_join_element_wise(pc.utf8_capitalize(first_cat),
                                        _ids(" item ", m), "")
    price = np.round(rng.lognormal(math.log(20.0), 0.8, m), 2)
    brand = _ids("brand", int(rng.integers(10, 10 + max(m // 20, 1))))
    attributes = _string_map(
        ("brand", "price"),
        [brand.take(pa.array(rng.integers(len(brand), size=m))), pa.array(price)],
    )
    boost = np.where(rng.random(m) < 0.02, 1.5, 1.0)
    return pa.Table.from_arrays(
        [
            _ids("i", m), title, categories, attributes,
            pa.array(rng.random(m) >= 0.03),
            pa.array(catalog.created_s * 1_000_000, pa.int64()).cast(UTC_TIMESTAMP),
            pa.array(boost),
        ],
        schema=ITEMS_SCHEMA,
    )


def users_table(spec: SynthSpec, population: Population) -> pa.Table:
    """The users table (USERS_SCHEMA) of a population."""
    rng = np.random.default_rng([spec.seed, 4])
    n = spec.users
    codes, shares = zip(*COUNTRIES, strict=True)
    country = pa.array(codes).take(pa.array(
        np.minimum(np.searchsorted(np.cumsum(shares), rng.random(n)), len(codes) - 1)))
    age = pa.array(AGE_BANDS).take(pa.array(rng.integers(len(AGE_BANDS), size=n)))
    segment = np.where(rng.random(n) < 0.7, population.taste, rng.integers(spec.tastes, size=n))
    names = pa.array([taste_name(k) for k in range(spec.tastes)], pa.string())
    attributes = _string_map(("country", "age_band", "segment"),
                             [country, age, names.take(pa.array(segment))])
    created = pa.array(population.created_s * 1_000_000, pa.int64()).cast(UTC_TIMESTAMP)
    return pa.Table.from_arrays([_ids("u", n), attributes, created], schema=USERS_SCHEMA)


def generate(spec: SynthSpec, out_dir: Path) -> dict[str, int]:
    """Write ``events.parquet``, ``items.parquet`` and ``users.parquet`` into ``out_dir``.

    Events are streamed chunk by chunk; memory is bounded by ``chunk_rows`` and the sizes of
    the user and item tables, not by ``events``.

    Returns:
        Row counts ``{"events": ..., "items": ..., "users": ...}``.
    """
    out_dir = Path(out_dir)
    catalog, population = make_catalog(spec), make_population(spec)
    write_parquet(items_table(spec, catalog), out_dir / "items.parquet", ITEMS_SCHEMA)
    write_parquet(users_table(spec, population), out_dir / "users.parquet", USERS_SCHEMA)
    rows = write_parquet_stream(
        _chunks(spec, catalog, population), out_dir / "events.parquet", RAW_EVENTS_SCHEMA
    )
    return {"events": rows, "items": spec.items, "users": spec.users}
