"""``recpipe bench als-lineage``: how many Spark ALS iterations run before the JVM's stack
overflows, with and without checkpoints.

MLlib's ALS extends the lineage of its factor RDDs by one step per iteration. Unless the
factors are checkpointed, a task of iteration N deserializes an N-deep chain of RDDs, and
past some depth that recursion overflows the task thread's stack (``StackOverflowError``;
in local mode the whole JVM goes down). The depth depends on the JVM's stack size and on its
JIT (frames of C1-compiled code are larger than C2's), so it is measured, not assumed.

For each JVM setting the bench fits a small random matrix (2,000 users x 1,000 items, 50,000
interactions, rank 16; the depth does not depend on the data's size) for an ascending ladder
of iteration counts, each in a fresh process with its own Spark session, and stops at the
first count that overflows. The settings measured: the profile's own Java options without
checkpoints, the JVM's defaults without checkpoints, and the profile's options with the
configured checkpoint interval (``als.spark_checkpoint_interval``) up to the largest count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LADDER = (5, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50)
"""Iteration counts tried, in order."""
JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def fit_once(iterations: int, java_options: str | None, checkpoint_interval: int) -> dict:
    """Fit the probe matrix once in this process; returns ``seconds``, ``users``, ``items``.

    Args:
        iterations: ALS iterations.
        java_options: the driver's Java options (None: the profile's).
        checkpoint_interval: checkpoint every this many iterations; 0 for none.
    """
    import numpy as np
    import pandas as pd

    from conf import load_settings
    from jobs.embeddings_spark import checkpoint_folder, fit_als
    from jobs.spark import get_spark

    spark_conf = {"conf": {JAVA_OPTIONS: java_options}} if java_options is not None else {}
    settings = load_settings(overrides={"spark": {"master": "local[2]", **spark_conf}})
    spark = get_spark(settings)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_idx": rng.integers(0, 2000, 50_000, dtype=np.int32),
                          "item_idx": rng.integers(0, 1000, 50_000, dtype=np.int32)})
    frame = frame.drop_duplicates().assign(confidence=np.float32(1.0))
    ratings = spark.createDataFrame(frame).repartition(10).cache()
    ratings.count()
    als = settings.als.model_copy(update={
        "iterations": iterations, "factors": 16,
        "spark_checkpoint_interval": max(checkpoint_interval, 1)})
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recpipe-lineage-") as tmp:
        if checkpoint_interval:
            with checkpoint_folder(spark, tmp, "probe") as folder:
                model = fit_als(ratings, als, 1, folder)
                users, items = model.userFactors.count(), model.itemFactors.count()
        else:
            model = fit_als(ratings, als, 1)
            users, items = model.userFactors.count(), model.itemFactors.count()
    return {"seconds": round(time.perf_counter() - began, 2), "users": users, "items": items}


def probe(iterations: int, java_options: str | None, checkpoint_interval: int,
          timeout_s: float) -> dict:
    """Run :func:`fit_once` in a fresh process (an overflow kills its JVM).

    Returns:
        ``iterations``, ``ok``, ``overflow`` (the child's output names a
        ``StackOverflowError``), ``seconds`` (of the fit, when it completed).
    """
    cmd = [sys.executable, "-m", "bench.als_lineage", "--child", str(iterations),
           "--checkpoint-interval", str(checkpoint_interval)]
    if java_options is not None:
        cmd += ["--java-options", java_options]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              cwd=Path(__file__).resolve().parents[1], check=False)
    except subprocess.TimeoutExpired:
        return {"iterations": iterations, "ok": False, "overflow": False, "timeout": True}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if proc.returncode == 0 and lines else {}
    return {"iterations": iterations, "ok": bool(result),
            "overflow": "StackOverflowError" in proc.stdout + proc.stderr,
            "seconds": result.get("seconds")}


def ladder(java_options: str | None, checkpoint_interval: int, top: int,
           timeout_s: float) -> dict:
    """Probe the ladder up to ``top`` iterations, stopping at the first failure.

    Returns:
        ``deepest_ok`` (most iterations that completed, 0 if none), ``first_failure`` (None
        if every count up to ``top`` completed), ``overflow`` (that failure was a stack
        overflow) and every ``probe``.
    """
    probes, deepest, failure = [], 0, None
    for n in (k for k in LADDER if k <= top):
        result = probe(n, java_options, checkpoint_interval, timeout_s)
        probes.append(result)
        print(f"    {n:3d} iterations: "
              f"{'ok' if result['ok'] else 'STACK OVERFLOW' if result['overflow'] else 'failed'}"
              + (f" ({result['seconds']:.1f} s)" if result["ok"] else ""), flush=True)
        if not result["ok"]:
            failure = result
            break
        deepest = n
    return {"deepest_ok": deepest, "first_failure": failure and failure["iterations"],
            "overflow": bool(failure and failure["overflow"]), "probes": probes}


def main(argv: list[str]) -> int:
    """``recpipe bench als-lineage [--max-iterations N] [--json OUT]``."""
    parser = argparse.ArgumentParser(prog="recpipe bench als-lineage",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--max-iterations", type=int, default=50,
                        help="largest iteration count tried (default 50)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds allowed for one probe (default 600)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true",
                        help="only the first rung of the ladder (5 iterations; for a test)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--java-options", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint-interval", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(fit_once(args.child, args.java_options, args.checkpoint_interval)))
        return 0
    if args.quick:
        args.max_iterations = LADDER[0]
    if not LADDER[0] <= args.max_iterations:
        parser.error(f"--max-iterations must be at least {LADDER[0]}, got {args.max_iterations}")
    from conf import load_settings

    settings = load_settings()
    profile_options = settings.spark.conf.get(JAVA_OPTIONS, "")
    interval = settings.als.spark_checkpoint_interval
    cases = {
        "profile_no_checkpoint": (None, 0),
        "jvm_defaults_no_checkpoint": ("", 0),
        "profile_checkpointed": (None, interval),
    }
    print(f"profile {settings.env!r}: {JAVA_OPTIONS}={profile_options!r}; "
          f"als.spark_checkpoint_interval={interval}; {os.cpu_count()} cores")
    results = {}
    for name, (options, every) in cases.items():
        print(f"  {name}:", flush=True)
        results[name] = ladder(options, every, args.max_iterations, args.timeout)
    out = {"profile": settings.env, "java_options": profile_options,
           "checkpoint_interval": interval, "ladder": [k for k in LADDER
                                                       if k <= args.max_iterations],
           **results}
    for name, result in results.items():
        first = result["first_failure"]
        print(f"  {name:28s} deepest ok {result['deepest_ok']:3d}, first failure "
              f"{first if first is not None else '-'}"
              + (" (stack overflow)" if result["overflow"] else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
