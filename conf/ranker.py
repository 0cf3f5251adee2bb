"""Settings: The torchrec ranker."""

from __future__ import annotations

from conf.types import Section


class RankerSettings(Section):
    """The torchrec ranker."""
