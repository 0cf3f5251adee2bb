"""Settings: Releases and the lookup service."""

from __future__ import annotations

from conf.types import Section


class ServingSettings(Section):
    """Releases and the lookup service."""
