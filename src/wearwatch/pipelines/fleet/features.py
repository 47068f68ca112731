"""Batch feature extraction that is the stream's: readings → the very feature vectors the fleet
flow publishes on ``fleet.features``, for training, evaluation and historian replay.

No second implementation of windows: the readings go as columnar records through the flow's
own compiled window stage (:class:`~wearwatch.runtime.harness.StreamRunner`: the worker's
record path, in process, one partition), so a model is trained on exactly what it is scored on.

>>> from wearwatch.events import Reading, utc
>>> readings = [Reading(ts=utc(t), machine_id="p1", sensor="vib", value=float(t))
...             for t in (0.0, 1.0, 2.0, 60.0)]
>>> [fv.ts.second for fv in features_from_readings(readings, (5.0,), 0.0, 0.0)]
[5]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice

from wearwatch.columnar import Columns, encode_columns, encode_events
from wearwatch.events import FeatureVector, Reading
from wearwatch.pipelines.fleet_features import FEATURES_TOPIC, fleet_features
from wearwatch.runtime.harness import StreamRunner

#: Readings per columnar record fed to the window stage.
ROWS_PER_RECORD = 100_000


def reading_records(
    readings: Columns | Iterable[Reading], rows_per_record: int = ROWS_PER_RECORD
) -> Iterator[bytes]:
    """Readings (columns, or events in event-time order) as columnar record bytes."""
    if isinstance(readings, Columns):
        for start in range(0, len(readings), rows_per_record):
            chunk = readings.take(slice(start, start + rows_per_record))
            fields = {name: chunk.codes.get(name, values) for name, values in chunk.fields.items()}
            yield encode_columns(Reading, chunk.ts_us, fields)
        return
    it = iter(readings)
    while batch := list(islice(it, rows_per_record)):
        yield encode_events(batch)


def features_from_readings(
    readings: Columns | Iterable[Reading] | Iterable[Columns],
    windows_s: Sequence[float] = (5.0, 30.0),
    grace_s: float = 2.0,
    watermark_delay_s: float = 5.0,
    on_chunk: Callable[[int], None] | None = None,
) -> list[FeatureVector]:
    """The feature vectors the fleet flow emits for ``readings`` (the same windows, grace and
    watermark delay give the same vectors, in the same order). ``readings`` may be one
    :class:`Columns`, events, or an iterable of :class:`Columns` chunks in time order (a twin's
    ``step`` results: nothing else is held in memory); ``on_chunk(rows)`` reports progress.
    Windows still open when the readings end are not emitted, as in the stream."""
    runner = StreamRunner(
        fleet_features(tuple(windows_s), grace_s), watermark_delay_s=watermark_delay_s
    )
    out: list[FeatureVector] = []
    for chunk in _chunks(readings):
        for record in reading_records(chunk):
            out.extend(runner.feed([record]).get(FEATURES_TOPIC, []))
        if on_chunk is not None:
            on_chunk(len(chunk) if isinstance(chunk, Columns) else 0)
    return out


def _chunks(
    readings: Columns | Iterable[Reading] | Iterable[Columns],
) -> Iterator[Columns | list[Reading]]:
    if isinstance(readings, Columns):
        yield readings
        return
    events: list[Reading] = []
    for item in readings:
        if isinstance(item, Columns):
            if events:
                yield events
                events = []
            yield item
        else:
            events.append(item)
    if events:
        yield events
