"""The mill pipeline as a dataflow: join by slab, then learn and route per product line.

::

    mill.passes ──(slab_id)── join A+B, TTL timers ──key_by(line)──▶ mill.1.repartition
        ──(line)── serve at the request, learn at the join ──▶ decisions / outcomes / drift

``mill.passes`` is keyed by ``slab_id`` (what both halves carry: the plant knows nothing of
product lines or partitions). The join runs in the source's partitioning; the request and
the joined pass carry the line, so ``key_by("line")`` re-keys them through the internal
topic ``mill.1.repartition`` to the per-line stage, where each line's learners, scaler and
router trust live in typed keyed state.

**Order.** Online learners depend on the order they see passes in. ``mill.passes`` has one
partition (:data:`wearwatch.topics.MILL_PASSES`), so the repartition topic has a single
upstream writer and every line's requests and joins reach the per-line stage in the source's
order, on every run and after every crash: each line sees its passes exactly in the order a
single operator reading the plant's log would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from wearwatch.events import DriftDetected, PassOutcome, Setpoint
from wearwatch.pipelines.mill.join import PassJoin
from wearwatch.pipelines.mill.pipeline import MillPipelineConfig
from wearwatch.pipelines.mill.router import RouterConfig
from wearwatch.pipelines.mill.serving import ServeAndLearn
from wearwatch.runtime.dataflow import Flow, Source, register
from wearwatch.topics import MILL_DECISIONS, MILL_DRIFT, MILL_OUTCOMES, MILL_PASSES

FLOW_NAME = "mill"


@register(FLOW_NAME)
def mill_flow(config: MillPipelineConfig | None = None, **overrides: Any) -> Flow:
    """The mill flow; ``overrides`` are :class:`MillPipelineConfig` fields (``--param
    ttl_s=60``), a ``router`` given as a dict becomes a :class:`RouterConfig`."""
    cfg = _config(config, overrides)
    passes = MILL_PASSES
    source = Source(passes.name, passes.event_type, passes.partitioned_by, passes.partitions)
    flow = Flow(FLOW_NAME, source)
    per_line = (
        flow.stream.key_by("slab_id")
        .process(PassJoin(cfg.ttl_s, cfg.memory_s))
        .key_by("line")
        .process(ServeAndLearn(cfg))
    )
    per_line.filter(_is(Setpoint)).to_topic(MILL_DECISIONS.name)
    per_line.filter(_is(PassOutcome)).to_topic(MILL_OUTCOMES.name)
    per_line.filter(_is(DriftDetected)).to_topic(MILL_DRIFT.name)
    return flow


def _is(kind: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, kind)


def _config(config: MillPipelineConfig | None, overrides: dict[str, Any]) -> MillPipelineConfig:
    if isinstance(overrides.get("router"), dict):
        overrides["router"] = RouterConfig(**overrides["router"])
    if isinstance(overrides.get("learners"), list):
        overrides["learners"] = tuple(overrides["learners"])
    base = config or MillPipelineConfig()
    return dataclasses.replace(base, **overrides) if overrides else base
