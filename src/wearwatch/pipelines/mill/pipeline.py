"""The mill pipeline's configuration and the learners' features.

The pipeline itself is a dataflow (:mod:`wearwatch.pipelines.mill.flow`): the join
(:mod:`~wearwatch.pipelines.mill.join`, keyed by slab), then per product line the learners
and the shadow router (:mod:`~wearwatch.pipelines.mill.serving`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wearwatch.events import PassRequest
from wearwatch.learn.online import DEFAULT_LEARNER, PIPELINE_LEARNERS
from wearwatch.physics.rolling import pass_features
from wearwatch.pipelines.mill.router import RouterConfig


@dataclass(frozen=True)
class MillPipelineConfig:
    """The join's TTL and memory (event time, seconds), the learners, the router, the seed."""

    ttl_s: float = 120.0
    #: How long (event time) joined / expired keys are remembered to spot duplicates and late
    #: halves.
    memory_s: float = 3600.0
    learners: tuple[str, ...] = PIPELINE_LEARNERS
    default_learner: str = DEFAULT_LEARNER
    router: RouterConfig = field(default_factory=RouterConfig)
    seed: int = 7

    def __post_init__(self) -> None:
        if not self.ttl_s > 0:
            raise ValueError(f"ttl_s={self.ttl_s}: expected > 0")
        if self.memory_s < self.ttl_s:
            raise ValueError(f"memory_s={self.memory_s}: expected ≥ ttl_s={self.ttl_s}")
        if self.default_learner not in self.learners:
            raise ValueError(
                f"default_learner={self.default_learner!r}: not in learners={self.learners!r}"
            )


def request_features(req: PassRequest) -> dict[str, float]:
    """The learners' raw inputs: physics features of what the request says (never wear)."""
    return pass_features(
        width_mm=req.width_mm,
        h_in_mm=req.h_in_mm,
        h_out_mm=req.h_out_mm,
        temp_c=req.temp_c,
        speed_mps=req.speed_mps,
        roll_radius_mm=req.roll_radius_mm,
        baseline_force_kn=req.baseline_force_kn,
    )
