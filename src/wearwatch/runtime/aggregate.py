"""Window aggregates of one series: count, sum, mean, std, min, max, slope and latest.

:class:`SeriesStats` is mergeable: the per-event path updates it one sample at a time, the
columnar path computes the same sufficient statistics for a whole group of samples with numpy
(:func:`group_partials`) and merges them in. Moments and their merges are River's (``Var`` and
``Cov`` with Chan's parallel formulas), so both paths share one implementation of the maths.

Time enters the slope as seconds since the window's start (``t``), never as epoch seconds:
variances of values near 1.7e9 lose every significant digit.

>>> s = SeriesStats()
>>> for t, v in [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]:
...     s.update(t, v)
>>> result = s.result()
>>> [(name, round(result[name], 6)) for name in AGGREGATIONS]  # doctest: +NORMALIZE_WHITESPACE
[('count', 3), ('sum', 9.0), ('mean', 3.0), ('std', 1.632993), ('min', 1.0), ('max', 5.0),
 ('slope', 2.0), ('latest', 5.0)]

Merging two halves gives the statistics of the whole (to rounding):

>>> a, b = SeriesStats(), SeriesStats()
>>> a.update(0.0, 1.0); a.update(1.0, 3.0); b.update(2.0, 5.0)
>>> merged = a.merge(b).result()
>>> all(abs(merged[k] - s.result()[k]) < 1e-12 for k in AGGREGATIONS)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import stats

#: The aggregations a window step may ask for, in output order.
AGGREGATIONS: tuple[str, ...] = ("count", "sum", "mean", "std", "min", "max", "slope", "latest")


#: A :class:`SeriesStats` as plain numbers: (n, value mean, value variance, time mean, time
#: variance, covariance, min, max, latest time, latest value); variances are population ones.
State = tuple[float, float, float, float, float, float, float, float, float, float]


class SeriesStats:
    """Sufficient statistics of one series in one window (population std, least-squares slope
    of value on time, latest = value at the largest time, later arrival wins ties).

    Statistics made from numbers (a checkpoint, a :class:`StatsTable` slot, a
    :class:`GroupPartial`) stay numbers until a sample is added or another is merged in:
    windows closed by the columnar path are read once and dropped, and building River's
    three estimators for each costs more than everything else done with them.
    """

    __slots__ = ("_state", "cov", "latest_t", "latest_v", "max", "min", "t_var", "v_var")

    def __init__(self) -> None:
        self._state: State | None = None
        self.v_var = stats.Var(ddof=0)
        self.t_var = stats.Var(ddof=0)
        self.cov = stats.Cov(ddof=0)
        self.min = math.inf
        self.max = -math.inf
        self.latest_t = -math.inf
        self.latest_v = math.nan

    def _live(self) -> None:
        """Build River's estimators from the numbers (before a sample or a merge)."""
        state = self._state
        if state is None:
            return
        self._state = None
        n, v_mean, v_var, t_mean, t_var, cov, vmin, vmax, latest_t, latest_v = state
        self.v_var = stats.Var._from_state(n, v_mean, v_var, ddof=0)
        self.t_var = stats.Var._from_state(n, t_mean, t_var, ddof=0)
        self.cov = stats.Cov._from_state(n, t_mean, v_mean, cov, ddof=0)
        self.min, self.max, self.latest_t, self.latest_v = vmin, vmax, latest_t, latest_v

    @property
    def n(self) -> int:
        return int(self._state[0] if self._state is not None else self.v_var.n)

    def update(self, t: float, v: float) -> None:
        """Add one sample: ``t`` seconds since the window's start, value ``v``."""
        if self._state is not None:
            self._live()
        self.v_var.update(v)
        self.t_var.update(t)
        self.cov.update(t, v)
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        if t >= self.latest_t:
            self.latest_t, self.latest_v = t, v

    def merge(self, other: SeriesStats) -> SeriesStats:
        """Fold ``other`` (samples that arrived after this one's) into this one; ``other`` is
        consumed (its estimators may be reused)."""
        if other.n == 0:
            return self
        self._live()
        other._live()
        if self.n == 0:
            self.v_var, self.t_var, self.cov = other.v_var, other.t_var, other.cov
        else:
            self.v_var += other.v_var
            self.t_var += other.t_var
            self.cov += other.cov
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.latest_t >= self.latest_t:
            self.latest_t, self.latest_v = other.latest_t, other.latest_v
        return self

    @classmethod
    def from_partial(cls, partial: GroupPartial, i: int) -> SeriesStats:
        """The statistics of group ``i`` of a :func:`group_partials` result."""
        out = cls.__new__(cls)
        # Plain floats: numpy scalars would leak into results, which msgspec cannot encode.
        out.__setstate__(tuple(float(getattr(partial, name)[i]) for name in StatsTable._FIELDS))
        return out

    def result(self) -> dict[str, Any]:
        n, v_mean, v_var, _, t_var, cov, vmin, vmax, _, latest_v = self.__getstate__()
        count = int(n)
        return {
            "count": count,
            "sum": v_mean * count,
            "mean": v_mean,
            "std": math.sqrt(max(v_var, 0.0)),
            "min": vmin,
            "max": vmax,
            "slope": cov / t_var if count > 1 and t_var > 0 else 0.0,
            "latest": latest_v,
        }

    def __getstate__(self) -> State:
        """Checkpoints store plain numbers, not River objects (smaller, version-proof)."""
        if self._state is not None:
            return self._state
        return (
            float(self.v_var.n),
            self.v_var.mean.get(),
            self.v_var.get(),
            self.t_var.mean.get(),
            self.t_var.get(),
            self.cov.get(),
            self.min,
            self.max,
            self.latest_t,
            self.latest_v,
        )

    def __setstate__(self, state: tuple[float, ...]) -> None:
        self._state = tuple(state)  # type: ignore[assignment]


