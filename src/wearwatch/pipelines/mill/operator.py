"""The mill pipeline as a runtime operator.

``mill.passes`` carries both halves of the join (PassRequest and PassActual) and is keyed by
product line: every pass of a line lands on one partition, so the line's learners see all of
its passes, in the log's order, and a replay sees the same order. One :class:`MillPipeline`
lives in each partition's state and is checkpointed with it (learners included), so a worker
killed mid-run and restarted makes the same decisions as one that never stopped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from wearwatch import topics
from wearwatch.events import DriftDetected, PassActual, PassOutcome, PassRequest, Setpoint
from wearwatch.pipelines.mill.pipeline import MillPipeline, MillPipelineConfig
from wearwatch.pipelines.mill.router import RouterConfig
from wearwatch.runtime.operator import Context, KeyedOperator

PASSES_TOPIC = topics.MILL_PASSES.name
DECISIONS_TOPIC = topics.MILL_DECISIONS.name
OUTCOMES_TOPIC = topics.MILL_OUTCOMES.name
DRIFT_TOPIC = topics.MILL_DRIFT.name
TWIN_TOPIC = topics.MILL_TWIN.name
CONTROL_TOPIC = topics.MILL_CONTROL.name

#: Pipeline counters mirrored into the runtime's per-partition counters.
_MIRRORED = {"duplicates": "duplicate", "orphans": "orphans", "joined": "joined"}


class MillOperator(KeyedOperator):
    name = "mill"
    input_topic = PASSES_TOPIC
    input_type = PassRequest | PassActual
    outputs = (DECISIONS_TOPIC, OUTCOMES_TOPIC, DRIFT_TOPIC)

    def __init__(self, config: MillPipelineConfig | None = None, **overrides: Any) -> None:
        """``overrides`` are MillPipelineConfig fields (``--param ttl_s=60``); a ``router``
        given as a dict becomes a RouterConfig."""
        if isinstance(overrides.get("router"), dict):
            overrides["router"] = RouterConfig(**overrides["router"])
        if isinstance(overrides.get("learners"), list):
            overrides["learners"] = tuple(overrides["learners"])
        base = config or MillPipelineConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base

    def key(self, event: PassRequest | PassActual) -> str:
        return event.slab_id

    def _pipeline(self, ctx: Context) -> MillPipeline:
        pipeline = ctx.state.extra.get("mill")
        if pipeline is None:
            pipeline = ctx.state.extra["mill"] = MillPipeline(self.config)
        return pipeline

    def process(self, event: PassRequest | PassActual, key: str, ts: float, ctx: Context) -> None:
        pipeline = self._pipeline(ctx)
        pipeline.on_watermark(ctx.watermark)
        for out in pipeline.on_event(event, ctx.watermark):
            if isinstance(out, Setpoint):
                ctx.emit(DECISIONS_TOPIC, out.line, out)
            elif isinstance(out, PassOutcome):
                ctx.emit(OUTCOMES_TOPIC, out.line, out)
            elif isinstance(out, DriftDetected):
                ctx.emit(DRIFT_TOPIC, out.line, out)
                ctx.count("drifts")
        counters = ctx.state.counters
        for source, target in _MIRRORED.items():
            counters[target] = pipeline.counters[source]

    def on_late(
        self, event: PassRequest | PassActual, raw_offset: int, ts: float, ctx: Context
    ) -> None:
        """The join has its own TTL: a late half still reaches it and is counted there
        (as a late orphan), instead of going to the dead letters."""
        self.process(event, self.key(event), ts, ctx)
