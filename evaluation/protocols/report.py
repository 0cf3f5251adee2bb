"""Plain-text table of a protocol result beside the published figures."""

from __future__ import annotations

import math
from typing import Any

COLUMNS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20", "recall@100")
LABELS = {"ials": "iALS (implicit)", "ease": "EASE", "itemknn": "ItemKNN",
          "gfcf": "GF-CF (graph filter)", "rp3beta": "RP3beta", "admmslim": "ADMM-SLIM",
          "popularity": "Popularity"}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"


def _interval(test: dict[str, Any]) -> str:
    low, high = test.get("ndcg@10_low"), test.get("ndcg@10_high")
    if low is None or high is None:
        return "-"
    return f"[{_cell(low)}, {_cell(high)}]"


def _params(params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k != "num_threads"}
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in sorted(shown.items()))


def format_table(result: dict[str, Any]) -> str:
    """The result's test figures (ours: each model, the best, popularity) and published rows.

    Args:
        result: the dictionary returned by :func:`evaluation.protocols.runner.run_protocol`.
    """
    head = (f"{'model':<34}" + "".join(f"{c:>11}" for c in COLUMNS)
            + f"  {'ndcg@10 95% CI':<17}  settings")
    lines = [
        f"protocol {result['protocol']}{' (quick)' if result.get('quick') else ''}: "
        f"test figures, best on validation {result['tune_metric']}; "
        f"{result.get('seconds', float('nan')):.1f} s",
        head,
        "-" * len(head),
    ]
    models = result["models"]
    best = result["best_model"]
    rows = [(f"ours: {LABELS.get(n, n)}", models[n]) for n in models if n != "popularity"]
    rows.append((f"ours: best = {LABELS.get(best, best)}", models[best]))
    rows.append(("ours: Popularity", models["popularity"]))
    for label, entry in rows:
        if "skipped" in entry:
            lines.append(f"{label:<34}  skipped: {entry['skipped']}")
            continue
        cells = "".join(f"{_cell(entry['test'].get(c)):>11}" for c in COLUMNS)
        lines.append(f"{label:<34}{cells}  {_interval(entry['test']):<17}  "
                     f"{_params(entry['params'])}")
    for name, figures in result.get("published", {}).items():
        cells = "".join(f"{_cell(figures.get(c)):>11}" for c in COLUMNS)
        lines.append(f"{'published: ' + name:<34}{cells}")
    return "\n".join(lines)
