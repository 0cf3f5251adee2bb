"""Settings: online experiments (variants of the served lists and their traffic shares)."""

from __future__ import annotations

import hashlib

from pydantic import Field, model_validator

from conf.types import PositiveFloat, Section


class ExperimentSettings(Section):
    """One experiment: named variants with traffic shares, a salt, and its control.

    A user's variant is a pure function of the user id and the salt
    (:meth:`variant_of`), so every worker, every request and every later analysis agree
    without storing the assignment; a new salt reshuffles users for the next experiment.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    salt: str = Field(min_length=1)
    variants: dict[str, PositiveFloat]
    """Variant name -> share of traffic (normalised to sum to 1)."""
    control: str = "champion"
    """The variant the others are compared with (the MLflow ``champion``)."""

    @model_validator(mode="after")
    def _control_is_a_variant(self) -> ExperimentSettings:
        if len(self.variants) < 2:
            raise ValueError(f"experiment {self.name!r} needs at least two variants")
        if self.control not in self.variants:
            raise ValueError(f"experiment {self.name!r}: control {self.control!r} is not one "
                             f"of its variants {sorted(self.variants)}")
        return self

    def variant_of(self, user_id: str) -> str:
        """The user's variant: a SHA-256 of ``salt:user_id`` read as a number in [0, 1),
        placed on the variants' cumulative shares (in name order)."""
        digest = hashlib.sha256(f"{self.salt}:{user_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2.0 ** 64
        total = sum(self.variants.values())
        edge = 0.0
        names = sorted(self.variants)
        for name in names:
            edge += self.variants[name] / total
            if point < edge:
                return name
        return names[-1]
