from collections import Counter
from datetime import date

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.datasets.formats import ITEMS_SCHEMA, RAW_EVENTS_SCHEMA, USERS_SCHEMA
from jobs.datasets.synth import SynthSpec, generate, make_population, taste_name

SPEC = SynthSpec(users=300, items=1000, events=20_000, days=14, seed=7,
                 end_date=date(2024, 5, 31), chunk_rows=6_000)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    counts = generate(SPEC, out)
    return counts, {n: pq.read_table(out / f"{n}.parquet") for n in ("events", "items", "users")}


def test_counts_and_schemas(synth):
    counts, tables = synth
    assert counts == {"events": 20_000, "items": 1000, "users": 300}
    assert tables["events"].schema.equals(RAW_EVENTS_SCHEMA)
    assert tables["items"].schema.equals(ITEMS_SCHEMA)
    assert tables["users"].schema.equals(USERS_SCHEMA)
    ids = tables["events"].column("event_id").to_pylist()
    assert len(set(ids)) == len(ids)


def test_same_seed_same_output_other_seed_differs(tmp_path):
    small = SynthSpec(users=50, items=80, events=3_000, days=3, seed=11,
                      end_date=date(2024, 1, 31), chunk_rows=1_000)
    generate(small, tmp_path / "a")
    generate(small, tmp_path / "b")
    other = SynthSpec(**{**small.__dict__, "seed": 12})
    generate(other, tmp_path / "c")
    for name in ("events", "items", "users"):
        a = pq.read_table(tmp_path / "a" / f"{name}.parquet")
        b = pq.read_table(tmp_path / "b" / f"{name}.parquet")
        assert a.equals(b), name
    a = pq.read_table(tmp_path / "a" / "events.parquet")
    c = pq.read_table(tmp_path / "c" / "events.parquet")
    assert a.column("item_id").to_pylist() != c.column("item_id").to_pylist()


def test_power_law_catalogue(synth):
    _, tables = synth
    counts = np.sort(np.array(list(Counter(tables["events"].column("item_id").to_pylist())
                                   .values())))[::-1]
    # Uniform popularity would give the top 1% (10 of 1,000 items) about 1% of the events;
    # Zipf with exponent 1 gives about H(10) / H(1000) = 2.93 / 7.49 = 39%.
    assert counts[:10].sum() / 20_000 > 0.2


def test_event_types_and_values(synth):
    _, tables = synth
    rows = tables["events"].select(["event_type", "value", "surface"]).to_pylist()
    kinds = Counter(r["event_type"] for r in rows)
    assert set(kinds) == {"view", "click", "add_to_cart", "purchase", "rating", "skip"}
    assert kinds["view"] > kinds["click"] > kinds["add_to_cart"] > kinds["purchase"]
    for r in rows:
        if r["event_type"] == "view":
            assert 0 < float(r["value"]) <= 3600
        elif r["event_type"] == "rating":
            assert float(r["value"]) in {0.5 * k for k in range(1, 11)}
            assert r["surface"] is None
        else:
            assert r["value"] is None
            assert r["surface"] in {"home_feed", "similar_items", "search", "email"}


def test_timestamps_inside_the_window(synth):
    _, tables = synth
    ts = tables["events"].column("ts").to_pylist()
    # 14 days ending 2024-05-31 (inclusive) start 2024-05-18 00:00 UTC
    assert min(ts) >= "2024-05-18T00:00:00Z"
    assert max(ts) <= "2024-05-31T23:59:59Z"
    assert len({t[:10] for t in ts}) == 14


def test_users_favour_items_of_their_taste(synth):
    _, tables = synth
    item_taste = {r["item_id"]: r["categories"][0] for r in tables["items"].to_pylist()}
    user_taste = {f"u{i}": taste_name(int(t)) for i, t in enumerate(make_population(SPEC).taste)}
    events = tables["events"].select(["user_id", "item_id"]).to_pylist()
    same = np.mean([item_taste[e["item_id"]] == user_taste[e["user_id"]] for e in events])
    assert same > 0.5  # 8 tastes: about 1/8 if users ignored their taste


def test_events_come_in_sessions(synth):
    _, tables = synth
    users = np.array(tables["events"].column("user_id").to_pylist())
    t = np.array([s.rstrip("Z") for s in tables["events"].column("ts").to_pylist()],
                 dtype="datetime64[s]").astype(np.int64)
    order = np.lexsort((t, users))
    users, t = users[order], t[order]
    gaps = np.diff(t)[users[1:] == users[:-1]]
    # 20,000 events of ~285 active users spread uniformly over 14 days would be ~1 hour apart
    assert (gaps < 600).mean() > 0.6


def test_cold_items_and_users_without_events(synth):
    _, tables = synth
    items = {r["item_id"]: r["created_at"] for r in tables["items"].to_pylist()}
    cold = [i for i, t in items.items() if t.isoformat() >= "2024-05-18"]
    assert len(cold) >= 20
    for e in tables["events"].select(["item_id", "ts"]).to_pylist():
        assert e["ts"] >= items[e["item_id"]].strftime("%Y-%m-%dT%H:%M:%SZ")
    active = set(tables["events"].column("user_id").to_pylist())
    assert 10 <= 300 - len(active) <= 40
    assert active <= set(tables["users"].column("user_id").to_pylist())


def test_events_are_streamed_in_row_groups(tmp_path):
    spec = SynthSpec(users=40, items=60, events=10_000, days=2, seed=1,
                     end_date=date(2024, 1, 2), chunk_rows=3_000)
    generate(spec, tmp_path)
    parquet = pq.ParquetFile(tmp_path / "events.parquet")
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    assert sizes == [3_000, 3_000, 3_000, 1_000]
    for i in range(parquet.num_row_groups):
        ts = parquet.read_row_group(i, columns=["ts"]).column("ts").to_pylist()
        assert ts == sorted(ts)


@pytest.mark.parametrize(("field", "value"), [("users", 0), ("events", -1), ("days", 0),
                                              ("taste_affinity", 1.5)])
def test_spec_rejects_bad_values(field, value):
    args = {**SPEC.__dict__, field: value}
    with pytest.raises(ValueError, match=rf"{field} must be .* got {value}"):
        SynthSpec(**args)
