"""The ranker's feature spec: which columns are sparse (embedded) and which are dense.

One :class:`FeatureSpec` names every input column of the ranker, in model order. It is
written beside an exported model as JSON and read back at inference, so training and
serving agree on names, order, table sizes and transforms.

Example columns of a training or scoring table (Arrow / Parquet), one row per
(user, candidate item):

- sparse, single id: ``user_id``, ``item_id``, ``user_age_bucket``, ``user_gender``,
  ``user_occupation`` (any int or string type; nulls allowed).
- sparse, multi-hot: ``item_categories``, ``retrieval_strategies`` (``list<...>``).
- dense: floats, nulls allowed (they become the training mean).
- ``label`` (0/1) for training and validation; ``weight`` (optional, default 1).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from conf.ranker import RankerSettings

EXAMPLE_SPARSE_COLUMNS = ("user_id", "item_id", "item_categories", "user_age_bucket",
                          "user_gender", "user_occupation", "retrieval_strategies")
"""The ranker's categorical inputs: columns of ``gold/ranker_examples`` and of scored
candidates."""
EXAMPLE_DENSE_COLUMNS = (
    "retrieval_score",    # merged candidate score
    "als_dot",            # user . item ALS embeddings
    "content_sim",        # user profile . item content vector
    "covis_score",        # co-visitation with the user's recent items
    "popularity",         # time-decayed item popularity
    "n_strategies",       # how many retrieval strategies found the item
    "item_age_days",      # ds - item created_at
    "user_event_count",   # user's events in the lookback window
    "item_event_count",   # item's events in the lookback window
    "user_recency_days",  # days since the user's last event
)
"""The ranker's numeric inputs (float64 columns)."""
LABEL_COLUMN = "label"
WEIGHT_COLUMN = "weight"


@dataclass(frozen=True)
class SparseFeature:
    """A categorical feature looked up in its own embedding table.

    Attributes:
        name: column name, also the KeyedJaggedTensor key and the table name suffix.
        num_buckets: rows of the embedding table, bucket 0 (unseen/cold ids) included.
        multi_hot: the column holds a list of ids per row (pooled by mean).
    """

    name: str
    num_buckets: int
    multi_hot: bool = False

    def __post_init__(self) -> None:
        if self.num_buckets < 2:
            raise ValueError(
                f"sparse feature {self.name!r}: num_buckets must be >= 2 "
                f"(bucket 0 is reserved), got {self.num_buckets}"
            )


@dataclass(frozen=True)
class DenseFeature:
    """A numeric feature, standardised with training statistics.

    Attributes:
        name: column name.
        log1p: apply ``sign(x) * log1p(|x|)`` before standardising (counts, ages, scores
            with a long tail).
    """

    name: str
    log1p: bool = False


@dataclass(frozen=True)
class FeatureSpec:
    """Names, order and transforms of the ranker's inputs.

    Attributes:
        sparse: F sparse features, in the order of the model's embedding tables.
        dense: the dense features, in column order of the (B, F_dense) matrix.
        label: label column (float 0/1).
        weight: example-weight column; ``None`` or a missing column means weight 1.
    """

    sparse: tuple[SparseFeature, ...]
    dense: tuple[DenseFeature, ...]
    label: str = LABEL_COLUMN
    weight: str | None = WEIGHT_COLUMN

    def __post_init__(self) -> None:
        if not self.sparse:
            raise ValueError("a feature spec needs at least one sparse feature, got none")
        if not self.dense:
            raise ValueError("a feature spec needs at least one dense feature, got none")
        names = [f.name for f in self.sparse] + [f.name for f in self.dense]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature names must be unique, repeated: {dupes}")
        if self.label in names:
            raise ValueError(f"label column {self.label!r} is also a feature")

    @property
    def sparse_names(self) -> list[str]:
        """Sparse feature names in model order."""
        return [f.name for f in self.sparse]

    @property
    def dense_names(self) -> list[str]:
        """Dense feature names in column order."""
        return [f.name for f in self.dense]

    def columns(self, with_label: bool = True) -> list[str]:
        """Columns to read from a table: features, then label and weight if asked."""
        cols = self.sparse_names + self.dense_names
        if with_label:
            cols.append(self.label)
        return cols

    def with_num_buckets(self, sizes: dict[str, int]) -> FeatureSpec:
        """Return a copy whose sparse features have the table sizes in ``sizes``."""
        sparse = tuple(
            replace(f, num_buckets=sizes.get(f.name, f.num_buckets)) for f in self.sparse
        )
        return replace(self, sparse=sparse)

    def to_json(self) -> str:
        """Serialise to JSON (see :meth:`from_json`)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        """Parse what :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(
            sparse=tuple(SparseFeature(**f) for f in data["sparse"]),
            dense=tuple(DenseFeature(**f) for f in data["dense"]),
            label=data["label"],
            weight=data["weight"],
        )


# Candidate-based training examples (built by the pipeline from gold/candidates).

MULTI_HOT = frozenset({"item_categories", "retrieval_strategies"})
"""Sparse candidate features holding a list of values per row."""
LOG1P = frozenset({"covis_score", "popularity", "item_age_days", "user_event_count",
                   "item_event_count", "user_recency_days"})
"""Dense candidate features whose heavy tail is compressed by ``log1p`` before scaling."""
CANDIDATE_SPARSE: tuple[tuple[str, bool], ...] = tuple(
    (name, name in MULTI_HOT) for name in EXAMPLE_SPARSE_COLUMNS)
"""(name, multi-hot) of the ranker's categorical inputs, columns of ``gold/ranker_examples``."""
CANDIDATE_DENSE: tuple[tuple[str, bool], ...] = tuple(
    (name, name in LOG1P) for name in EXAMPLE_DENSE_COLUMNS)
"""(name, log1p) of the ranker's numeric inputs, columns of ``gold/ranker_examples``."""


def bucket_cap(settings: RankerSettings, name: str) -> int:
    """Most embedding rows (bucket 0 included) the settings allow for feature ``name``."""
    return settings.bucket_sizes.get(name, settings.default_bucket_size)


def candidate_feature_spec(settings: RankerSettings) -> FeatureSpec:
    """The feature spec of candidate-based training examples, table caps from ``settings``.

    The table sizes are caps; fitting the id maps shrinks them to the ids actually kept.
    """
    return FeatureSpec(
        sparse=tuple(
            SparseFeature(name, bucket_cap(settings, name), multi_hot=multi)
            for name, multi in CANDIDATE_SPARSE
        ),
        dense=tuple(DenseFeature(name, log1p=log) for name, log in CANDIDATE_DENSE),
    )
