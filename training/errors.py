"""Domain exceptions of the ranker."""

from __future__ import annotations


class RankerError(Exception):
    """Base of the ranker's errors."""


class SchemaError(RankerError, ValueError):
    """An input table lacks a column the feature spec needs, or has an unusable type.

    The message names the column and what was found instead.
    """


class ArtifactError(RankerError):
    """An exported model directory is incomplete, corrupt or of another format version."""


class TrainingError(RankerError):
    """Training cannot go on: a non-finite loss, or no training or validation data."""
