"""Domain exceptions of the dataset tools."""

from __future__ import annotations


class DatasetError(Exception):
    """A dataset could not be obtained or does not hold what it should (counts, files)."""


class SchemaMismatchError(ValueError):
    """A table about to be written does not have the declared schema.

    The message names the table and each differing column.
    """
