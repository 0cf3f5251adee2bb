"""Domain exceptions of the sharded FAISS index: writing, reading and tuning."""

from __future__ import annotations


class FaissIndexError(Exception):
    """Base of every sharded-index problem; the message names the index and what is wrong."""


class IndexDirectoryNotEmpty(FaissIndexError, FileExistsError):
    """The target directory already holds files; an index is written once, into a fresh one."""


class IndexCorrupt(FaissIndexError):
    """The index directory lacks a file its meta names, or a shard and its id map disagree."""


class RecallTargetNotMet(FaissIndexError):
    """No ``efSearch`` candidate reached the recall target.

    Attributes:
        target: the recall asked for.
        best_recall: the highest recall measured.
        best_ef_search: the ``efSearch`` that gave it.
        measured: recall per ``efSearch`` tried, in order.
    """

    def __init__(self, target: float, measured: dict[int, float]) -> None:
        self.target = target
        self.measured = dict(measured)
        self.best_ef_search = max(measured, key=lambda ef: (measured[ef], -ef)) if measured else 0
        self.best_recall = measured.get(self.best_ef_search, 0.0)
        super().__init__(
            f"recall target {target} not met: best recall {self.best_recall:.4f} at efSearch "
            f"{self.best_ef_search} (tried {sorted(measured)}); raise hnsw_m, ef_construction "
            f"or the efSearch candidates"
        )
