"""Fleet features: per machine, 5 s and 30 s event-time windows of every sensor → feature vectors.

The dataflow the runtime benchmark measures, and the first stage of the fleet pipeline: its
source is partitioned by machine, so ``key_by("machine_id")`` is free and the windows run in
the stage that reads the readings. Over columnar (Arrow) records the windows are aggregated
per batch with numpy (``StageOperator.process_columns``); over JSON, reading by reading, with
the same results.

>>> from wearwatch.events import Reading, utc
>>> flow = fleet_features(windows_s=(5.0,), grace_s=0.0)
>>> readings = [Reading(ts=utc(t), machine_id="p1", sensor="vib", value=float(t))
...             for t in (0.0, 1.0, 2.0, 60.0)]
>>> features = flow.test(readings, watermark_delay_s=0.0)["fleet.features"]
>>> features[0].machine_id, features[0].window_s, round(features[0].features["vib.slope"], 9)
('p1', 5.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from wearwatch import topics
from wearwatch.events import FeatureVector, WindowResult
from wearwatch.runtime.dataflow import Flow, Source, Stream, register
from wearwatch.runtime.windows import tumbling

READINGS_TOPIC = topics.READINGS.name
FEATURES_TOPIC = topics.FEATURES.name
#: The features of a window per sensor (``sum`` adds nothing that ``mean`` and ``count`` miss).
FEATURES: tuple[str, ...] = ("count", "mean", "std", "min", "max", "slope", "latest")


def to_feature_vector(window: WindowResult) -> FeatureVector:
    """One machine's window as a feature vector: ``<sensor>.<aggregate>`` → value."""
    features: dict[str, float] = {}
    for sensor, aggregates in window.series.items():
        features.update(zip(_names(sensor, tuple(aggregates)), aggregates.values(), strict=True))
    return FeatureVector(
        ts=window.end,
        machine_id=window.key,
        window_s=(window.end - window.start).total_seconds(),
        features=features,
    )


@cache
def _names(sensor: str, aggregates: tuple[str, ...]) -> tuple[str, ...]:
    """Feature names of a sensor (made once: a window emits ~40 of them)."""
    return tuple(f"{sensor}.{name}" for name in aggregates)


@register("fleet_features")
def fleet_features(
    windows_s: Sequence[float] = (5.0, 30.0),
    grace_s: float = 2.0,
    input_topic: str = READINGS_TOPIC,
    output_topic: str = FEATURES_TOPIC,
) -> Flow:
    """Readings (partitioned by machine) → per machine and window, a feature vector."""
    source = topics.READINGS
    flow = Flow(
        "fleet_features",
        Source(input_topic, source.event_type, partitioned_by=source.partitioned_by),
    )
    feature_vectors(flow.stream, windows_s, grace_s).to_topic(output_topic)
    return flow


def feature_vectors(readings: Stream, windows_s: Sequence[float], grace_s: float) -> Stream:
    """Readings → per machine and tumbling window, a :class:`FeatureVector`: the windows every
    fleet flow shares (the fleet pipeline, this flow, batch feature extraction)."""
    windows = readings.key_by("machine_id").window(
        *(tumbling(float(size)) for size in windows_s),
        grace=grace_s,
        value="value",
        series="sensor",
        aggregations=FEATURES,
    )
    return windows.map(to_feature_vector)
