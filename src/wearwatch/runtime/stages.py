"""Compiled dataflow stages: the steps of a flow between two key changes, fused into one
:class:`~wearwatch.runtime.operator.KeyedOperator` that the ordinary worker runs.

Inside a stage an item travels as ``(key, value, ts_us, wm_us)`` from step to step by plain
method calls (no intermediate topic). ``wm_us`` is the watermark the item was observed under:
its source partition's watermark when it was read (after advancing on it), carried unchanged
across repartitions; windows judge lateness against it (see :mod:`wearwatch.runtime.windows`).

**Repartitioning.** A ``key_by`` on a key the stream is not partitioned by ends a stage: the
stage writes each item to the internal topic ``<flow>.<k>.repartition`` inside a
:class:`Repartitioned` envelope keyed by the new key, and stage ``k`` reads it. Records from
several upstream partitions interleave in that topic in an order that depends on timing. The
downstream results do not, because:

* every envelope carries its upstream partition (``src_partition`` of ``src_partitions``) and
  that partition's watermark; upstream stages also broadcast watermark-only envelopes (ticks)
  to every downstream partition whenever their watermark moved on by ``tick_us``, so a
  downstream partition hears from every upstream one even if no data of it lands there;
* a downstream partition's watermark is the MIN over all upstream partitions' latest
  watermarks (``-inf`` until each has reported): a window closes only when every upstream
  partition has passed it, so everything on time upstream has arrived by then;
* lateness is decided against the item's carried ``wm_us`` (its source partition's watermark),
  never the downstream one, so an item on time upstream is never late downstream and which
  items a window holds does not depend on interleaving (float sums may differ in the last
  bits, i.e. within 1e-9 relative);
* envelopes carry a per-upstream-partition sequence number; a downstream partition skips one
  it has already applied (``redelivered``), so Kafka's at-least-once replays after an upstream
  crash do not double-count.

An upstream partition that never receives a record never reports, and holds windows after the
repartition open (as in Kafka Streams or Flink without idleness): produce to every partition
of a source that is repartitioned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import msgspec
import numpy as np

from wearwatch.bus.base import partition_for
from wearwatch.events import Event, WindowResult, encode
from wearwatch.runtime.aggregate import AGGREGATIONS, StatsTable, group_partials
from wearwatch.runtime.operator import Context, KeyedOperator
from wearwatch.runtime.windows import (
    KeyWindows,
    WindowAssigner,
    WindowDef,
    from_us,
    results,
    to_us,
)

SEP = "\x1f"
NO_WATERMARK = -(2**63)


class Repartitioned(Event, tag="repartitioned", kw_only=True):
    """An item crossing a key change, or a watermark tick (no payload).

    ``watermark_us``: the upstream partition's watermark when it was written; ``item_wm_us``:
    the watermark the item was observed under at its source (lateness is judged by it).
    """

    src_partition: int
    src_partitions: int
    seq: int = -1
    watermark_us: int
    item_wm_us: int = 0
    key: str = ""
    #: The item's JSON (``null`` for a tick).
    payload: msgspec.Raw = msgspec.Raw(b"null")


class Item:
    """What flows between the steps of a stage."""

    __slots__ = ("key", "raw", "ts_us", "value", "wm_us")

    def __init__(
        self, key: str, value: Any, ts_us: int, wm_us: int, raw: bytes | None = None
    ) -> None:
        self.key = key
        self.value = value
        self.ts_us = ts_us
        self.wm_us = wm_us
        self.raw = raw

    def derive(self, value: Any, key: str | None = None) -> Item:
        """A new item from a step's output: event time from the value when it has one."""
        ts = getattr(value, "ts", None)
        ts_us = to_us(ts) if ts is not None and ts.tzinfo is not None else self.ts_us
        return Item(self.key if key is None else key, value, ts_us, self.wm_us)

    def raw_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        try:
            return encode(self.value)
        except (TypeError, msgspec.EncodeError):
            return repr(self.value).encode()


