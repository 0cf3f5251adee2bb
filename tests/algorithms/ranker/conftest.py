"""Fixtures of the ranker tests (shared with tests/training)."""

from tests.ranker_fixtures import ranker_settings

__all__ = ["ranker_settings"]
