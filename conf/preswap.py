"""Settings: the checks a new nightly release must pass against the live one before it is
published (``serving_export/release/preswap.py``)."""

from __future__ import annotations

from conf.types import Fraction, NonNegFloat, PositiveInt, Section


class PreswapSettings(Section):
    """What a new release is compared on, and how much it may differ from the live one.

    A check that fails blocks ``recpipe release publish`` with its reasons;
    ``--force --reason TEXT`` publishes anyway and records the reason in the history.
    """

    enabled: bool = True
    """Run the checks when a nightly release replaces a live one (hourly releases, which
    change only the hour's users, are not checked)."""
    surface: str = "home_feed"
    """The surface whose lists are compared."""
    k: PositiveInt = 10
    """List length compared (the top ``k`` of each user)."""
    max_users: PositiveInt = 20_000
    """Users compared: a seeded sample of those both releases know."""
    head_items: PositiveInt = 100
    """The catalogue head: the first this many items of the new release's overall popular
    list. ``head_share`` is the share of top-k slots they take."""
    max_churn: Fraction = 0.95
    """Largest mean share of a user's top k the new release may replace (1 disables)."""
    min_coverage_ratio: NonNegFloat = 0.5
    """Distinct items in the new top-k lists must be at least this share of the live ones'
    (the same users)."""
    max_removed_share: Fraction = 0.2
    """Largest share of the new top-k slots that the service would have to drop (the item is
    unavailable, already bought, or blocked by the user's negative feedback)."""
    max_head_share_increase: Fraction = 0.25
    """Largest increase of ``head_share`` over the live release's (lists collapsing onto the
    same popular items for everyone)."""
    min_slice_users: PositiveInt = 50
    """NDCG@k is compared in a slice (all, cold users, heavy users, each segment) only when
    the holdout has at least this many of its users."""
    ndcg_tolerance: NonNegFloat = 0.0
    """A slice fails when the 95% paired interval of its NDCG@k (new minus live, over the
    slice's holdout users) lies wholly below ``-ndcg_tolerance``: a drop that is real, not
    noise."""
