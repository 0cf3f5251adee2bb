"""Business rules per surface: each rule on a list whose right answer is known, and the
vectorized rules against their first, one-user-at-a-time form on random blocks."""

import numpy as np
import pyarrow as pa
import pytest

from conf.recs import SurfaceSettings
from jobs.rules import EXPLORATION, ItemMeta, user_rng, with_exploration
from jobs.topn import surface_order, surface_rows, user_surfaces
from tests.jobs import rules_reference as ref

ITEMS = [f"i{j}" for j in range(30)]
SCORES = [30.0 - j for j in range(30)]  # i0 best
SOURCES = [["ann"]] * 30


def _dicts(available=None, boost=None, category=None):
    return (available or {}, boost or {},
            category or {i: "c" + str(j % 3) for j, i in enumerate(ITEMS)})


def _meta(**kw):
    return ItemMeta.from_dicts(*_dicts(**kw))


def _plain(**kw):
    return SurfaceSettings(**({"n": 10, "max_per_category": 0, "exploration_share": 0.0}
                              | kw))


def one(rule, meta=None, user="u", seed=1):
    """The surface's list for one user of ITEMS."""
    return user_surfaces(user, ITEMS, SCORES, SOURCES, meta or _meta(), {"s": rule}, seed,
                         "d")["s"]


def _ids(rows):
    return [r[0] for r in rows]


def test_unavailable_items_never_appear():
    out = one(_plain(n=30), _meta(available={"i0": False, "i3": False}))
    assert "i0" not in _ids(out) and "i3" not in _ids(out)
    assert len(out) == 28


def test_boost_moves_an_item_up():
    out = one(_plain(), _meta(boost={"i9": 2.0}))  # 21 * 2 = 42 > 30
    assert _ids(out)[0] == "i9" and out[0][1] == 42.0


def _cat(item):
    j = int(item[1:])
    return "a" if j < 20 else ("b" if j < 25 else "c")


def test_diversity_cap_holds_in_the_window():
    out = one(_plain(n=12, max_per_category=3, diversity_window=9),
              _meta(category={i: _cat(i) for i in ITEMS}))
    head = [_cat(i) for i in _ids(out)[:9]]
    assert head.count("a") == head.count("b") == head.count("c") == 3
    assert _ids(out)[:4] == ["i0", "i1", "i2", "i20"]
    # after the window the deferred items follow in their order
    assert _ids(out)[9:] == ["i3", "i4", "i5"]


def test_diversity_cap_falls_back_when_categories_run_out():
    out = one(_plain(n=5, max_per_category=2, diversity_window=5),
              _meta(category={i: ("a" if int(i[1:]) < 28 else "b") for i in ITEMS}))
    assert _ids(out) == ["i0", "i1", "i28", "i29", "i2"]


def test_exploration_share_is_exact_and_marked():
    rule = _plain(n=20, diversity_window=20, exploration_share=0.25)
    out = one(rule, seed=7)
    explored = [r for r in out if EXPLORATION in r[2]]
    assert len(explored) == 5  # round(0.25 * 20)
    assert all(int(r[0][1:]) >= 20 for r in explored)  # picked from below the window
    assert len(set(_ids(out))) == len(out) == 20
    assert one(rule, seed=7) == out  # same seed, user, date: same picks
    assert _ids(one(rule, user="v", seed=7)) != _ids(out)


def test_email_does_not_repeat_the_home_feed_first_slots():
    surfaces = {"email": _plain(n=5, exclude_from="home_feed", exclude_first=3),
                "home_feed": _plain(n=10)}
    assert surface_order(surfaces) == ["home_feed", "email"]
    lists = user_surfaces("u", ITEMS, SCORES, SOURCES, _meta(), surfaces, 1, "d")
    assert _ids(lists["home_feed"])[:3] == ["i0", "i1", "i2"]
    assert _ids(lists["email"]) == ["i3", "i4", "i5", "i6", "i7"]


def test_user_rng_differs_by_surface():
    a = user_rng(1, "u", "d", "home_feed").random()
    b = user_rng(1, "u", "d", "email").random()
    assert a != b and isinstance(a, float) and np.isfinite(b)


