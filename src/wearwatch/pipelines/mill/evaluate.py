"""Offline evaluation of the deployed path, in virtual time.

The twin writes to a scratch embedded log, a :class:`FlowWorker` runs the mill flow over it
exactly as ``wearwatch worker mill`` does (both stages, watermarks, late halves, checkpoints),
and the decisions, outcomes and drift detections are read back from the log. Outcomes are
grouped by the scenario's phases using the twin's ground truth, which the pipeline never
sees.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from wearwatch.bus.base import Log, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import DriftDetected, PassActual, PassOutcome, PassRequest, Setpoint
from wearwatch.learn.online import PIPELINE_LEARNERS
from wearwatch.pipelines.mill.flow import mill_flow
from wearwatch.pipelines.mill.pipeline import MillPipelineConfig
from wearwatch.pipelines.mill.router import ShadowRouter
from wearwatch.runtime.flow_worker import FlowWorker
from wearwatch.runtime.worker import WorkerOptions
from wearwatch.topics import MILL_DECISIONS, MILL_DRIFT, MILL_OUTCOMES, MILL_PASSES
from wearwatch.twin.mill.publish import publish
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig

#: The served value's EWMA APE (α) and the level it must stay under to count as recovered.
RECOVERY_ALPHA = 0.2
RECOVERY_LEVEL_PCT = 2.0
_GROUP = "evaluate"


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
    config = pipeline_config or MillPipelineConfig(learners=learners, seed=seed)
    with tempfile.TemporaryDirectory(prefix="wearwatch-evaluate-") as tmp:
        path = Path(tmp) / "log.db"
        log = SqliteLog(path)
        publish(log, twin.events(max_passes=passes))
        options = WorkerOptions(
            watermark_delay_s=watermark_delay_s,
            checkpoint_interval_s=3600.0,
            poll_timeout_s=0.0,
            exit_when_idle=True,
        )
        counters = FlowWorker(lambda: SqliteLog(path), mill_flow(config), _GROUP, options).run(
            install_signals=False
        )
        ratings = {
            (e.slab_id, e.pass_no): e.rating_force_kn
            for e in _read(log, MILL_PASSES.name, PassRequest | PassActual)
            if isinstance(e, PassRequest)
        }
        decisions: list[Setpoint] = _read(log, MILL_DECISIONS.name, Setpoint)
        outcomes: list[PassOutcome] = _read(log, MILL_OUTCOMES.name, PassOutcome)
        drifts: list[DriftDetected] = _read(log, MILL_DRIFT.name, DriftDetected)
        log.close()
    # Join order across product lines: by the measurement's event time.
    outcomes.sort(key=lambda o: (o.ts, o.slab_id, o.pass_no))
    router = ShadowRouter(config.router)  # only its (stateless) limits are used here
    violations = 0
    unexplained_fallbacks = 0
    for d in decisions:
        low, high = router.limits(d.baseline_force_kn, ratings[(d.slab_id, d.pass_no)])
        if not low - 1e-9 <= d.served_force_kn <= high + 1e-9:
            violations += 1
        if d.source != "model" and d.reason in ("", "model"):
            unexplained_fallbacks += 1
    reasons = Counter(d.reason for d in decisions)

    truth = twin.truth
    phase_names = [seg.name for seg in twin.scenario.segments]
    groups: dict[str, list[PassOutcome]] = {name: [] for name in phase_names}
    for o in outcomes:
        groups[truth[(o.slab_id, o.pass_no)].phase].append(o)
    phases = {name: _summary(group, config.learners) for name, group in groups.items()}
    return {
        "scenario": scenario,
        "seed": seed,
        "passes": len(outcomes),
        "phases": phases,
        "overall": _summary(outcomes, config.learners),
        **_recovery(twin, outcomes),
        "decisions_by_reason": dict(sorted(reasons.items())),
        **{name: counters[name] for name in ("joined", "orphans", "too_late", "duplicates")},
        "limit_violations": violations,
        "fallbacks_without_reason": unexplained_fallbacks,
        "drifts": _drifts(decisions, drifts, config.learners),
        "default_learner": config.default_learner,
    }


def _read(log: Log, topic: str, kind: Any) -> list[Any]:
    """Every event on ``topic``: a record holds one event or a JSON array of them."""
    out: list[Any] = []
    for record in read_all(log, topic):
        decoded = msgspec.json.decode(record.value, type=kind | list[kind])
        out.extend(decoded if isinstance(decoded, list) else [decoded])
    return out


def _drifts(
    decisions: list[Setpoint], drifts: list[DriftDetected], learners: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    """Drift detections per product line and learner (0 for a learner that never fired)."""
    table = {line: dict.fromkeys(learners, 0) for line in sorted({d.line for d in decisions})}
    for d in drifts:
        row = table.setdefault(d.line, dict.fromkeys(learners, 0))
        row[d.learner] = max(row.get(d.learner, 0), d.detections)
    return table


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