@dataclass(frozen=True)
class GroupPartial:
    """Per-group sufficient statistics of a batch, one array entry per group (population
    variances and covariance; times in seconds since each sample's window start)."""

    count: np.ndarray
    v_mean: np.ndarray
    v_var: np.ndarray
    t_mean: np.ndarray
    t_var: np.ndarray
    cov: np.ndarray
    min: np.ndarray
    max: np.ndarray
    latest_t: np.ndarray
    latest_v: np.ndarray

    def combine(
        self, parts: np.ndarray, into: np.ndarray, shift_s: np.ndarray, n_groups: int
    ) -> GroupPartial:
        """The statistics of groups made of this partial's groups: part ``j`` is group
        ``parts[j]`` of this partial, belonging to group ``into[j]`` of the result, its times
        moved by ``shift_s[j]`` seconds (a pane's times onto its window's). A group may take
        part in several results (overlapping windows). Chan's parallel formulas, vectorised
        (as :meth:`StatsTable.merge`, for k parts at once); each result is shifted by its first
        part's means first, so a constant series keeps exactly zero spread. ``latest`` among
        equal times: the later part wins.

        >>> p = group_partials(np.array([0, 0, 1]), np.array([0.0, 1.0, 0.0]),
        ...                    np.array([1.0, 3.0, 5.0]), 2)
        >>> whole = p.combine(np.array([0, 1]), np.array([0, 0]), np.array([0.0, 2.0]), 1)
        >>> whole.count.tolist(), whole.v_mean.tolist(), whole.latest_v.tolist()
        ([3], [3.0], [5.0])
        >>> round(float(whole.cov[0] / whole.t_var[0]), 12)  # slope of (0,1) (1,3) (2,5)
        2.0
        """
        n = self.count[parts].astype(np.float64)
        total = np.bincount(into, weights=n, minlength=n_groups)
        safe = np.maximum(total, 1.0)
        first = np.full(n_groups, len(parts))
        np.minimum.at(first, into, np.arange(len(parts)))
        first = np.minimum(first, max(len(parts) - 1, 0))
        t_part = self.t_mean[parts] + shift_s
        v_part = self.v_mean[parts]
        t0 = t_part[first] if len(parts) else np.zeros(n_groups)
        v0 = v_part[first] if len(parts) else np.zeros(n_groups)
        ts = t_part - t0[into]
        vs = v_part - v0[into]
        t_mean = np.bincount(into, weights=n * ts, minlength=n_groups) / safe
        v_mean = np.bincount(into, weights=n * vs, minlength=n_groups) / safe
        dt = ts - t_mean[into]
        dv = vs - v_mean[into]
        v_var = np.bincount(into, weights=n * (self.v_var[parts] + dv * dv), minlength=n_groups)
        t_var = np.bincount(into, weights=n * (self.t_var[parts] + dt * dt), minlength=n_groups)
        cov = np.bincount(into, weights=n * (self.cov[parts] + dt * dv), minlength=n_groups)
        vmin = np.full(n_groups, np.inf)
        np.minimum.at(vmin, into, self.min[parts])
        vmax = np.full(n_groups, -np.inf)
        np.maximum.at(vmax, into, self.max[parts])
        latest_part = self.latest_t[parts] + shift_s
        latest_t = np.full(n_groups, -np.inf)
        np.maximum.at(latest_t, into, latest_part)
        at_max = np.flatnonzero(latest_part == latest_t[into])
        last = np.full(n_groups, -1)
        np.maximum.at(last, into[at_max], at_max)
        latest_v = np.where(last >= 0, self.latest_v[parts][last], np.nan)
        return GroupPartial(
            total.astype(np.int64),
            v_mean + v0,
            v_var / safe,
            t_mean + t0,
            t_var / safe,
            cov / safe,
            vmin,
            vmax,
            latest_t,
            latest_v,
        )


