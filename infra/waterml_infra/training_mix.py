"""What the monitoring of one release needs from its bundle's training profile: the mix of the
model's answers on the training rows (`profile["outputs"]`: labels and shares, training/profile.py)
and the features the handler counts out of domain.

The deploy reads it from the digest-checked bundle (waterml_infra.ci.deploy_context) and passes it
to the CDK app as `-c trainingProfile=<json>`, so the answer-mix alarm compares the live mix
with constants of the very version being deployed. Without it (an offline synth, a bundle
trained before profiles) the stack has no answer-mix alarm and says so at synth.

Import-light (no CDK): deploy_context imports it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

CONTEXT_KEY = "trainingProfile"
SHARES_TOLERANCE = 1e-6


class TrainingMixError(ValueError):
    """The training profile given to the stack is unusable."""


@dataclasses.dataclass(frozen=True)
class TrainingMix:
    labels: tuple[Any, ...]  # bands (str) or classes (bool), in the profile's order
    shares: tuple[float, ...]  # of the model's answers on the training rows, summing to 1
    features: tuple[str, ...]  # the profiled features (OutOfDomain.<feature> metrics)

    def __post_init__(self) -> None:
        if not self.labels or len(self.labels) != len(self.shares):
            raise TrainingMixError("the training mix needs one share per label")
        if len(set(self.labels)) != len(self.labels):
            raise TrainingMixError(f"the training mix lists a label twice: {list(self.labels)}")
        if not all(isinstance(s, int | float) and 0.0 <= s <= 1.0 for s in self.shares):
            raise TrainingMixError(f"training shares must be within 0..1: {list(self.shares)}")
        if not math.isclose(sum(self.shares), 1.0, abs_tol=SHARES_TOLERANCE):
            raise TrainingMixError(f"training shares sum to {sum(self.shares)}, not 1")
        if not all(isinstance(f, str) and f for f in self.features):
            raise TrainingMixError("training profile features must be names")

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any]) -> TrainingMix | None:
        """From a bundle's `profile`; None for a bundle without one."""
        profile = bundle.get("profile")
        if not profile:
            return None
        try:
            outputs = profile["outputs"]
            return cls(
                labels=tuple(outputs["labels"]),
                shares=tuple(float(s) for s in outputs["shares"]),
                features=tuple(profile["features"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TrainingMixError):
                raise
            raise TrainingMixError(f"the bundle's profile has no usable outputs: {exc}") from exc

    @classmethod
    def from_context(cls, value: Any) -> TrainingMix:
        """From `-c trainingProfile=<json>` (a string on the command line, an object in tests)."""
        try:
            data = json.loads(value) if isinstance(value, str) else value
            return cls(
                labels=tuple(data["labels"]),
                shares=tuple(data["shares"]),
                features=tuple(data.get("features", ())),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TrainingMixError(f"{CONTEXT_KEY} is not a training profile: {exc}") from exc

    def to_context(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "shares": list(self.shares),
            "features": list(self.features),
        }
