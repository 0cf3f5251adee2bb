"""Every user's segment as of a date: the one place that reads ``silver/users`` for it.

The users snapshot is the newest at or before ``ds`` (:mod:`jobs.asof`), and a user's key is
:func:`algorithms.segments.segment_of` of their attributes under the rules of
``popularity.segments`` (the service computes the same key). It is evaluated once per
distinct combination of the rules' attribute values (a few hundred at most for sensible
rules), not once per user, and joined back in Arrow.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc

from algorithms.segments import segment_of
from conf import Settings
from conf.retrieval import SegmentRule
from jobs.asof import latest_partition_at_or_before
from jobs.lake import Lake
from jobs.tables import SILVER_USERS

log = logging.getLogger(__name__)

_MISSING = "\x00missing"
"""Stands for a missing attribute while grouping and joining (Arrow's joins never match
nulls); no attribute value contains a NUL."""
SCHEMA = pa.schema([pa.field("user_id", pa.string(), False),
                    pa.field("segment", pa.string(), False)])


def segments_as_of(lake: Lake, settings: Settings, ds: str,
                   user_ids: list[str] | None = None) -> pa.Table:
    """``user_id, segment`` of the users known as of ``ds`` (only ``user_ids`` if given).

    Returns:
        One row per user of the snapshot; no rows when no snapshot is at or before ``ds``.
    """
    snapshot = latest_partition_at_or_before(lake, SILVER_USERS.name, ds)
    if snapshot is None:
        log.warning("silver/users has no snapshot at or before %s: no user has a segment", ds)
        return SCHEMA.empty_table()
    users = lake.read_arrow(SILVER_USERS.name, [snapshot], ["user_id", "attributes"])
    if user_ids is not None:
        users = users.filter(pc.is_in(users.column("user_id"), pa.array(user_ids, pa.string())))
    return segment_table(users, list(settings.popularity.segments))


def segment_table(users: pa.Table, rules: list[SegmentRule]) -> pa.Table:
    """``user_id, segment`` for ``user_id, attributes`` (map) rows under ``rules`` (pure)."""
    if users.num_rows == 0:
        return SCHEMA.empty_table()
    attributes = users.column("attributes").combine_chunks()
    names = [f"_a{i}" for i in range(len(rules))]
    # the last value of a repeated key wins, as dict(attributes) would have it
    keyed = pa.table({n: pc.fill_null(pc.map_lookup(attributes, r.attribute, "last"), _MISSING)
                      for n, r in zip(names, rules, strict=True)}) if rules else None
    if keyed is None:
        return pa.table({"user_id": users.column("user_id"),
                         "segment": pa.array([segment_of({}, rules)] * users.num_rows)},
                        schema=SCHEMA)
    combos = keyed.group_by(names).aggregate([])
    keys = [segment_of({r.attribute: row[n] for r, n in zip(rules, names, strict=True)
                        if row[n] != _MISSING}, rules) for row in combos.to_pylist()]
    lookup = combos.append_column("segment", pa.array(keys, pa.string()))
    joined = (keyed.append_column("user_id", users.column("user_id"))
              .append_column("_row", pa.array(range(users.num_rows)))
              .join(lookup, names, join_type="left outer", use_threads=False)
              .sort_by("_row"))
    return pa.table({"user_id": joined.column("user_id"), "segment": joined.column("segment")},
                    schema=SCHEMA)
