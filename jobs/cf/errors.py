"""Domain exceptions of the collaborative-filtering models."""

from __future__ import annotations

from jobs.errors import RecpipeError


class FactorizationError(RecpipeError, RuntimeError):
    """A fit produced unusable factors (NaN, infinite or all zero); nothing may be published."""


class NotFittedError(RecpipeError, RuntimeError):
    """A model was asked to score or recommend before :meth:`fit`."""
