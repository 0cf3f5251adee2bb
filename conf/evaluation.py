"""Settings: Offline evaluation, the promotion gate and the MLflow registry."""

from __future__ import annotations

from conf.types import Section


class EvaluationSettings(Section):
    """Offline evaluation, the promotion gate and the MLflow registry."""
