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
from conf.errors import PreswapCheckFailed
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


def publish_release(settings: Settings, root: str | Path, release_id: str,
                    force_reason: str | None = None) -> tuple[str | None, dict]:
    """Publish ``release_id`` (see :func:`serving_export.release.publish.publish`), then move
    the aliases to its models.

    A nightly release that replaces a live one must first pass the pre-swap checks
    (:mod:`serving_export.release.preswap`, thresholds in ``preswap``); ``force_reason``
    publishes it anyway and records the reason in the history.

    Returns:
        ``(previous CURRENT, {model: champion version})``.

    Raises:
        PreswapCheckFailed: a check failed and no ``force_reason`` was given.
    """
    root = Path(root)
    note = preswap_gate(settings, root, release_id, force_reason)
    previous = publish(root, release_id, note)
    return previous, _switched(settings, root, release_id, previous)


def preswap_gate(settings: Settings, root: Path, release_id: str,
                 force_reason: str | None) -> dict:
    """Run the pre-swap checks when they apply; the note for the history entry."""
    live = current_release(root)
    if not (root / release_id / "_SUCCESS").is_file():
        return {}  # not a complete release: publish refuses it with the reason
    manifest = read_manifest(root / release_id)
    if (not settings.preswap.enabled or live is None or live == release_id
            or manifest.get("parent") or (manifest.get("extra") or {}).get("hourly")):
        return {"forced": force_reason} if force_reason else {}
    from serving_export.release.preswap import compare

    report = compare(settings, root, release_id, live)
    note: dict = {"preswap": "passed" if report.passed else "failed"}
    if report.passed:
        return note
    if not force_reason:
        raise PreswapCheckFailed(
            f"release {release_id!r} failed the pre-swap checks against {live!r}: "
            + "; ".join(report.reasons)
            + " (publish it anyway with --force --reason TEXT)")
    log.warning("publishing %s despite failed pre-swap checks (%s): %s", release_id,
                force_reason, "; ".join(report.reasons))
    return {**note, "forced": force_reason, "preswap_reasons": report.reasons}


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
