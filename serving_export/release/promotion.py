"""Publishing and rolling back with the MLflow registry kept in step: the ``champion``
alias of each registered model (the embeddings and the ranker) points at the versions the
live release serves.

The gate only records its verdict. :func:`publish_release` points ``CURRENT`` at a release
and then moves the aliases to the versions registered for the release's model date (the
nightly's ``ds``; for an hourly release, its nightly base's), :func:`rollback_release` moves
them back with ``CURRENT``. If the registry cannot be updated, ``CURRENT`` goes back to what
it was and the error is raised, so the registry and ``CURRENT`` never disagree for longer
than the call.
"""

from __future__ import annotations

import logging
from pathlib import Path

from conf import Settings
from serving_export.release.format import read_manifest
from serving_export.release.publish import current_release, publish, rollback

log = logging.getLogger(__name__)


def model_ds(manifest: dict) -> str:
    """The date whose models a release serves: its own ``ds`` for a nightly release, the
    nightly base's for an hourly one (which folds users into the base's item vectors)."""
    hourly = (manifest.get("extra") or {}).get("hourly")
    return hourly["base_ds"] if hourly else manifest["ds"]


def promote_release(settings: Settings, root: Path, release_id: str) -> dict[str, str]:
    """Point each registered model's ``champion`` at the version registered for the model
    date of ``release_id`` (the embeddings and the ranker).

    Returns:
        model name -> the version now champion (models with no version for that date are
        left alone and missing from the result).
    """
    from evaluation import registry

    ds = model_ds(read_manifest(root / release_id))
    moved: dict[str, str] = {}
    with registry.tracking(settings.mlflow) as client:
        for name in (settings.mlflow.embeddings_model, settings.mlflow.ranker_model):
            version = registry.find_version(client, name, ds)
            if version is None:
                log.info("%s has no version registered for ds=%s; alias unchanged", name, ds)
                continue
            registry.promote(client, name, str(version.version))
            moved[name] = str(version.version)
    return moved


def _switched(settings: Settings, root: Path, target: str, previous: str | None) -> dict:
    try:
        return promote_release(settings, root, target)
    except Exception:
        log.error("moving the MLflow aliases to %s failed; CURRENT goes back to %s",
                  target, previous)
        if previous is not None and previous != target:
            rollback(root, previous)
        raise


def publish_release(settings: Settings, root: str | Path, release_id: str) -> tuple[str | None,
                                                                                   dict]:
    """Publish ``release_id`` (see :func:`serving_export.release.publish.publish`), then move
    the aliases to its models.

    Returns:
        ``(previous CURRENT, {model: champion version})``.
    """
    root = Path(root)
    previous = publish(root, release_id)
    return previous, _switched(settings, root, release_id, previous)


def rollback_release(settings: Settings, root: str | Path, release_id: str | None = None
                     ) -> tuple[str, dict]:
    """Roll ``CURRENT`` back (see :func:`serving_export.release.publish.rollback`), then the
    aliases with it.

    Returns:
        ``(the id now live, {model: champion version})``.
    """
    root = Path(root)
    previous = current_release(root)
    target = rollback(root, release_id)
    return target, _switched(settings, root, target, previous)
