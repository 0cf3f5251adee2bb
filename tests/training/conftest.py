"""Fixtures of the ranker tests."""

from tests.ranker_fixtures import ranker_settings

__all__ = ["ranker_settings"]