def group_partials(groups: np.ndarray, t: np.ndarray, v: np.ndarray, n_groups: int) -> GroupPartial:
    """Vectorised :class:`SeriesStats` of every group in a batch.

    ``groups`` holds each sample's group index in ``[0, n_groups)``; ``t`` its time in seconds
    since its window's start; ``v`` its value. Two passes (means, then deviations) keep the
    variances as accurate as Welford's. Latest: the value at the largest ``t``, the later
    sample in batch order winning ties.

    >>> p = group_partials(np.array([0, 1, 0]), np.array([0.0, 5.0, 1.0]),
    ...                    np.array([2.0, 7.0, 4.0]), 2)
    >>> p.count.tolist(), p.v_mean.tolist(), p.cov.tolist(), p.latest_v.tolist()
    ([2, 1], [3.0, 7.0], [0.5, 0.0], [4.0, 7.0])
    """
    count = np.bincount(groups, minlength=n_groups)
    safe = np.maximum(count, 1)
    # Shift each group to its first sample, so a constant series has exactly zero spread
    # (the slope of samples that all share one time is 0, not noise over ~1e-19).
    t0 = np.zeros(n_groups)
    v0 = np.zeros(n_groups)
    t0[groups[::-1]] = t[::-1]
    v0[groups[::-1]] = v[::-1]
    ts = t - t0[groups]
    vs = v - v0[groups]
    v_mean = np.bincount(groups, weights=vs, minlength=n_groups) / safe
    t_mean = np.bincount(groups, weights=ts, minlength=n_groups) / safe
    dv = vs - v_mean[groups]
    dt = ts - t_mean[groups]
    v_mean += v0
    t_mean += t0
    v_var = np.bincount(groups, weights=dv * dv, minlength=n_groups) / safe
    t_var = np.bincount(groups, weights=dt * dt, minlength=n_groups) / safe
    cov = np.bincount(groups, weights=dt * dv, minlength=n_groups) / safe
    vmin = np.full(n_groups, np.inf)
    np.minimum.at(vmin, groups, v)
    vmax = np.full(n_groups, -np.inf)
    np.maximum.at(vmax, groups, v)
    # Latest: the group's largest t, and of the rows at it the last one (no sort: O(n)).
    latest_t = np.full(n_groups, -np.inf)
    np.maximum.at(latest_t, groups, t)
    at_latest = np.flatnonzero(t == latest_t[groups])
    last_row = np.full(n_groups, -1)
    np.maximum.at(last_row, groups[at_latest], at_latest)
    latest_v = np.full(n_groups, np.nan)
    present = last_row >= 0
    latest_v[present] = v[last_row[present]]
    return GroupPartial(count, v_mean, v_var, t_mean, t_var, cov, vmin, vmax, latest_t, latest_v)


