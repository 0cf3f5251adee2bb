"""Business rules per surface: each rule on a list whose right answer is known."""

import numpy as np

from conf.recs import SurfaceSettings
from jobs.rules import EXPLORATION, ItemMeta, apply_surface, diversify, user_rng
from jobs.topn import surface_order, user_surfaces

ITEMS = [f"i{j}" for j in range(30)]
SCORES = [30.0 - j for j in range(30)]  # i0 best
SOURCES = [["ann"]] * 30


def _meta(available=None, boost=None, category=None):
    return ItemMeta(available=available or {}, boost=boost or {},
                    category=category or {i: "c" + str(j % 3) for j, i in enumerate(ITEMS)})


def _plain(**kw):
    return SurfaceSettings(**({"n": 10, "max_per_category": 0, "exploration_share": 0.0}
                              | kw))


def _ids(rows):
    return [r[0] for r in rows]


def test_unavailable_items_never_appear():
    meta = _meta(available={"i0": False, "i3": False})
    out = apply_surface(ITEMS, SCORES, SOURCES, meta, _plain(n=30), user_rng(1, "u", "d", "s"))
    assert "i0" not in _ids(out) and "i3" not in _ids(out)
    assert len(out) == 28


def test_boost_moves_an_item_up():
    meta = _meta(boost={"i9": 2.0})  # 21 * 2 = 42 > 30
    out = apply_surface(ITEMS, SCORES, SOURCES, meta, _plain(), user_rng(1, "u", "d", "s"))
    assert _ids(out)[0] == "i9" and out[0][1] == 42.0


def _cat(item):
    j = int(item[1:])
    return "a" if j < 20 else ("b" if j < 25 else "c")


def test_diversity_cap_holds_in_the_window():
    meta = _meta(category={i: _cat(i) for i in ITEMS})
    out = apply_surface(ITEMS, SCORES, SOURCES, meta,
                        _plain(n=12, max_per_category=3, diversity_window=9),
                        user_rng(1, "u", "d", "s"))
    head = [_cat(i) for i in _ids(out)[:9]]
    assert head.count("a") == head.count("b") == head.count("c") == 3
    assert _ids(out)[:4] == ["i0", "i1", "i2", "i20"]
    # after the window the deferred items follow in their order
    assert _ids(out)[9:] == ["i3", "i4", "i5"]


def test_diversity_cap_falls_back_when_categories_run_out():
    meta = _meta(category={i: ("a" if int(i[1:]) < 28 else "b") for i in ITEMS})
    out = apply_surface(ITEMS, SCORES, SOURCES, meta,
                        _plain(n=5, max_per_category=2, diversity_window=5),
                        user_rng(1, "u", "d", "s"))
    assert _ids(out) == ["i0", "i1", "i28", "i29", "i2"]


def test_diversify_keeps_deferred_items_after_the_window():
    meta = _meta(category={"x": "a", "y": "a", "z": "b"})
    assert diversify(["x", "y", "z"], meta, 1, 2) == ["x", "z", "y"]


def test_exploration_share_is_exact_and_marked():
    rule = _plain(n=20, diversity_window=20, exploration_share=0.25)
    out = apply_surface(ITEMS, SCORES, SOURCES, _meta(), rule, user_rng(7, "u", "d", "s"))
    explored = [r for r in out if EXPLORATION in r[2]]
    assert len(explored) == 5  # round(0.25 * 20)
    assert all(int(r[0][1:]) >= 20 for r in explored)  # picked from below the window
    assert len(set(_ids(out))) == len(out) == 20
    again = apply_surface(ITEMS, SCORES, SOURCES, _meta(), rule, user_rng(7, "u", "d", "s"))
    assert again == out  # same seed, user, date: same picks
    other = apply_surface(ITEMS, SCORES, SOURCES, _meta(), rule, user_rng(7, "v", "d", "s"))
    assert _ids(other) != _ids(out)


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
