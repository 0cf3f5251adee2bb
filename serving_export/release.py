"""Releases: what they hold, how they are written, verified, loaded and published.

- :func:`write_release` / :class:`ReleaseData`: write ``releases/<id>/`` once, atomically
  (full, or incremental on a parent).
- :func:`verify_release` / :class:`Release`: check checksums, then memory-map the arrays.
- :func:`publish`, :func:`rollback`, :func:`prune`, :func:`list_releases`: the ``CURRENT``
  pointer and its history.
"""

from serving_export.publish import (
    ReleaseInfo,
    current_release,
    list_releases,
    prune,
    publish,
    read_history,
    rollback,
    rollback_target,
)
from serving_export.release_format import OVERALL
from serving_export.release_reader import Release, load_release, verify_release
from serving_export.release_writer import Embeddings, GateVerdict, ReleaseData, write_release

__all__ = [
    "OVERALL", "Embeddings", "GateVerdict", "Release",
    "ReleaseData",
    "ReleaseInfo", "current_release", "list_releases", "load_release",
    "prune", "publish", "read_history", "rollback", "rollback_target", "verify_release",
    "write_release",
]
