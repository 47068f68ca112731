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
* session: the item is late if ``ts + grace < wm_us``. An item further behind could touch a
  session already emitted (which closed at ``last + gap + grace <= W``); with this rule it
  never can, so sessions do not depend on the order in which upstream partitions' records
  interleave.

A late item is counted once (``late``) and dead-lettered with its bytes and the reason; never
silently dropped. Results are emitted in ``(end, definition, start)`` order with series sorted
by name, so they do not depend on arrival order either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from wearwatch.runtime.aggregate import AGGREGATIONS, SeriesStats, StatsTable

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

    @property
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
    """One key's open windows: per (definition, start) the statistics of every series (a
    :class:`SeriesStats`, or the int slot of the step's ``StatsTable`` where a columnar batch
    put it), and per session definition the open sessions. Pickled into checkpoints."""

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
        table: StatsTable | None = None,
    ) -> tuple[list[tuple[int, int, int]], int | None]:
        """Add one sample; returns the windows it is late for, as (index, start, end), and the
        earliest ``end + grace`` of the windows it went into (None: it went into none).

        A pane's series may live in a slot of ``table`` (put there by a columnar batch): it
        moves back into a :class:`SeriesStats` to take the sample."""
        late: list[tuple[int, int, int]] = []
        earliest: int | None = None
        for i, d in enumerate(self.defs):
            grace = d.grace_us
            assert grace is not None
            if d.kind == "session":
                if ts_us + grace < wm_us:
                    late.append((i, ts_us, ts_us + d.size_us))
                    continue
                close = self._add_session(windows, i, d, ts_us, series, value) + grace
                if earliest is None or close < earliest:
                    earliest = close
                continue
            for start in d.starts(ts_us):
                end = start + d.size_us
                if end + grace <= wm_us:
                    late.append((i, start, end))
                    continue
                if earliest is None or end + grace < earliest:
                    earliest = end + grace
                pane = windows.panes.get((i, start))
                if pane is None:
                    pane = windows.panes[(i, start)] = {}
                stats = pane.get(series)
                if stats is None:
                    stats = pane[series] = SeriesStats()
                elif type(stats) is int:
                    assert table is not None
                    stats = pane[series] = table.take(stats)
                stats.update((ts_us - start) / 1e6, value)
        return late, earliest

    def _add_session(
        self, windows: KeyWindows, i: int, d: WindowDef, ts_us: int, series: str, value: float
    ) -> int:
        """Add the sample to its session (merging the sessions it bridges); the session's
        end."""
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
                # The bridged session may reach further than the first one (the sample can
                # overlap an earlier session and a later, longer one at once).
                target.end = max(target.end, other.end)
                sessions.remove(other)
            if lo < target.start:
                target.start = lo
            if hi > target.end:
                target.end = hi
        stats = target.series.get(series)
        if stats is None:
            stats = target.series[series] = SeriesStats()
        stats.update((ts_us - target.anchor) / 1e6, value)
        return target.end

    def close(
        self, windows: KeyWindows, watermark_us: int, table: StatsTable | None = None
    ) -> list[Closed]:
        """Remove and return the windows with ``end + grace <= watermark_us``, in
        ``(end, definition, start)`` order (series in ``table`` slots are taken out)."""
        out: list[Closed] = []
        for (i, start), pane in list(windows.panes.items()):
            d = self.defs[i]
            end = start + d.size_us
            if end + d.grace_us <= watermark_us:  # type: ignore[operator]
                del windows.panes[(i, start)]
                for name, stats in pane.items():
                    if type(stats) is int:
                        assert table is not None
                        pane[name] = table.take(stats)
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
    out = {}
    for name in sorted(series):
        full = series[name].result()
        out[name] = {agg: float(full[agg]) for agg in aggregations}
    return out


def check_aggregations(aggregations: Sequence[str]) -> tuple[str, ...]:
    unknown = [a for a in aggregations if a not in AGGREGATIONS]
    if unknown or not aggregations:
        raise ValueError(
            f"aggregations={list(aggregations)!r}: choose from {', '.join(AGGREGATIONS)}"
        )
    return tuple(aggregations)


Getter = Callable[[Any], Any]
