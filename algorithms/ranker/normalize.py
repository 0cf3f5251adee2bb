"""Dense feature normalisation: optional signed log1p, then standardise with train stats.

Statistics are accumulated over a stream of batches (Chan's parallel mean/variance update,
float64), written as JSON beside the model and applied unchanged at inference. A null or
NaN input becomes 0 after standardising, i.e. the training mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: log1p that keeps negative values finite and ordered."""
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(frozen=True)
class DenseStats:
    """Per-feature transform and standardisation.

    Attributes:
        names: the F_dense feature names, in column order.
        log1p: whether each feature is log-transformed first.
        mean: mean of each (transformed) feature on the training data.
        std: standard deviation of each (transformed) feature; 1 where it was 0 or unknown.
    """

    names: tuple[str, ...]
    log1p: tuple[bool, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Transform raw dense values.

        Args:
            raw: float (B, F_dense) in ``names`` order, NaN where missing.

        Returns:
            float32 (B, F_dense), standardised; 0 where the input was missing.
        """
        if raw.ndim != 2 or raw.shape[1] != len(self.names):
            raise ValueError(
                f"dense input must be (B, {len(self.names)}), got shape {raw.shape}"
            )
        x = raw.astype(np.float64, copy=True)
        logged = np.asarray(self.log1p, dtype=bool)
        x[:, logged] = signed_log1p(x[:, logged])
        x = (x - np.asarray(self.mean)) / np.asarray(self.std)
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def to_json(self) -> str:
        """Serialise: one object per feature, in column order."""
        rows = [
            {"name": n, "log1p": lg, "mean": m, "std": s}
            for n, lg, m, s in zip(self.names, self.log1p, self.mean, self.std, strict=True)
        ]
        return json.dumps({"features": rows}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> DenseStats:
        """Parse what :meth:`to_json` wrote."""
        rows = json.loads(text)["features"]
        return cls(
            names=tuple(r["name"] for r in rows),
            log1p=tuple(bool(r["log1p"]) for r in rows),
            mean=tuple(float(r["mean"]) for r in rows),
            std=tuple(float(r["std"]) for r in rows),
        )


class DenseStatsAccumulator:
    """Streams batches of raw dense values into :class:`DenseStats`."""

    def __init__(self, names: tuple[str, ...], log1p: tuple[bool, ...]) -> None:
        self.names = names
        self.log1p = np.asarray(log1p, dtype=bool)
        self.count = np.zeros(len(names))
        self.mean = np.zeros(len(names))
        self.m2 = np.zeros(len(names))

    def update(self, raw: np.ndarray) -> None:
        """Add a batch: float (B, F_dense), NaN where missing (ignored)."""
        x = raw.astype(np.float64, copy=True)
        x[:, self.log1p] = signed_log1p(x[:, self.log1p])
        x[~np.isfinite(x)] = np.nan
        n_b = np.sum(~np.isnan(x), axis=0).astype(np.float64)
        has = n_b > 0
        if not has.any():
            return
        mean_b = np.zeros_like(self.mean)
        m2_b = np.zeros_like(self.m2)
        mean_b[has] = np.nanmean(x[:, has], axis=0)
        m2_b[has] = np.nansum((x[:, has] - mean_b[has]) ** 2, axis=0)
        total = self.count + n_b
        delta = mean_b - self.mean
        safe = np.where(total > 0, total, 1.0)
        self.mean = self.mean + delta * n_b / safe
        self.m2 = self.m2 + m2_b + delta**2 * self.count * n_b / safe
        self.count = total

    def finish(self) -> DenseStats:
        """The statistics so far (population std; 1 where it is 0 or nothing was seen)."""
        std = np.sqrt(np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), 0.0))
        std = np.where(std > 1e-12, std, 1.0)
        return DenseStats(
            names=tuple(self.names),
            log1p=tuple(bool(v) for v in self.log1p),
            mean=tuple(float(v) for v in self.mean),
            std=tuple(float(v) for v in std),
        )
