"""The twin's Level-2 pass scheduler: plan each draft inside the stand's force capability.

A Level-2 system does not plan with its textbook model alone. It keeps an *adaptation
coefficient* per product line — an exponentially weighted mean of measured / predicted force
over recent passes — and multiplies its prediction by it when it checks a planned pass against
the stand's rating. When worn rolls push the forces up, the coefficient follows within a few
dozen passes and the scheduler backs the draft off, so the real force stays inside the rating.

The coefficient is the scheduler's only: the :class:`~wearwatch.events.PassRequest` still
carries the unadapted physics baseline, the model the learners are asked to correct.

>>> adapt = ScheduleAdaptation(alpha=0.5)
>>> adapt.factor("structural")
1.0
>>> adapt.observe("structural", measured_kn=22_000.0, predicted_kn=20_000.0)
>>> adapt.factor("structural")
1.05
>>> plan_draft(200.0, 0.30, lambda h_out: 200.0 * (200.0 - h_out), limit_kn=7_000.0)
(170.0, 6000.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: Share of the stand's rating a planned pass may use (margin for model error and noise).
PLANNING_SHARE = 0.85
#: Smallest relative reduction the scheduler backs off to, and the step it backs off by.
MIN_REDUCTION = 0.10
REDUCTION_STEP = 0.03


@dataclass
class ScheduleAdaptation:
    """Per product line: EWMA of measured / predicted force (1.0 before any pass)."""

    alpha: float = 0.2
    factors: dict[str, float] = field(default_factory=dict)

    def factor(self, line: str) -> float:
        return self.factors.get(line, 1.0)

    def observe(self, line: str, measured_kn: float, predicted_kn: float) -> None:
        ratio = measured_kn / predicted_kn
        old = self.factors.get(line, 1.0)
        self.factors[line] = old + self.alpha * (ratio - old)


def plan_draft(
    h_in_mm: float,
    reduction: float,
    predict_kn: Callable[[float], float],
    limit_kn: float,
) -> tuple[float, float]:
    """Back the reduction off in steps until ``predict_kn(h_out)`` is under ``limit_kn``.

    Returns ``(h_out, predicted force)``; stops at :data:`MIN_REDUCTION` even if still over
    (the pass is then as light as the schedule allows).
    """
    while True:
        h_out = round(h_in_mm * (1.0 - reduction), 2)
        force = predict_kn(h_out)
        if force < limit_kn or reduction <= MIN_REDUCTION:
            return h_out, force
        reduction = max(MIN_REDUCTION, reduction - REDUCTION_STEP)
