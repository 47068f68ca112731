"""Window features of readings per machine: the smallest complete dataflow, two stages.

Readings arrive keyed by their producers' ``machine/sensor`` (no single field), so the flow
re-keys by machine (a repartition), takes 5 s and 30 s tumbling windows per sensor and turns
each closed window into a :class:`~wearwatch.events.FeatureVector` (``<sensor>.<aggregate>``).
``wearwatch worker reading_windows`` runs both stages in one process.
"""

from __future__ import annotations

from wearwatch.events import FeatureVector, Reading, WindowResult
from wearwatch.pipelines.reading_totals import READINGS_TOPIC
from wearwatch.runtime.dataflow import Flow, Source, register
from wearwatch.runtime.windows import tumbling

FEATURES_TOPIC = "fleet.reading_windows"


def to_features(w: WindowResult) -> FeatureVector:
    features = {f"{s}.{agg}": v for s, aggs in w.series.items() for agg, v in aggs.items()}
    return FeatureVector(
        ts=w.end,
        machine_id=w.key,
        window_s=(w.end - w.start).total_seconds(),
        features=features,
    )


@register("reading_windows")
def reading_windows(
    windows_s: tuple[float, ...] = (5.0, 30.0),
    grace_s: float = 2.0,
    input_topic: str = READINGS_TOPIC,
    output_topic: str = FEATURES_TOPIC,
) -> Flow:
    flow = Flow("reading_windows", Source(input_topic, Reading))
    per_machine = flow.stream.key_by("machine_id")
    windows = per_machine.window(
        *(tumbling(size) for size in windows_s), grace=grace_s, value="value", series="sensor"
    )
    windows.map(to_features).to_topic(output_topic)
    return flow
