"""Load :class:`~conf.settings.Settings` from YAML files and environment overrides.

Order (later wins): ``conf/base.yaml`` -> ``conf/<env>.yaml`` (``env`` from the argument,
else ``RECPIPE_ENV``, else ``local``) -> environment variables ``RECPIPE_<KEY>``.

Environment keys: ``RECPIPE_LAKE_ROOT`` maps to ``lake_root``; a double underscore descends
into a section, so ``RECPIPE_ALS__FACTORS=64`` sets ``als.factors``. Values are parsed as YAML
scalars (``64`` is an int, ``true`` a bool). ``RECPIPE_ENV`` and ``RECPIPE_CONF_DIR`` choose
files and are not settings themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from conf.errors import ConfigError
from conf.settings import Settings

CONF_DIR = Path(__file__).resolve().parent
_ENV_PREFIX = "RECPIPE_"
_NOT_SETTINGS = {"RECPIPE_ENV", "RECPIPE_CONF_DIR"}


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``over``, recursing into nested mappings."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``RECPIPE_A__B=v`` variables into ``{"a": {"b": v}}``."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(_ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        path = name[len(_ENV_PREFIX) :].lower().split("__")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) is False and value is None:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _format_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        got = err.get("input")
        lines.append(f"  {key}: {err['msg']} (got {got!r})")
    return f"invalid configuration ({source}):\n" + "\n".join(lines)


def load_settings(
    env: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    conf_dir: Path | None = None,
) -> Settings:
    """Load the settings for ``env``.

    Args:
        env: profile name (``local``, ``cluster``, ...); default ``RECPIPE_ENV`` or ``local``.
        overrides: a nested mapping applied last (used by tests and CLI flags).
        environ: environment to read overrides from; default ``os.environ``.
        conf_dir: folder holding the YAML files; default ``RECPIPE_CONF_DIR`` or this package.

    Raises:
        ConfigError: a file is missing or malformed, or a value fails validation. The message
            names each bad key.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get("RECPIPE_ENV") or "local"
    folder = Path(conf_dir or environ.get("RECPIPE_CONF_DIR") or CONF_DIR)
    data = _read_yaml(folder / "base.yaml")
    data = deep_merge(data, _read_yaml(folder / f"{env}.yaml"))
    data = deep_merge(data, env_overrides(environ))
    if overrides:
        data = deep_merge(data, overrides)
    data["env"] = env
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, f"env={env}, dir={folder}")) from exc
