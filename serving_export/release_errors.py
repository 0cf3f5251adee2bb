"""Domain exceptions of releases: writing, verifying, loading and publishing."""

from __future__ import annotations


class ReleaseError(Exception):
    """Base of every release problem; the message names the release and what is wrong."""


class ReleaseNotFound(ReleaseError):
    """No release directory of that id under the releases root."""


class ReleaseExists(ReleaseError):
    """A release of that id was already written (releases are written once)."""


class ReleaseIncomplete(ReleaseError):
    """The release has no ``_SUCCESS`` marker or lacks files its manifest lists."""


class ReleaseCorrupt(ReleaseError):
    """A file's size or SHA-256 differs from the manifest, or the manifest is unreadable."""


class ReleaseGateFailed(ReleaseError):
    """The release did not pass the promotion gate, so it may not be published."""


class PublishError(ReleaseError):
    """``CURRENT`` could not be changed as asked (e.g. nothing to roll back to)."""
