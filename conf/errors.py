"""Every domain exception of recpipe, under one root.

:class:`RecpipeError` has five kinds below it, and the ``recpipe`` command maps each kind
to an exit code and a one-line message in one place (``recpipe/cli.py``):

- :class:`UsageError` (exit 2): a command or function was called wrongly;
- :class:`ConfigError` (exit 2): configuration files or overrides are invalid;
- :class:`InputDataError` (exit 2): input data is missing, malformed or empty;
- :class:`ModelError` (exit 1): a model could not be fitted, saved, loaded or used;
- :class:`ReleaseError` (exit 1): a release (or its FAISS index) cannot be written,
  verified, loaded or published.

Other :class:`RecpipeError` s (a dataset download, the event spool, the real-time store)
exit 1. Every message
names what is wrong and where. The module sits in ``conf``, the layer every other imports,
so raising an error never imports upward.
"""

from __future__ import annotations


class RecpipeError(Exception):
    """Base of recpipe's domain errors."""


# -- the kinds ------------------------------------------------------------------------------
class UsageError(RecpipeError, ValueError):
    """A command or function was called with arguments that cannot work together."""


class ConfigError(RecpipeError, ValueError):
    """Configuration files or environment overrides are invalid.

    The message names the offending key (dotted path) and what was wrong with it.
    """


class InputDataError(RecpipeError, ValueError):
    """Input data is missing, unreadable, malformed or empty."""


class ModelError(RecpipeError, RuntimeError):
    """A model could not be fitted, saved, loaded or used."""


class ReleaseError(RecpipeError):
    """A release cannot be written, verified, loaded or published; the message names the
    release and what is wrong."""


# -- input data -----------------------------------------------------------------------------
class SchemaMismatch(InputDataError):
    """Data to be written to a table does not match the table's declared schema; the message
    names the table and each differing column."""


class SourceError(InputDataError):
    """An input source is missing, unreadable or lacks required columns."""


class EmptyInput(InputDataError):
    """A job found no input rows for the partition it was asked to build."""


class SchemaError(InputDataError):
    """An input table lacks a column the ranker's feature spec needs, or has an unusable
    type; the message names the column and what was found instead."""


class NoCandidate(InputDataError, LookupError):
    """The gate has no evaluated model for the date it was asked to judge."""


class FoldInError(InputDataError):
    """The hourly fold-in cannot use its inputs (e.g. the release's item side differs from
    the lake's)."""


# -- models ---------------------------------------------------------------------------------
class FactorizationError(ModelError):
    """A fit produced unusable factors (NaN, infinite or all zero); nothing may be published."""


class NotFittedError(ModelError):
    """A model was asked to score or recommend before it was fitted."""


class TrainingError(ModelError):
    """Training cannot go on: a non-finite loss, or no training or validation data."""


class ArtifactError(ModelError):
    """An exported model directory is incomplete, corrupt or of another format version."""


# -- releases and their indexes -------------------------------------------------------------
class ReleaseNotFound(ReleaseError, UsageError):
    """No release directory of that id under the releases root (the caller named a release
    that does not exist: exit 2)."""


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


class PreswapCheckFailed(ReleaseError):
    """The new release differs from the live one more than ``preswap`` allows; publishing it
    needs ``--force`` with a reason."""


class FaissIndexError(ReleaseError):
    """A sharded FAISS index cannot be written, read or tuned; the message names the index
    and what is wrong."""


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


# -- others (exit 1) ------------------------------------------------------------------------
class DatasetError(RecpipeError):
    """A public dataset could not be obtained or does not hold what it should (counts,
    files): a download or a shared folder failed, not the caller's input."""


# -- the service's stores -------------------------------------------------------------------
class SpoolError(RecpipeError):
    """The event spool cannot record events durably (the service answers 503)."""


class StoreUnavailable(RecpipeError):
    """The real-time store cannot answer now; the caller serves without it, degraded."""


EXIT_CODES: tuple[tuple[type[RecpipeError], int], ...] = (
    (UsageError, 2), (ConfigError, 2), (InputDataError, 2), (RecpipeError, 1),
)
"""Exit code of a command that ended with an error of each kind (first match wins)."""


def exit_code(error: RecpipeError) -> int:
    """The exit code for ``error`` (see :data:`EXIT_CODES`)."""
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))
