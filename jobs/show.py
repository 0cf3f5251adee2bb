"""``recpipe show``: a few users' recommendations and an item's similar items, with titles."""

from __future__ import annotations

import argparse

import pyarrow.compute as pc

from jobs.asof import latest_partition_at_or_before
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.tables import SILVER_ITEMS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe show", description=__doc__)
    parser.add_argument("--ds", required=True, type=parse_ds)
    parser.add_argument("--users", default="1,2,3", help="comma-separated user ids")
    parser.add_argument("--surface", default="home_feed")
    parser.add_argument("--similar", default="50", help="item id whose similar items to show")
    parser.add_argument("-n", type=int, default=10)
    add_common_args(parser)
    args = parser.parse_args(argv)
    lake = Lake(settings_from_args(args))
    items_ds = latest_partition_at_or_before(lake, SILVER_ITEMS.name, args.ds)
    titles = dict(zip(*lake.read_arrow(SILVER_ITEMS.name, [items_ds] if items_ds else [],
                                       columns=["item_id", "title"]).to_pydict().values(),
                      strict=True))
    topn = lake.read_arrow("gold/topn", [args.ds])
    topn = topn.filter(pc.equal(topn.column("surface"), args.surface))
    for user in args.users.split(","):
        rows = sorted((r for r in topn.filter(pc.equal(topn.column("user_id"), user))
                       .to_pylist()), key=lambda r: r["rank"])[: args.n]
        print(f"\nuser {user} ({args.surface}):")
        if not rows:
            print("  (no precomputed list: served from popular items)")
        for r in rows:
            print(f"  {r['rank']:>2}. {titles.get(r['item_id'], r['item_id'])[:48]:<48} "
                  f"{r['score']:7.3f}  {','.join(r['sources'])}")
    sim = lake.read_arrow("gold/similar_items", [args.ds])
    rows = sorted(sim.filter(pc.equal(sim.column("item_id"), args.similar)).to_pylist(),
                  key=lambda r: r["rank"])[: args.n]
    print(f"\nsimilar to {titles.get(args.similar, args.similar)}:")
    for r in rows:
        print(f"  {r['rank']:>2}. {titles.get(r['similar_item_id'], r['similar_item_id'])[:48]:<48}"
              f" {r['score']:7.3f}")
    return 0
