"""The columnar hook of a window stage: a batch aggregated with numpy gives the windows, late
rows, dead letters and counters of the same rows processed one by one."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wearwatch.events import DeadLetter, Reading, WindowResult, encode, utc
from wearwatch.runtime.dataflow import Flow, Source
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC, Context, PartitionState
from wearwatch.runtime.stages import NO_WATERMARK, StageOperator
from wearwatch.runtime.windows import from_us, hopping, session, to_us, tumbling

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class Batch:
    """What the hook reads of a decoded columnar record (``wearwatch.columnar.Columns``):
    event times in µs, one array per field, ``row_bytes`` for dead letters. String fields
    without dictionary ``codes``: the hook groups them itself."""

    ts_us: np.ndarray
    fields: dict[str, np.ndarray]
    rows: np.ndarray

    @classmethod
    def of(cls, events: list[Reading]) -> Batch:
        return cls(
            np.array([to_us(e.ts) for e in events], np.int64),
            {
                "machine_id": np.array([e.machine_id for e in events], object),
                "sensor": np.array([e.sensor for e in events], object),
                "value": np.array([e.value for e in events], np.float64),
                "unit": np.array([e.unit for e in events], object),
            },
            np.arange(len(events)),
        )

    def __len__(self) -> int:
        return len(self.ts_us)

    def row_bytes(self, i: int) -> bytes:
        f = self.fields
        return encode(
            Reading(
                ts=from_us(int(self.ts_us[i])),
                machine_id=f["machine_id"][i],
                sensor=f["sensor"][i],
                value=float(f["value"][i]),
                unit=f["unit"][i],
            )
        )


def _flow(defs: list[Any], grace: float, key_by: bool) -> StageOperator:
    flow = Flow("cols", Source("in", Reading, partitioned_by="machine_id"))
    stream = flow.stream.key_by("machine_id") if key_by else flow.stream
    stream.window(*defs, grace=grace, value="value", series="sensor").to_topic("out")
    (stage,) = flow.compile()
    return stage


def _fire(op: StageOperator, state: PartitionState, ctx: Context) -> None:
    due = state.timers.next_due()
    while due is not None and due <= state.watermark:
        for when, key in state.timers.pop_due(state.watermark):
            op.on_timer(key, when, ctx)
        due = state.timers.next_due()


def _per_event(op: StageOperator, events: list[Reading], delay_us: int) -> tuple:
    state, outputs = PartitionState(), []
    ctx = Context(0, state, outputs)
    ctx.begin_record("r", 0)
    for e in events:
        candidate = (to_us(e.ts) - delay_us) / 1e6
        if candidate > state.watermark:
            state.watermark = candidate
            _fire(op, state, ctx)
        op.process(e, "", e.ts.timestamp(), ctx)
    return _finish(op, state, ctx, outputs)


def _columnar(
    op: StageOperator, batches: list[list[Reading]], delay_us: int, json_every: int = 0
) -> tuple:
    """Each batch through ``process_columns``; with ``json_every`` n, every n-th batch row by
    row instead (a topic carrying both kinds of record)."""
    state, outputs = PartitionState(), []
    ctx = Context(0, state, outputs)
    ctx.begin_record("r", 0)
    for n, events in enumerate(batches):
        if json_every and n % json_every == json_every - 1:
            for e in events:
                candidate = (to_us(e.ts) - delay_us) / 1e6
                if candidate > state.watermark:
                    state.watermark = candidate
                    _fire(op, state, ctx)
                op.process(e, "", e.ts.timestamp(), ctx)
            continue
        cols = Batch.of(events)
        start = NO_WATERMARK if state.watermark == -np.inf else round(state.watermark * 1e6)
        marks = np.maximum.accumulate(np.maximum(cols.ts_us - delay_us, start))
        op.process_columns(cols, marks, ctx)
        state.watermark = max(state.watermark, int(marks[-1]) / 1e6)
        _fire(op, state, ctx)
    return _finish(op, state, ctx, outputs)


def _finish(op: StageOperator, state: PartitionState, ctx: Context, outputs: list) -> tuple:
    state.watermark = 4e9  # every window closes
    _fire(op, state, ctx)
    windows = {}
    letters = Counter()
    for out in outputs:
        if out.topic == DEAD_LETTER_TOPIC:
            d = msgspec.json.decode(out.value, type=DeadLetter)
            letters[(d.raw, d.reason)] += 1
        else:
            r = msgspec.json.decode(out.value, type=WindowResult)
            assert (r.key, r.kind, r.start) not in windows
            windows[(r.key, r.kind, r.start, r.end)] = r.series
    return windows, letters, state.counters["late"]


WINDOWS = [tumbling(5.0), tumbling(2.0, grace=1.0), hopping(6.0, 2.0), hopping(3.0, 2.0)]

readings = st.lists(
    st.tuples(
        st.sampled_from(["m0", "m1", "m2"]),
        st.sampled_from(["a", "b"]),
        st.integers(0, 40_000),
        st.integers(-4000, 4000).map(lambda x: x / 4),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    rows=readings,
    defs=st.lists(st.sampled_from(WINDOWS), min_size=1, max_size=3, unique_by=lambda d: d.name),
    grace=st.sampled_from([0.0, 0.5, 2.0]),
    delay_ms=st.sampled_from([0, 250, 1000]),
    key_by=st.booleans(),
    cuts=st.lists(st.integers(1, 80), max_size=4),
    json_every=st.sampled_from([0, 2, 3]),
)
def test_a_batch_gives_what_the_rows_give_one_by_one(
    rows: list,
    defs: list,
    grace: float,
    delay_ms: int,
    key_by: bool,
    cuts: list[int],
    json_every: int,
) -> None:
    events = [
        Reading(ts=utc((T0_US + ms * 1000) / 1e6), machine_id=m, sensor=s, value=v)
        for m, s, ms, v in rows
    ]
    bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
    batches = [events[a:b] for a, b in itertools.pairwise(bounds)]
    delay_us = delay_ms * 1000
    expected = _per_event(_flow(defs, grace, key_by), events, delay_us)
    op = _flow(defs, grace, key_by)
    assert getattr(op, "process_columns", None) is not None
    windows, letters, late = _columnar(op, batches, delay_us, json_every)
    want_windows, want_letters, want_late = expected
    assert sorted(windows) == sorted(want_windows)
    for key, series in want_windows.items():
        assert sorted(windows[key]) == sorted(series)
        for name, aggs in series.items():
            for agg, want in aggs.items():
                have = windows[key][name][agg]
                assert abs(have - want) <= 1e-9 * max(1.0, abs(want)), (key, name, agg)
    assert letters == want_letters
    assert late == want_late


def test_only_a_leading_window_over_columns_is_vectorised() -> None:
    def stage(build) -> StageOperator:
        flow = Flow("f", Source("in", Reading, partitioned_by="machine_id"))
        build(flow.stream).to_topic("out")
        return flow.compile()[0]

    vectorised = stage(lambda s: s.window(tumbling(5.0), series="sensor"))
    by_fn = stage(lambda s: s.window(tumbling(5.0), value=lambda r: r.value))
    sessions = stage(lambda s: s.window(session(5.0), series="sensor"))
    mapped = stage(lambda s: s.filter(lambda r: r.value > 0).window(tumbling(5.0)))
    assert hasattr(vectorised, "process_columns")
    assert not any(hasattr(op, "process_columns") for op in (by_fn, sessions, mapped))
