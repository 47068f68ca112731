"""Event-time windows: tumbling, hopping and session, each with its own grace period.

Window arithmetic is on integer microseconds (event times are whole µs), never float modulo,
so window bounds are exact and the same on every path. Tumbling and hopping windows are
aligned to the epoch and half-open, ``[start, end)``:

>>> w = hopping(10.0, 5.0)
>>> w.starts(12_000_000)
[10000000, 5000000]
>>> tumbling(5.0).starts(-1)
[-5000000]

A session of a key is a maximal run of its events less than ``gap`` apart; its window is
``[first, last + gap)``.

**Closing and lateness.** A window closes (its result is emitted) once the partition's
watermark ``W`` reaches ``end + grace``. An item is judged against the watermark it was
observed under (``wm_us``: its source partition's watermark when it was read, carried across
repartitions):

* tumbling/hopping: the item is late for a window if ``end + grace <= wm_us``;
* session: the item is late if ``ts + grace <= wm_us`` (an item that far behind could touch a
  session already emitted; with this rule it never can, so sessions do not depend on the order
  in which upstream partitions' records interleave).

A late item is counted once (``late``) and dead-lettered with its bytes and the reason; never
silently dropped. Results are emitted in ``(end, definition, start)`` order with series sorted
by name, so they do not depend on arrival order either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

import numpy as np

from wearwatch.runtime.aggregate import AGGREGATIONS, GroupPartial, SeriesStats, group_partials

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(ts: datetime) -> int:
    """Exact integer microseconds since the epoch of an aware datetime.

    >>> to_us(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC))
    1000005
    """
    return (ts - EPOCH) // _US


def from_us(us: int) -> datetime:
    """The aware UTC datetime of ``us`` microseconds since the epoch (exact)."""
    return EPOCH + timedelta(microseconds=us)


def seconds_to_us(seconds: float, what: str, *, positive: bool = True) -> int:
    """A duration in whole microseconds; a clear error naming ``what`` otherwise.

    >>> seconds_to_us(2.5, "size")
    2500000
    >>> seconds_to_us(0.0, "size")
    Traceback (most recent call last):
    ...
    ValueError: size=0.0: expected a positive, finite number of seconds
    """
    ok = isinstance(seconds, int | float) and math.isfinite(seconds)
    if ok:
        us = round(seconds * 1e6)
        ok = us > 0 if positive else us >= 0
    if not ok:
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{what}={seconds!r}: expected a {kind}, finite number of seconds")
    return us


@dataclass(frozen=True)
class WindowDef:
    """One window definition. Build with :func:`tumbling`, :func:`hopping`, :func:`session`.

    ``size_us`` is the window length (the gap for sessions), ``step_us`` the hop (tumbling:
    the size; sessions: 0), ``grace_us`` None takes the window step's default grace.
    """

    kind: Literal["tumbling", "hopping", "session"]
    size_us: int
    step_us: int
    grace_us: int | None = None

    @cached_property
    def name(self) -> str:
        """What ``WindowResult.kind`` says, e.g. ``tumbling(5s)``, ``hopping(30s,5s)``."""
        size = f"{self.size_us / 1e6:g}s"
        if self.kind == "hopping":
            return f"hopping({size},{self.step_us / 1e6:g}s)"
        return f"{self.kind}({size})"

    def starts(self, ts_us: int) -> list[int]:
        """Starts of the (tumbling/hopping) windows holding ``ts_us``, latest first."""
        last = ts_us - ts_us % self.step_us
        out = []
        start = last
        while start > ts_us - self.size_us:
            out.append(start)
            start -= self.step_us
        return out

    def with_grace(self, grace_us: int) -> WindowDef:
        return (
            self
            if self.grace_us is not None
            else WindowDef(self.kind, self.size_us, self.step_us, grace_us)
        )


def tumbling(size_s: float, *, grace: float | None = None) -> WindowDef:
    """Back-to-back windows of ``size_s`` seconds."""
    size = seconds_to_us(size_s, "size_s")
    return WindowDef("tumbling", size, size, _grace(grace))


def hopping(size_s: float, step_s: float, *, grace: float | None = None) -> WindowDef:
    """Windows of ``size_s`` seconds starting every ``step_s`` seconds (``step_s`` divides
    nothing in particular, but must not exceed the size: a gap between windows would drop
    events)."""
    size = seconds_to_us(size_s, "size_s")
    step = seconds_to_us(step_s, "step_s")
    if step > size:
        raise ValueError(f"step_s={step_s!r}: must not exceed size_s={size_s!r}")
    return WindowDef("hopping", size, step, _grace(grace))


def session(gap_s: float, *, grace: float | None = None) -> WindowDef:
    """Per-key sessions: a window closes after ``gap_s`` seconds without events."""
    return WindowDef("session", seconds_to_us(gap_s, "gap_s"), 0, _grace(grace))


def _grace(grace: float | None) -> int | None:
    return None if grace is None else seconds_to_us(grace, "grace", positive=False)


# -- per-key window state --------------------------------------------------------------------


class Session:
    """An open session: ``[start, end)`` with ``end = last + gap``; series statistics hold
    times relative to ``anchor`` (shifted when sessions merge)."""

    __slots__ = ("anchor", "end", "series", "start")

    def __init__(self, start: int, end: int, anchor: int) -> None:
        self.start = start
        self.end = end
        self.anchor = anchor
        self.series: dict[str, SeriesStats] = {}

    def __getstate__(self) -> tuple:
        return (self.start, self.end, self.anchor, self.series)

    def __setstate__(self, state: tuple) -> None:
        self.start, self.end, self.anchor, self.series = state


class KeyWindows:
    """One key's open windows: per (definition, start) the statistics of every series, and
    per session definition the open sessions. Pickled into checkpoints."""

    __slots__ = ("panes", "sessions")

    def __init__(self) -> None:
        self.panes: dict[tuple[int, int], dict[str, SeriesStats]] = {}
        self.sessions: dict[int, list[Session]] = {}

    def __getstate__(self) -> tuple:
        return (self.panes, self.sessions)

    def __setstate__(self, state: tuple) -> None:
        self.panes, self.sessions = state

    def __bool__(self) -> bool:
        return bool(self.panes) or any(self.sessions.values())

    def next_close(self, defs: Sequence[WindowDef]) -> int | None:
        """The earliest ``end + grace`` over the open windows (None if none is open)."""
        closes = [start + defs[i].size_us + defs[i].grace_us for (i, start) in self.panes]
        for i, sessions in self.sessions.items():
            closes.extend(s.end + defs[i].grace_us for s in sessions)
        return min(closes) if closes else None


def shifted(stats: SeriesStats, by_s: float) -> SeriesStats:
    """``stats`` with every sample time moved by ``by_s`` seconds (variances unchanged)."""
    n, v_mean, v_var, t_mean, t_var, cov, vmin, vmax, latest_t, latest_v = stats.__getstate__()
    stats.__setstate__(
        (n, v_mean, v_var, t_mean + by_s, t_var, cov, vmin, vmax, latest_t + by_s, latest_v)
    )
    return stats


@dataclass(frozen=True)
class Closed:
    """A window ready to emit: definition index, bounds in µs, series statistics."""

    index: int
    start: int
    end: int
    series: dict[str, SeriesStats]


class WindowAssigner:
    """The window logic of one step, independent of how items reach it (per event or a
    columnar batch): add samples, decide lateness, close windows."""

    def __init__(self, defs: Sequence[WindowDef], grace_us: int) -> None:
        if not defs:
            raise ValueError("window(): give at least one window definition")
        self.defs = tuple(d.with_grace(grace_us) for d in defs)
        names = [d.name for d in self.defs]
        if len(set(names)) != len(names):
            raise ValueError(f"window(): the same window definition twice ({names})")

    def add(
        self,
        windows: KeyWindows,
        ts_us: int,
        wm_us: int,
        series: str,
        value: float,
    ) -> list[tuple[int, int, int]]:
        """Add one sample; returns the windows it is late for, as (index, start, end)."""
        late: list[tuple[int, int, int]] = []
        for i, d in enumerate(self.defs):
            grace = d.grace_us
            assert grace is not None
            if d.kind == "session":
                if ts_us + grace <= wm_us:
                    late.append((i, ts_us, ts_us + d.size_us))
                    continue
                self._add_session(windows, i, d, ts_us, series, value)
                continue
            for start in d.starts(ts_us):
                end = start + d.size_us
                if end + grace <= wm_us:
                    late.append((i, start, end))
                    continue
                pane = windows.panes.get((i, start))
                if pane is None:
                    pane = windows.panes[(i, start)] = {}
                stats = pane.get(series)
                if stats is None:
                    stats = pane[series] = SeriesStats()
                stats.update((ts_us - start) / 1e6, value)
        return late

    def add_columns(
        self,
        store: dict[str, KeyWindows],
        keys: tuple[np.ndarray, np.ndarray],
        series: tuple[np.ndarray, np.ndarray],
        ts_us: np.ndarray,
        values: np.ndarray,
        wm_us: np.ndarray,
    ) -> tuple[list[tuple[int, list[tuple[int, int, int]]]], list[str]]:
        """:meth:`add` for a whole batch at once (tumbling and hopping windows).

        Row ``i`` is a sample of key ``keys[1][keys[0][i]]`` and series
        ``series[1][series[0][i]]`` (codes into names), at ``ts_us[i]`` with ``values[i]``,
        observed under watermark ``wm_us[i]``.

        No Python runs per sample. The rows are cut into *panes* (the largest span every
        window boundary falls on: the gcd of all sizes and steps), whose statistics numpy
        computes per (key, pane, series) (:func:`~wearwatch.runtime.aggregate.group_partials`),
        each row once however many windows hold it; each window's statistics are merged from
        its panes (:meth:`~wearwatch.runtime.aggregate.GroupPartial.combine`), then with what
        the window held before, vectorised too. A row late for some window goes through
        :meth:`add` after the batch, in row order, as the per-event path takes it. Windows,
        lateness and ``latest`` equal :meth:`add`'s row by row; sums and moments agree to
        rounding.

        Returns the late rows with the windows each is late for, and the keys touched.
        """
        if any(d.kind == "session" for d in self.defs):
            raise ValueError("add_columns: session windows take samples one by one")
        late_any = np.zeros(len(ts_us), dtype=bool)
        for d in self.defs:
            oldest = ((ts_us - d.size_us) // d.step_us + 1) * d.step_us
            late_any |= oldest + d.size_us + d.grace_us <= wm_us  # type: ignore[operator]
        late_rows = np.flatnonzero(late_any).tolist()
        on_time = np.flatnonzero(~late_any) if late_rows else slice(None)
        touched: dict[str, None] = {}
        if len(ts_us[on_time]):
            self._add_panes(
                store,
                touched,
                (keys[0][on_time], keys[1]),
                (series[0][on_time], series[1]),
                ts_us[on_time],
                values[on_time],
            )
        late: list[tuple[int, list[tuple[int, int, int]]]] = []
        for row in late_rows:  # after the on-time rows, in row order: as add() would see them
            key = str(keys[1][keys[0][row]])
            windows = store.get(key)
            if windows is None:
                windows = store[key] = KeyWindows()
            name = str(series[1][series[0][row]])
            missed = self.add(windows, int(ts_us[row]), int(wm_us[row]), name, float(values[row]))
            if missed:
                late.append((row, missed))
            if windows:
                touched[key] = None
            elif key not in touched:
                del store[key]
        return late, list(touched)

    def _add_panes(
        self,
        store: dict[str, KeyWindows],
        touched: dict[str, None],
        keys: tuple[np.ndarray, np.ndarray],
        series: tuple[np.ndarray, np.ndarray],
        ts_us: np.ndarray,
        values: np.ndarray,
    ) -> None:
        """Fold on-time rows into their windows through per-pane statistics."""
        (key_codes, key_names), (series_codes, series_names) = keys, series
        pane_us = math.gcd(*(n for d in self.defs for n in (d.size_us, d.step_us)))
        pane_no = ts_us // pane_us
        pane_group, n_panes = _dense_ids(
            (pane_no - pane_no.min(), int(pane_no.max() - pane_no.min()) + 1),
            (key_codes, len(key_names)),
            (series_codes, len(series_names)),
        )
        panes = group_partials(pane_group, (ts_us - pane_no * pane_us) / 1e6, values, n_panes)
        first = np.full(n_panes, len(ts_us))
        np.minimum.at(first, pane_group, np.arange(len(ts_us)))
        p_start, p_key, p_series = pane_no[first] * pane_us, key_codes[first], series_codes[first]
        for i, d in enumerate(self.defs):
            if d.size_us == d.step_us == pane_us:  # the panes are this definition's windows
                partial, w_start, w_key, w_series = panes, p_start, p_key, p_series
            else:
                # Each pane lies in the windows starting in (start - size, start].
                parts, starts = [], []
                newest = p_start - p_start % d.step_us
                for j in range(-(-d.size_us // d.step_us)):
                    start = newest - j * d.step_us
                    inside = np.flatnonzero(start > p_start - d.size_us)
                    parts.append(inside)
                    starts.append(start[inside])
                part = np.concatenate(parts)
                start = np.concatenate(starts)
                number = start // d.step_us
                window, n_windows = _dense_ids(
                    (number - number.min(), int(number.max() - number.min()) + 1),
                    (p_key[part], len(key_names)),
                    (p_series[part], len(series_names)),
                )
                partial = panes.combine(part, window, (p_start[part] - start) / 1e6, n_windows)
                head = np.full(n_windows, len(part))
                np.minimum.at(head, window, np.arange(len(part)))
                w_start, w_key, w_series = start[head], p_key[part][head], p_series[part][head]
            self._fold(
                store, touched, i, partial, w_start, key_names[w_key], series_names[w_series]
            )

    @staticmethod
    def _fold(
        store: dict[str, KeyWindows],
        touched: dict[str, None],
        index: int,
        partial: GroupPartial,
        starts: np.ndarray,
        keys: np.ndarray,
        series: np.ndarray,
    ) -> None:
        """Each window's statistics into the store: the one loop, a turn per window and series
        (statistics stay plain numbers; those a window held already merge vectorised)."""
        for key in dict.fromkeys(keys.tolist()):
            touched[key] = None
            if key not in store:
                store[key] = KeyWindows()
        states = partial.states()
        held: list[SeriesStats] = []
        held_new: list[int] = []
        last: tuple[str, int] | None = None
        pane: dict[str, SeriesStats] = {}
        # Groups come ordered by window, then key: consecutive series share a pane.
        rows = zip(keys.tolist(), starts.tolist(), series.tolist(), strict=True)
        for g, (key, start, name) in enumerate(rows):
            if last != (key, start):
                last = (key, start)
                panes = store[key].panes
                pane = panes.get((index, start))  # type: ignore[assignment]
                if pane is None:
                    pane = panes[(index, start)] = {}
            stats = pane.get(name)
            if stats is None:
                pane[name] = SeriesStats.of_state(states[g])
            elif stats.lazy:
                held.append(stats)
                held_new.append(g)
            else:  # the per-event path built River estimators for it: merge there
                stats.merge(SeriesStats.of_state(states[g]))
        if held:
            k = len(held)
            both = GroupPartial.of_states([s.state() for s in held] + [states[g] for g in held_new])
            into = np.tile(np.arange(k), 2)  # earlier samples first: later ones win ties
            merged = both.combine(np.arange(2 * k), into, np.zeros(2 * k), k)
            for stats, state in zip(held, merged.states(), strict=True):
                stats.set_state(state)

    def _add_session(
        self, windows: KeyWindows, i: int, d: WindowDef, ts_us: int, series: str, value: float
    ) -> None:
        sessions = windows.sessions.setdefault(i, [])
        lo, hi = ts_us, ts_us + d.size_us
        touching = [s for s in sessions if lo < s.end and hi > s.start]
        if not touching:
            target = Session(lo, hi, ts_us)
            sessions.append(target)
        else:
            touching.sort(key=lambda s: s.start)
            target = touching[0]
            for other in touching[1:]:
                merge_series(target, other)
                sessions.remove(other)
            if lo < target.start:
                target.start = lo
            if hi > target.end:
                target.end = hi
        stats = target.series.get(series)
        if stats is None:
            stats = target.series[series] = SeriesStats()
        stats.update((ts_us - target.anchor) / 1e6, value)

    def close(self, windows: KeyWindows, watermark_us: int) -> list[Closed]:
        """Remove and return the windows with ``end + grace <= watermark_us``, in
        ``(end, definition, start)`` order."""
        out: list[Closed] = []
        for (i, start), pane in list(windows.panes.items()):
            d = self.defs[i]
            end = start + d.size_us
            if end + d.grace_us <= watermark_us:  # type: ignore[operator]
                del windows.panes[(i, start)]
                out.append(Closed(i, start, end, pane))
        for i, sessions in windows.sessions.items():
            grace = self.defs[i].grace_us
            keep = []
            for s in sessions:
                if s.end + grace <= watermark_us:  # type: ignore[operator]
                    # Session times are anchored at its first sample; the slope and latest do
                    # not depend on the origin, so no shift is needed to report them.
                    out.append(Closed(i, s.start, s.end, s.series))
                else:
                    keep.append(s)
            sessions[:] = keep
        out.sort(key=lambda c: (c.end, c.index, c.start))
        return out


def _dense_ids(*columns: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    """Dense ids (0..n-1) of the distinct rows of integer columns, each given with its range
    (values in ``[0, range)``): by counting when the id space is small (the usual batch), by
    sorting otherwise.

    >>> ids, n = _dense_ids((np.array([2, 0, 2]), 3), (np.array([1, 1, 1]), 2))
    >>> ids.tolist(), n
    ([1, 0, 1], 2)
    """
    span = 1
    for _, size in columns:
        span *= size
    length = len(columns[0][0])
    if span < 2**62:
        ids = np.zeros(length, dtype=np.int64)
        for values, size in columns:
            ids = ids * size + values
        if span <= 4 * length + 4096:
            present = np.zeros(span, dtype=bool)
            present[ids] = True
            dense = np.cumsum(present) - 1
            return dense[ids], int(dense[-1]) + 1
        unique, inverse = np.unique(ids, return_inverse=True)
        return inverse.reshape(-1), len(unique)
    stacked = np.stack([values for values, _ in columns], axis=1)
    unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return inverse.reshape(-1), len(unique)


def merge_series(into: Session, other: Session) -> None:
    """Fold ``other``'s series into ``into``, re-expressing its times against ``into``'s
    anchor."""
    offset = (other.anchor - into.anchor) / 1e6
    for name, stats in other.series.items():
        mine = into.series.get(name)
        moved = shifted(stats, offset)
        if mine is None:
            into.series[name] = moved
        else:
            mine.merge(moved)


def results(
    series: dict[str, SeriesStats], aggregations: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per series (sorted by name), the requested aggregates."""
    return {name: series[name].result(aggregations) for name in sorted(series)}


def check_aggregations(aggregations: Sequence[str]) -> tuple[str, ...]:
    unknown = [a for a in aggregations if a not in AGGREGATIONS]
    if unknown or not aggregations:
        raise ValueError(
            f"aggregations={list(aggregations)!r}: choose from {', '.join(AGGREGATIONS)}"
        )
    return tuple(aggregations)


Getter = Callable[[Any], Any]
