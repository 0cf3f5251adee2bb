"""The release at a million users: build time, load time, resident memory and per-answer
cost, probed in a fresh process (``recpipe bench serve --scale-users N``)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.load import rss_mb

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)


def scale_probe(path: str, n_users: int, lookups: int) -> dict[str, float]:
    """In a fresh process: load (verify + map) a release, then serve ``lookups`` users."""
    import numpy as np

    from serving_export.release.reader import Release
    from serving_export.service.answers import user_answer
    from serving_export.service.realtime import EMPTY
    from serving_export.service.recommend import Blend, recommend_user

    pid = os.getpid()
    base = rss_mb(pid)
    t0 = time.perf_counter()
    rel = Release.load(path)
    load_s = time.perf_counter() - t0
    after_load = rss_mb(pid)
    rng = np.random.default_rng(0)
    users = [f"u{k:07d}" for k in rng.integers(0, n_users, size=lookups)]
    t0 = time.perf_counter()
    for user in users:
        source, entries, _ = recommend_user(rel, "home_feed", user, 20, None, EMPTY, Blend())
        user_answer(rel, user, "home_feed", source, False, entries)
    per_answer_us = (time.perf_counter() - t0) / lookups * 1e6
    after_lookups = rss_mb(pid)
    anon_after_lookups = rss_mb(pid, "RssAnon")
    file_after_lookups = rss_mb(pid, "RssFile")
    t0 = time.perf_counter()
    Release.load(path, verify=False)
    map_only_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = rel.user_ids
    index = {ids[k]: k for k in range(len(ids))}
    dict_build_s = time.perf_counter() - t0
    dict_mb = rss_mb(pid) - after_lookups
    del index
    return {"load_s": load_s, "map_only_s": map_only_s, "rss_mb_before": base,
            "rss_mb_after_load": after_load, "rss_mb_after_lookups": after_lookups,
            "rss_anon_mb_after_lookups": anon_after_lookups,
            "rss_file_mb_after_lookups": file_after_lookups,
            "lookups": lookups, "answer_us": per_answer_us, "dict_index_build_s": dict_build_s,
            "dict_index_mb": dict_mb,
            "release_mb": sum(f.stat().st_size for f in Path(path).rglob("*")
                              if f.is_file()) / 2**20}


def scale(workdir: Path, n_users: int, topn: int, dim: int) -> dict[str, Any]:
    """Build a release of ``n_users`` x ``topn`` and probe it in a fresh process."""
    from bench.release_synth import synthetic_release_data
    from serving_export.release.writer import write_release

    t0 = time.perf_counter()
    data = synthetic_release_data(n_users, 20_000, topn=topn, dim=dim,
                                  surfaces=("home_feed",))
    path = write_release(workdir / "scale", "scale", data)
    del data
    build_s = time.perf_counter() - t0
    code = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from bench.serve_scale "
            f"import scale_probe; print(json.dumps(scale_probe({str(path)!r}, {n_users}, "
            "10000)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=600)
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    return {"users": n_users, "topn": topn, "dim": dim, "items": 20_000,
            "build_s": build_s, **probe}