def watermark_us(ctx: Context) -> int:
    """The partition watermark in whole µs (the worker keeps it on a µs grid)."""
    wm = ctx.state.watermark
    return round(wm * 1e6) if math.isfinite(wm) else NO_WATERMARK


class Node:
    """A step of a stage; ``children`` receive what it passes on."""

    step_id: str = ""

    def __init__(self) -> None:
        self.children: list[Node] = []

    def push(self, item: Item, ctx: Context) -> None:
        raise NotImplementedError

    def forward(self, item: Item, ctx: Context) -> None:
        for child in self.children:
            child.push(item, ctx)

    def on_timer(self, key: str, when: float, ctx: Context) -> None:
        """Timers are per (step, key); only stateful steps set them."""

    def after_event(self, ctx: Context) -> None:
        """Called after every input event of the stage (repartition sinks send ticks)."""

    def walk(self) -> Iterable[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


class MapNode(Node):
    def __init__(self, fn: Callable[[Any], Any]) -> None:
        super().__init__()
        self.fn = fn

    def push(self, item: Item, ctx: Context) -> None:
        self.forward(item.derive(self.fn(item.value)), ctx)


class FilterNode(Node):
    def __init__(self, fn: Callable[[Any], bool]) -> None:
        super().__init__()
        self.fn = fn

    def push(self, item: Item, ctx: Context) -> None:
        if self.fn(item.value):
            self.forward(item, ctx)


class FlatMapNode(Node):
    def __init__(self, fn: Callable[[Any], Iterable[Any]]) -> None:
        super().__init__()
        self.fn = fn

    def push(self, item: Item, ctx: Context) -> None:
        for value in self.fn(item.value):
            self.forward(item.derive(value), ctx)


class KeyNode(Node):
    """A key change that needs no repartition (the stream is partitioned by it already)."""

    def __init__(self, fn: Callable[[Any], Any], attr: str | None = None) -> None:
        super().__init__()
        self.fn = fn
        #: The attribute the key is, if it is one (a columnar batch reads it as a column).
        self.attr = attr

    def push(self, item: Item, ctx: Context) -> None:
        self.forward(Item(str(self.fn(item.value)), item.value, item.ts_us, item.wm_us), ctx)


class StepContext:
    """What a ``process`` step's callbacks see: the key, the watermark, emit, timers."""

    __slots__ = ("_clear", "_ctx", "_item", "_node", "key")

    def __init__(self, node: ProcessNode) -> None:
        self._node = node
        self._ctx: Context | None = None
        self._item: Item | None = None
        self._clear = False
        self.key = ""

    @property
    def watermark(self) -> float:
        """The partition watermark (epoch seconds; -inf before the first event)."""
        assert self._ctx is not None
        return self._ctx.state.watermark

    def emit(self, value: Any) -> None:
        """Pass ``value`` on to the next steps, under the same key."""
        assert self._ctx is not None and self._item is not None
        self._node.forward(self._item.derive(value, self.key), self._ctx)

    def set_timer(self, when: float) -> None:
        """Call ``on_timer`` once the watermark reaches ``when`` (epoch seconds); one timer
        per key and step: setting it again moves it."""
        assert self._ctx is not None
        self._ctx.state.timers.set(f"{self._node.step_id}{SEP}{self.key}", when)

    def delete_timer(self) -> None:
        assert self._ctx is not None
        self._ctx.state.timers.delete(f"{self._node.step_id}{SEP}{self.key}")

    def count(self, name: str, n: int = 1) -> None:
        assert self._ctx is not None
        self._ctx.state.counters[name] += n

    def clear_state(self) -> None:
        """Forget this key's state once the callback returns (``init()`` starts it anew)."""
        self._clear = True


class ProcessNode(Node):
    """A stateful step: ``step.init() -> S``, ``step.on_event(value, state, ctx)``, optional
    ``step.on_timer(when, state, ctx)``. State lives in ``PartitionState.keyed[step_id]``."""

    def __init__(self, step: Any, step_id: str) -> None:
        super().__init__()
        for method in ("init", "on_event"):
            if not callable(getattr(step, method, None)):
                raise TypeError(f"process(): {step!r} has no {method}() method")
        self.step = step
        self.step_id = step_id
        self.sctx = StepContext(self)

    def _run(
        self, item: Item, key: str, ctx: Context, call: Callable[..., Any], *args: Any
    ) -> None:
        store = ctx.state.keyed.get(self.step_id)
        if store is None:
            store = ctx.state.keyed[self.step_id] = {}
        state = store.get(key)
        if state is None:
            state = store[key] = self.step.init()
        sctx = self.sctx
        sctx._ctx, sctx._item, sctx.key, sctx._clear = ctx, item, key, False
        replaced = call(*args, state, sctx)
        if sctx._clear:
            store.pop(key, None)
        elif replaced is not None:
            store[key] = replaced

    def push(self, item: Item, ctx: Context) -> None:
        self._run(item, item.key, ctx, self.step.on_event, item.value)

    def on_timer(self, key: str, when: float, ctx: Context) -> None:
        on_timer = getattr(self.step, "on_timer", None)
        if on_timer is None:
            return
        wm = watermark_us(ctx)
        item = Item(key, None, round(when * 1e6), wm)
        self._run(item, key, ctx, on_timer, when)


class WindowNode(Node):
    """Event-time windows per key; emits :class:`WindowResult` when a window closes."""

    def __init__(
        self,
        defs: Sequence[WindowDef],
        grace_us: int,
        value: Callable[[Any], float] | str,
        series: Callable[[Any], str] | str | None,
        aggregations: Sequence[str],
        step_id: str,
        input_topic: str = "",
    ) -> None:
        super().__init__()
        self.assigner = WindowAssigner(defs, grace_us)
        self.defs = self.assigner.defs
        self.value_name = value if isinstance(value, str) else None
        self.series_name = series if isinstance(series, str) else None
        self.series_constant = series is None
        self.value_of = _getter(value)
        self.series_of = _getter(series) if series is not None else (lambda _: "value")
        self.aggregations = tuple(aggregations or AGGREGATIONS)
        self.step_id = step_id
        #: Where the columnar path keeps its ``StatsTable`` in ``PartitionState.keyed``.
        self.table_id = f"{step_id}{SEP}columns"
        self.input_topic = input_topic

    def _store(self, ctx: Context) -> dict[str, KeyWindows]:
        store = ctx.state.keyed.get(self.step_id)
        if store is None:
            store = ctx.state.keyed[self.step_id] = {}
        return store

    def push(self, item: Item, ctx: Context) -> None:
        store = self._store(ctx)
        windows = store.get(item.key)
        if windows is None:
            windows = store[item.key] = KeyWindows()
        late, earliest = self.assigner.add(
            windows,
            item.ts_us,
            item.wm_us,
            str(self.series_of(item.value)),
            float(self.value_of(item.value)),
            ctx.state.keyed.get(self.table_id),
        )
        if late:
            self.late(item, late, ctx)
        if not windows:
            del store[item.key]
            return
        # The key's timer is at its earliest close; only a window this sample went into can
        # be earlier (a session that grew closes later: its timer fires early and re-arms).
        timer = f"{self.step_id}{SEP}{item.key}"
        current = ctx.state.timers.get(timer)
        if earliest is not None and (current is None or earliest / 1e6 < current):
            ctx.state.timers.set(timer, earliest / 1e6)

    def late(self, item: Item, late: list[tuple[int, int, int]], ctx: Context) -> None:
        ctx.state.counters["late"] += 1
        closed = "; ".join(
            f"{self.defs[i].name} [{from_us(start).isoformat()}, {from_us(end).isoformat()})"
            for i, start, end in late
        )
        ctx.dead_letter(
            self.input_topic,
            ctx.offset,
            item.raw_bytes(),
            f"late: window {closed} closed at watermark {from_us(item.wm_us).isoformat()}",
            "ts",
            item.ts_us / 1e6,
        )

    def columnar(self) -> bool:
        """Whether a batch can be aggregated without a Python loop per row: value and series
        are attribute names, and no definition is a session (sessions merge row by row)."""
        return (
            self.value_name is not None
            and (self.series_name is not None or self.series_constant)
            and all(d.kind != "session" for d in self.defs)
        )

    def push_columns(
        self, keys: np.ndarray, key_names: np.ndarray, cols: Any, wm_us: np.ndarray, ctx: Context
    ) -> None:
        """The vectorised :meth:`push` of a batch: ``keys`` are codes into ``key_names``,
        ``wm_us[i]`` the watermark row i is judged against. Same windows, same lateness, same
        statistics (to rounding) as the rows one by one.

        No Python runs per row, and numpy touches each row once however many windows hold it:
        rows are aggregated per (key, series, pane) — a pane being the gcd of every window size
        and step, so each window is a run of whole panes — and each window's statistics are
        merged from its panes (:meth:`GroupPartial.combine`), then into the open windows'
        table slots at once. A row late for some window (rare) is taken after the batch by
        :meth:`WindowAssigner.add`, in row order, as the per-event path takes it: it still
        joins the windows it is not late for, and is counted and dead-lettered once."""
        ts = cols.ts_us
        values = np.asarray(cols.fields[self.value_name], dtype=np.float64)
        if self.series_name is None:
            series, series_names = np.zeros(len(ts), np.int64), np.array(["value"], object)
        else:
            series, series_names = column_codes(cols, self.series_name)
        late_any = np.zeros(len(ts), bool)
        for d in self.defs:  # a row's oldest window closes first
            oldest = ((ts - d.size_us) // d.step_us + 1) * d.step_us
            late_any |= oldest + d.size_us + d.grace_us <= wm_us  # type: ignore[operator]
        store = self._store(ctx)
        touched: set[int] = set()
        on_time = np.flatnonzero(~late_any)
        if len(on_time):
            self._add_panes(
                store, keys[on_time], key_names, series[on_time], series_names,
                ts[on_time], values[on_time], touched, ctx,
            )  # fmt: skip
        table = ctx.state.keyed.get(self.table_id)
        for r in np.flatnonzero(late_any).tolist():
            key = str(key_names[keys[r]])
            windows = store.get(key)
            if windows is None:
                windows = store[key] = KeyWindows()
            name = str(series_names[series[r]])
            late, _ = self.assigner.add(
                windows, int(ts[r]), int(wm_us[r]), name, float(values[r]), table
            )
            touched.add(int(keys[r]))
            item = Item(key, None, int(ts[r]), int(wm_us[r]), cols.row_bytes(r))
            self.late(item, late, ctx)
        for code in touched:
            key = str(key_names[code])
            windows = store.get(key)
            if not windows:
                store.pop(key, None)
                continue
            nxt = windows.next_close(self.defs)
            if nxt is not None:
                ctx.state.timers.set(f"{self.step_id}{SEP}{key}", nxt / 1e6)

    def _add_panes(
        self,
        store: dict[str, KeyWindows],
        keys: np.ndarray,
        key_names: np.ndarray,
        series: np.ndarray,
        series_names: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        touched: set[int],
        ctx: Context,
    ) -> None:
        """On-time rows into every window definition through per-pane statistics."""
        pane_us = math.gcd(*(n for d in self.defs for n in (d.size_us, d.step_us)))
        pane_no = ts // pane_us
        low = int(pane_no.min())
        span = int(pane_no.max()) - low + 1
        n_series = len(series_names)
        composite = (keys.astype(np.int64) * n_series + series) * span + (pane_no - low)
        unique, groups = group_ids(composite)
        panes = group_partials(groups, (ts - pane_no * pane_us) / 1e6, values, len(unique))
        pair, pane_index = np.divmod(unique, span)
        p_start = (low + pane_index) * pane_us
        for index, d in enumerate(self.defs):
            if d.size_us == d.step_us == pane_us:  # the panes are this definition's windows
                self._merge_windows(
                    store, index, panes, pair, p_start, key_names, series_names, touched, ctx
                )
                continue
            # A pane lies in the windows starting in (its start - size, its start].
            parts, starts = [], []
            newest = p_start - p_start % d.step_us
            for hop in range((d.size_us + d.step_us - 1) // d.step_us):
                start = newest - hop * d.step_us
                inside = np.flatnonzero(start > p_start - d.size_us)
                parts.append(inside)
                starts.append(start[inside])
            part = np.concatenate(parts)
            start = np.concatenate(starts)
            w_low = int(start.min()) // d.step_us
            w_span = int(start.max()) // d.step_us - w_low + 1
            w_unique, window = group_ids(pair[part] * w_span + (start // d.step_us - w_low))
            partial = panes.combine(part, window, (p_start[part] - start) / 1e6, len(w_unique))
            w_pair, w_index = np.divmod(w_unique, w_span)
            self._merge_windows(
                store, index, partial, w_pair, (w_low + w_index) * d.step_us,
                key_names, series_names, touched, ctx,
            )  # fmt: skip

    def _merge_windows(
        self,
        store: dict[str, KeyWindows],
        index: int,
        partial: Any,
        pairs: np.ndarray,
        starts: np.ndarray,
        key_names: np.ndarray,
        series_names: np.ndarray,
        touched: set[int],
        ctx: Context,
    ) -> None:
        """Merge group g of ``partial`` — key and series ``divmod(pairs[g], n_series)``, window
        of definition ``index`` starting at ``starts[g]`` — into the window's table slot, all
        at once (after what is there: later arrivals). Python touches each group once, to find
        its slot."""
        table = ctx.state.keyed.get(self.table_id)
        if table is None:
            table = ctx.state.keyed[self.table_id] = StatsTable()
        key_codes, series_codes = np.divmod(pairs, len(series_names))
        slots = np.empty(len(pairs), np.int64)
        missing: list[tuple[int, dict[str, Any], str]] = []
        last_code, windows = -1, None
        for g, (code, series_code, start) in enumerate(
            zip(key_codes.tolist(), series_codes.tolist(), starts.tolist(), strict=True)
        ):
            if code != last_code:
                touched.add(code)
                key = str(key_names[code])
                windows = store.get(key)
                if windows is None:
                    windows = store[key] = KeyWindows()
                last_code = code
            assert windows is not None
            pane_key = (index, start)
            pane = windows.panes.get(pane_key)
            if pane is None:
                pane = windows.panes[pane_key] = {}
            name = str(series_names[series_code])
            slot = pane.get(name)
            if type(slot) is int:
                slots[g] = slot
            else:
                missing.append((g, pane, name))
        if missing:
            fresh = table.allocate(len(missing)).tolist()
            for (g, pane, name), slot in zip(missing, fresh, strict=True):
                old = pane.get(name)
                if old is not None:  # the per-event path's statistics: into the table first
                    table.put(slot, old)
                pane[name] = slot
                slots[g] = slot
        table.merge(slots, partial, np.arange(len(pairs)))

    def on_timer(self, key: str, when: float, ctx: Context) -> None:
        store = self._store(ctx)
        windows = store.get(key)
        if windows is None:
            return
        wm = watermark_us(ctx)
        for closed in self.assigner.close(windows, wm, ctx.state.keyed.get(self.table_id)):
            result = WindowResult(
                ts=from_us(closed.end),
                key=key,
                kind=self.defs[closed.index].name,
                start=from_us(closed.start),
                end=from_us(closed.end),
                series=results(closed.series, self.aggregations),
            )
            self.forward(Item(key, result, closed.end, wm), ctx)
        nxt = windows.next_close(self.defs)
        if nxt is None:
            del store[key]
        else:
            ctx.state.timers.set(f"{self.step_id}{SEP}{key}", nxt / 1e6)


def group_ids(composite: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of non-negative ints (sorted) and each one's index among them:
    ``np.unique(..., return_inverse=True)``, without a sort when the values are dense.

    >>> [a.tolist() for a in group_ids(np.array([7, 2, 7, 5]))]
    [[2, 5, 7], [2, 0, 2, 1]]
    """
    top = int(composite.max()) + 1 if len(composite) else 0
    if top > 4 * len(composite) + 4096:
        unique, inverse = np.unique(composite, return_inverse=True)
        return unique, inverse.reshape(-1)
    present = np.flatnonzero(np.bincount(composite, minlength=top))
    index = np.empty(top, np.int64)
    index[present] = np.arange(len(present))
    return present, index[composite]


def column_codes(cols: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A column as (codes, distinct values): the batch's dictionary codes if it has them."""
    codes = getattr(cols, "codes", None)
    if codes is not None and name in codes:
        return codes[name]
    values, inverse = np.unique(np.asarray(cols.fields[name]), return_inverse=True)
    return inverse.reshape(-1), values


def _getter(spec: Callable[[Any], Any] | str) -> Callable[[Any], Any]:
    if isinstance(spec, str):
        name = spec
        return lambda value: getattr(value, name)
    return spec


class TopicSink(Node):
    """``to_topic``: emit each value (an event) to ``topic``, keyed by the stream's key."""

    def __init__(self, topic: str, key: Callable[[Any], Any] | None) -> None:
        super().__init__()
        self.topic = topic
        self.key_of = key

    def push(self, item: Item, ctx: Context) -> None:
        if not isinstance(item.value, Event):
            raise TypeError(
                f"to_topic({self.topic!r}): expected an event, got {type(item.value).__name__}"
            )
        key = item.key if self.key_of is None else str(self.key_of(item.value))
        ctx.emit(self.topic, key, item.value)


class RepartitionSink(Node):
    """The end of a stage whose stream is re-keyed: envelopes to the repartition topic, and
    watermark ticks to every partition of it."""

    def __init__(self, topic: str, key: Callable[[Any], Any], partitions: int, tick_us: int):
        super().__init__()
        self.topic = topic
        self.key_of = key
        self.partitions = partitions
        self.tick_us = tick_us
        self.step_id = topic
        self.tick_keys = tick_keys(partitions)
        #: Partitions of the stage's input topic (set by the stage operator).
        self.src_partitions = 1

    def push(self, item: Item, ctx: Context) -> None:
        if not isinstance(item.value, Event):
            raise TypeError(
                f"key_by before {self.topic!r}: expected an event, got {type(item.value).__name__}"
            )
        key = str(self.key_of(item.value))
        seqs = ctx.state.extra.setdefault("flow.seq_out", {})
        seq = seqs.get(self.topic, 0)
        seqs[self.topic] = seq + 1
        envelope = Repartitioned(
            ts=from_us(item.ts_us),
            src_partition=ctx.partition,
            src_partitions=self.src_partitions,
            seq=seq,
            watermark_us=watermark_us(ctx),
            item_wm_us=item.wm_us,
            key=key,
            payload=msgspec.Raw(encode(item.value)),
        )
        ctx.emit(self.topic, key, envelope)

    def after_event(self, ctx: Context) -> None:
        wm = watermark_us(ctx)
        if wm == NO_WATERMARK:
            return
        sent = ctx.state.extra.setdefault("flow.tick_out", {})
        last = sent.get(self.topic)
        if last is not None and wm < last + self.tick_us:
            return
        sent[self.topic] = wm
        tick = Repartitioned(
            ts=from_us(wm),
            src_partition=ctx.partition,
            src_partitions=self.src_partitions,
            watermark_us=wm,
        )
        for key in self.tick_keys:
            ctx.emit(self.topic, key, tick)


def tick_keys(partitions: int) -> list[str]:
    """One record key per partition (the log hashes keys to partitions).

    >>> [partition_for(k.encode(), 3) for k in tick_keys(3)]
    [0, 1, 2]
    """
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        key = f"~wm{i}"
        found.setdefault(partition_for(key.encode(), partitions), key)
        i += 1
    return [found[p] for p in range(partitions)]


class StageOperator(KeyedOperator):
    """One compiled stage: the worker's operator for it.

    The stage takes over lateness (windows decide it by grace), and a stage reading a
    repartition topic takes its watermark from its upstream partitions.
    """

    decides_lateness: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        input_topic: str,
        input_type: Any,
        roots: list[Node],
        outputs: Sequence[str],
        *,
        source_key: Callable[[Any], Any] | None = None,
        source_key_attr: str | None = None,
        payload_type: Any = None,
        input_partitions: int = 1,
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.input_topic = input_topic  # type: ignore[misc]
        self.input_type = input_type
        self.outputs = tuple(outputs)  # type: ignore[misc]
        self.roots = roots
        self.source_key = source_key
        self.source_key_attr = source_key_attr
        self.payload_type = payload_type
        self.input_partitions = input_partitions
        self.nodes = [n for root in roots for n in root.walk()]
        self.by_step = {n.step_id: n for n in self.nodes if n.step_id}
        self.tickers = [n for n in self.nodes if isinstance(n, RepartitionSink)]
        for ticker in self.tickers:
            ticker.src_partitions = input_partitions
        self.repartitioned = input_type is Repartitioned
        if self.repartitioned:
            self.watermark_candidate = self._upstream_watermark  # type: ignore[misc]
            self._decoder = msgspec.json.Decoder(payload_type)
        self._columnar = None if self.repartitioned else self._columnar_window()
        if self._columnar is not None:
            self.process_columns = self._process_columns

    def _columnar_window(self) -> tuple[str, WindowNode] | None:
        """(key column, window step) when the stage starts with a window over columns: the
        source, optionally a key_by on an attribute it is partitioned by, then the window."""
        if len(self.roots) != 1:
            return None
        node, key = self.roots[0], self.source_key_attr
        if isinstance(node, KeyNode):
            if node.attr is None or len(node.children) != 1:
                return None
            node, key = node.children[0], node.attr
        if isinstance(node, WindowNode) and key is not None and node.columnar():
            return key, node
        return None

    def _process_columns(self, cols: Any, watermarks_us: np.ndarray, ctx: Context) -> None:
        """A columnar batch straight into the window step (vectorised); ``watermarks_us[i]``
        is the partition watermark row i is judged against (the worker's per-row value)."""
        assert self._columnar is not None
        key, window = self._columnar
        keys, names = column_codes(cols, key)
        window.push_columns(keys, names, cols, np.asarray(watermarks_us, np.int64), ctx)

    def key(self, event: Any) -> str:
        return ""

    def process(self, event: Any, key: str, ts: float, ctx: Context) -> None:
        if self.repartitioned:
            item = self._unwrap(event, ctx)
        else:
            k = "" if self.source_key is None else str(self.source_key(event))
            item = Item(k, event, to_us(event.ts), watermark_us(ctx))
        if item is not None:
            for root in self.roots:
                root.push(item, ctx)
        for ticker in self.tickers:
            ticker.after_event(ctx)

    def _unwrap(self, envelope: Repartitioned, ctx: Context) -> Item | None:
        raw = bytes(envelope.payload)
        if raw == b"null":
            return None
        seqs = ctx.state.extra.setdefault("flow.seq_in", {})
        if envelope.seq <= seqs.get(envelope.src_partition, -1):
            ctx.state.counters["redelivered"] += 1
            return None
        seqs[envelope.src_partition] = envelope.seq
        value = self._decoder.decode(raw)
        return Item(envelope.key, value, to_us(envelope.ts), envelope.item_wm_us, raw)

    def _upstream_watermark(
        self, envelope: Repartitioned, ts: float, delay_us: int, state: Any
    ) -> float:
        """MIN over the upstream partitions' latest watermarks (-inf until all reported)."""
        marks: list[int] | None = state.extra.get("flow.upstream")
        if marks is None or len(marks) != envelope.src_partitions:
            marks = state.extra["flow.upstream"] = [NO_WATERMARK] * envelope.src_partitions
        src = envelope.src_partition
        if 0 <= src < len(marks) and envelope.watermark_us > marks[src]:
            marks[src] = envelope.watermark_us
        low = min(marks)
        return -math.inf if low == NO_WATERMARK else low / 1e6

    def on_timer(self, key: str, when: float, ctx: Context) -> None:
        step_id, _, k = key.partition(SEP)
        node = self.by_step.get(step_id)
        if node is not None:
            node.on_timer(k, when, ctx)
