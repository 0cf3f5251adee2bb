"""Published reference figures the protocols are compared with.

Copied from ``../shared/data/ml-1m/README.md`` (which cites RecBole's ML-1M general
leaderboard and Microsoft Recommenders' MovieLens 100K benchmark). Keys are the result keys
of :mod:`evaluation.protocols.runner` (``ndcg@10``, ``recall@10``, ...).
"""

from __future__ import annotations

RECBOLE_ML1M: dict[str, dict[str, float]] = {
    "Pop": {"recall@10": 0.0699, "ndcg@10": 0.1006},
    "ItemKNN": {"recall@10": 0.1723, "ndcg@10": 0.2389},
    "BPR": {"recall@10": 0.1725, "ndcg@10": 0.2407},
    "NeuMF": {"recall@10": 0.1717, "ndcg@10": 0.2393},
    "LightGCN": {"recall@10": 0.1823, "ndcg@10": 0.2476},
    "MultiVAE": {"recall@10": 0.1995, "ndcg@10": 0.2523},
    "SLIMElastic": {"recall@10": 0.2035, "ndcg@10": 0.2782},
    "RecVAE": {"recall@10": 0.2163, "ndcg@10": 0.2795},
    "EASE": {"recall@10": 0.2139, "ndcg@10": 0.2865},
    "ADMMSLIM": {"recall@10": 0.2134, "ndcg@10": 0.2904},
}
"""RecBole ML-1M general leaderboard (RUCAIBox/RecBole,
``benchmark/js/leaderboard/ml-1m_general.json``)."""

MSR_ML100K: dict[str, dict[str, float]] = {
    "ALS (explicit, rank 10)": {
        "ndcg@10": 0.0442, "precision@10": 0.0485, "recall@10": 0.0178, "map": 0.0047},
    "SAR": {"ndcg@10": 0.3825, "precision@10": 0.3308, "recall@10": 0.1764, "map": 0.1106},
    "NCF": {"ndcg@10": 0.3961, "precision@10": 0.3473, "recall@10": 0.1808, "map": 0.1077},
    "LightGCN": {"ndcg@10": 0.4198, "precision@10": 0.3796, "recall@10": 0.1443, "map": 0.0885},
    "BPR": {"ndcg@10": 0.4420, "precision@10": 0.3882, "recall@10": 0.2125, "map": 0.1325},
    "BiVAE": {"ndcg@10": 0.4751, "precision@10": 0.4118, "recall@10": 0.2191, "map": 0.1461},
    "Most popular (README note)": {"ndcg@10": 0.243, "recall@100": 0.426},
}
"""Microsoft Recommenders on MovieLens 100K (recommenders-team/recommenders, ``README.md``
and ``examples/06_benchmarks/movielens.ipynb``); ``map`` is their MAP (convention theirs)."""