def test_exploration_is_appended_to_the_marked_rows_sources():
    sources = pa.array([["ann"], [], ["ann", "session"], None], pa.list_(pa.string()))
    out = with_exploration(sources, np.array([True, True, False, False]))
    assert out.to_pylist() == [["ann", EXPLORATION], [EXPLORATION], ["ann", "session"], []]


def random_block(rng, users: int, catalogue: int):
    rows = {"user_id": [], "item_id": [], "score": [], "sources": []}
    for u in range(users):
        n = int(rng.integers(0, 60))
        items = rng.choice(catalogue, size=n, replace=False)
        rows["user_id"] += [f"u{u}"] * n
        rows["item_id"] += [f"i{i}" for i in items]
        rows["score"] += np.round(rng.random(n), 1).tolist()  # ties on purpose
        rows["sources"] += [["ann", "popular"][: 1 + (i % 2)] for i in items]
    order = rng.permutation(len(rows["user_id"]))
    return pa.RecordBatch.from_pydict({k: [v[i] for i in order] for k, v in rows.items()},
                                      schema=pa.schema([("user_id", pa.string()),
                                                        ("item_id", pa.string()),
                                                        ("score", pa.float64()),
                                                        ("sources", pa.list_(pa.string()))]))


@pytest.mark.parametrize("case", range(6))
def test_the_vectorized_rules_give_the_reference_lists(case):
    rng = np.random.default_rng(case)
    catalogue = 80
    names = [f"i{i}" for i in range(catalogue)]
    available = {i: bool(rng.random() > 0.15) for i in names}
    boost = {i: float(rng.choice([1.0, 1.0, 1.5, 2.0])) for i in names[:60]}
    category = {i: (None if rng.random() < 0.1 else f"c{rng.integers(0, 4)}") for i in names}
    surfaces = {
        "home_feed": SurfaceSettings(n=int(rng.integers(5, 40)),
                                     max_per_category=int(rng.integers(0, 4)),
                                     diversity_window=int(rng.integers(3, 25)),
                                     exploration_share=float(rng.choice([0.0, 0.1, 0.3])),
                                     apply_boost=bool(case % 2)),
        "email": SurfaceSettings(n=10, max_per_category=int(rng.integers(0, 3)),
                                 exclude_from="home_feed", exclude_first=5,
                                 drop_unavailable=bool(case % 3)),
    }
    batch = random_block(rng, users=25, catalogue=catalogue)
    got = surface_rows(batch, ItemMeta.from_dicts(available, boost, category), surfaces, 3,
                       "2024-06-30").to_pylist()
    meta = ref.DictMeta(available, boost, category)
    cols = batch.to_pydict()
    for user in sorted(set(cols["user_id"])):
        mine = [k for k, u in enumerate(cols["user_id"]) if u == user]
        want: dict[str, list] = {}
        for name in surface_order(surfaces):
            rule = surfaces[name]
            blocked = {r[0] for r in want[rule.exclude_from][: rule.exclude_first]} \
                if rule.exclude_from in want else set()
            want[name] = ref.apply_surface(
                [cols["item_id"][k] for k in mine], [cols["score"][k] for k in mine],
                [cols["sources"][k] for k in mine], meta, rule,
                user_rng(3, user, "2024-06-30", name), blocked)
            have = [(r["item_id"], r["score"], r["sources"]) for r in got
                    if r["user_id"] == user and r["surface"] == name]
            assert have == [(i, pytest.approx(s), src) for i, s, src in want[name]], \
                (user, name)
            ranks = [r["rank"] for r in got if r["user_id"] == user and r["surface"] == name]
            assert ranks == list(range(1, len(have) + 1))


def test_a_block_whose_rows_are_all_dropped_gives_empty_lists():
    meta = _meta(available={i: False for i in ITEMS})
    for rule in (_plain(), _plain(max_per_category=2), _plain(exploration_share=0.2)):
        assert one(rule, meta) == []
