"""Offline evaluation: twin → :class:`MillPipeline` in-process, in virtual time.

The watermark is the largest event time seen minus ``watermark_delay_s``; the pipeline gets
every PassRequest / PassActual in log order and a watermark after each. Outcomes are grouped
by the scenario's phases (from the twin's ground truth, never shown to the pipeline).
"""

from __future__ import annotations

from typing import Any

from wearwatch.events import PassActual, PassOutcome, PassRequest, Setpoint
from wearwatch.learn.online import PIPELINE_LEARNERS
from wearwatch.pipelines.mill.pipeline import MillPipeline, MillPipelineConfig
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig

#: The served value's EWMA APE (α) and the level it must stay under to count as recovered.
RECOVERY_ALPHA = 0.2
RECOVERY_LEVEL_PCT = 2.0


def evaluate(
    scenario: str,
    seed: int = 7,
    passes: int = 3000,
    *,
    learners: tuple[str, ...] = PIPELINE_LEARNERS,
    loss_share: float = 0.01,
    duplicate_share: float = 0.01,
    late_share: float = 0.005,
    watermark_delay_s: float = 5.0,
    pipeline_config: MillPipelineConfig | None = None,
) -> dict[str, Any]:
    """Run a scenario and return the evaluation report (a JSON-ready dict)."""
    twin = MillTwin(
        MillTwinConfig(
            seed=seed,
            scenario=scenario,
            planned_passes=passes,
            loss_share=loss_share,
            duplicate_share=duplicate_share,
            late_share=late_share,
            record_truth=True,
        )
    )
    pipe = MillPipeline(pipeline_config or MillPipelineConfig(learners=learners, seed=seed))
    epoch = twin.config.epoch_s
    max_ts = epoch
    outcomes: list[PassOutcome] = []
    violations = 0
    unexplained_fallbacks = 0
    for event in twin.events(max_passes=passes):
        if not isinstance(event, PassRequest | PassActual):
            continue
        max_ts = max(max_ts, event.ts.timestamp())
        wm = max_ts - watermark_delay_s
        for out in pipe.on_event(event, wm):
            if isinstance(out, Setpoint):
                low, high = pipe.router.limits(out.baseline_force_kn, event_rating(event))
                if not low - 1e-9 <= out.served_force_kn <= high + 1e-9:
                    violations += 1
                if out.source != "model" and out.reason in ("", "model"):
                    unexplained_fallbacks += 1
            elif isinstance(out, PassOutcome):
                outcomes.append(out)
        pipe.on_watermark(wm)
    pipe.on_watermark(max_ts + pipe.config.ttl_s + watermark_delay_s + 1.0)

    truth = twin.truth
    phase_names = [seg.name for seg in twin.scenario.segments]
    groups: dict[str, list[PassOutcome]] = {name: [] for name in phase_names}
    for o in outcomes:
        groups[truth[(o.slab_id, o.pass_no)].phase].append(o)
    phases = {name: _summary(group, pipe.config.learners) for name, group in groups.items()}
    stats = pipe.stats()
    return {
        "scenario": scenario,
        "seed": seed,
        "passes": len(outcomes),
        "phases": phases,
        "overall": _summary(outcomes, pipe.config.learners),
        **_recovery(twin, outcomes),
        "decisions_by_reason": stats["decisions_by_reason"],
        "orphans": stats["orphans"],
        "duplicates": stats["duplicates"],
        "late": stats["late"],
        "joined": stats["joined"],
        "limit_violations": violations,
        "fallbacks_without_reason": unexplained_fallbacks,
        "drifts": stats["drifts"],
        "default_learner": pipe.config.default_learner,
    }


def event_rating(event: PassRequest | PassActual) -> float:
    return event.rating_force_kn if isinstance(event, PassRequest) else float("inf")


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _summary(group: list[PassOutcome], learners: tuple[str, ...]) -> dict[str, Any]:
    return {
        "passes": len(group),
        "physics_ape": _mean([o.physics_ape for o in group]),
        "served_ape": _mean([o.served_ape for o in group]),
        "model_ape": {name: _mean([o.model_ape[name] for o in group]) for name in learners},
        "fallback_share": _mean([0.0 if o.source == "model" else 1.0 for o in group]),
    }


def _recovery(twin: MillTwin, outcomes: list[PassOutcome]) -> dict[str, int | None]:
    """Joined passes after the first shock until the served EWMA APE stays below 2 %.

    ``recovery_passes`` is strict (the EWMA never again reaches 2 % within the phase: a
    safety-clipped pass late in the phase counts); ``recovery_first_below`` is the first
    pass at which the EWMA is below 2 %.
    """
    shocks = [seg.start for seg in twin.scenario.segments if seg.onset == "shock"]
    if not shocks:
        return {"recovery_passes": None, "recovery_first_below": None}
    start = shocks[0]
    ends = [seg.start for seg in twin.scenario.segments if seg.start > start]
    end = ends[0] if ends else None
    ewma: float | None = None
    after = 0
    last_bad = 0
    first_below: int | None = None
    for o in outcomes:  # in join order
        idx = twin.truth[(o.slab_id, o.pass_no)].pass_index
        if end is not None and idx >= end:
            break
        ewma = (
            o.served_ape
            if ewma is None
            else (RECOVERY_ALPHA * o.served_ape + (1 - RECOVERY_ALPHA) * ewma)
        )
        if idx < start:
            continue
        after += 1
        if ewma >= RECOVERY_LEVEL_PCT:
            last_bad = after
        elif first_below is None:
            first_below = after
    return {"recovery_passes": last_bad, "recovery_first_below": first_below}