class StatsTable:
    """Many series' window statistics in numpy arrays, one slot each: what the columnar path
    keeps so a batch's :func:`group_partials` merge into the open windows in one vectorised
    step (Chan's parallel formulas, as River's ``Var``/``Cov`` merges apply them one object
    at a time; a Python merge per group would cost ~20 µs, a batch has hundreds of groups).

    A slot reads back as a :class:`SeriesStats` (:meth:`stats`) and one can be stored into a
    slot (:meth:`put`), so the per-event path and the columnar path share windows.

    >>> table = StatsTable()
    >>> slots = table.allocate(1)
    >>> p = group_partials(np.array([0, 0]), np.array([0.0, 1.0]), np.array([1.0, 3.0]), 1)
    >>> table.merge(slots, p, np.array([0]))
    >>> p = group_partials(np.array([0]), np.array([2.0]), np.array([5.0]), 1)
    >>> table.merge(slots, p, np.array([0]))
    >>> result = table.stats(int(slots[0])).result()
    >>> [(k, round(v, 6)) for k, v in result.items()]  # doctest: +NORMALIZE_WHITESPACE
    [('count', 3), ('sum', 9.0), ('mean', 3.0), ('std', 1.632993), ('min', 1.0), ('max', 5.0),
     ('slope', 2.0), ('latest', 5.0)]
    """

    _FIELDS = (
        "count",
        "v_mean",
        "v_var",
        "t_mean",
        "t_var",
        "cov",
        "min",
        "max",
        "latest_t",
        "latest_v",
    )

    def __init__(self, capacity: int = 64) -> None:
        self.arrays = {name: np.zeros(capacity) for name in self._FIELDS}
        self._free: list[int] = list(range(capacity - 1, -1, -1))

    def allocate(self, k: int) -> np.ndarray:
        """``k`` empty slots."""
        while len(self._free) < k:
            old = len(self.arrays["count"])
            for name, array in self.arrays.items():
                self.arrays[name] = np.concatenate([array, np.zeros(old)])
            self._free.extend(range(2 * old - 1, old - 1, -1))
        slots = np.array([self._free.pop() for _ in range(k)], dtype=np.int64)
        a = self.arrays
        a["count"][slots] = 0.0
        a["min"][slots] = np.inf
        a["max"][slots] = -np.inf
        a["latest_t"][slots] = -np.inf
        a["latest_v"][slots] = np.nan
        return slots

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def merge(self, slots: np.ndarray, partial: GroupPartial, groups: np.ndarray) -> None:
        """Fold group ``groups[j]`` of ``partial`` (later samples) into slot ``slots[j]``."""
        a = self.arrays
        na = a["count"][slots]
        nb = partial.count[groups].astype(np.float64)
        n = na + nb
        fresh = na == 0
        w = np.where(fresh, 1.0, nb / n)
        cross = np.where(fresh, 0.0, na * nb / n)
        dv = partial.v_mean[groups] - a["v_mean"][slots]
        dt = partial.t_mean[groups] - a["t_mean"][slots]
        fresh_or = lambda new, old: np.where(fresh, new, old)  # noqa: E731 - exact when empty
        a["v_var"][slots] = fresh_or(
            partial.v_var[groups],
            (a["v_var"][slots] * na + partial.v_var[groups] * nb + dv * dv * cross) / n,
        )
        a["t_var"][slots] = fresh_or(
            partial.t_var[groups],
            (a["t_var"][slots] * na + partial.t_var[groups] * nb + dt * dt * cross) / n,
        )
        a["cov"][slots] = fresh_or(
            partial.cov[groups],
            (a["cov"][slots] * na + partial.cov[groups] * nb + dt * dv * cross) / n,
        )
        a["v_mean"][slots] = fresh_or(partial.v_mean[groups], a["v_mean"][slots] + dv * w)
        a["t_mean"][slots] = fresh_or(partial.t_mean[groups], a["t_mean"][slots] + dt * w)
        a["count"][slots] = n
        a["min"][slots] = np.minimum(a["min"][slots], partial.min[groups])
        a["max"][slots] = np.maximum(a["max"][slots], partial.max[groups])
        newer = partial.latest_t[groups] >= a["latest_t"][slots]
        a["latest_t"][slots] = np.where(newer, partial.latest_t[groups], a["latest_t"][slots])
        a["latest_v"][slots] = np.where(newer, partial.latest_v[groups], a["latest_v"][slots])

    def stats(self, slot: int) -> SeriesStats:
        """The slot's statistics as a :class:`SeriesStats`."""
        out = SeriesStats.__new__(SeriesStats)
        out.__setstate__(tuple(float(self.arrays[name][slot]) for name in self._FIELDS))
        return out

    def take(self, slot: int) -> SeriesStats:
        """The slot's statistics, freeing the slot."""
        stats = self.stats(slot)
        self.release(slot)
        return stats

    def put(self, slot: int, stats: SeriesStats) -> None:
        for name, value in zip(self._FIELDS, stats.__getstate__(), strict=True):
            self.arrays[name][slot] = value

    def __getstate__(self) -> tuple:
        return (self.arrays, self._free)

    def __setstate__(self, state: tuple) -> None:
        self.arrays, self._free = state
