"""Failure labels for feature windows from maintenance events, and a split that cannot leak.

A window ``[ts − window_s, ts)`` of machine *m* is labelled from *m*'s ground truth (failures
and repairs, :class:`~wearwatch.events.MaintenanceEvent` with ``asset_id`` = *m*):

- **1.0** when *m*'s next failure falls in ``[ts, ts + H)``, the window's next ``H`` seconds of
  machine time. Half-open like the window itself: its readings are strictly before ``ts``, so a
  failure at exactly ``ts`` (a window that closes on the failure tick) is in its future.
- **NaN** (excluded) when *m* is **down** during the window — it overlaps ``[failure, repair)``
  for some failure and the first repair at or after it (no repair: down to the end) — or when
  the answer is **censored**: no failure in ``[ts, ts + H)`` but ``ts + H`` lies past the end of
  the record, so "no failure within H" is not known.
- **0.0** otherwise. A preventive maintenance that averts a failure leaves 0.0: the machine did
  not fail (what it would have done is not ground truth).

Times are compared in integer microseconds, so labels do not depend on float rounding.

>>> import pandas as pd
>>> from wearwatch.events import MaintenanceEvent, utc
>>> frame = pd.DataFrame({
...     "ts": pd.to_datetime([3600, 7200, 9000, 10800, 10830, 18000], unit="s", utc=True),
...     "machine_id": "p1", "window_s": 30.0})
>>> truth = [MaintenanceEvent(ts=utc(9000), asset_id="p1", kind="failure"),
...          MaintenanceEvent(ts=utc(10800), asset_id="p1", kind="repair")]
>>> label_windows(frame, truth, horizon_s=3600.0).tolist()
[0.0, 1.0, 1.0, nan, 0.0, nan]

(the first window ends 1.5 h before the failure; the third ends on it; the fourth is down — it
ends on the repair; the fifth starts on it; the last one's next hour was not recorded.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from wearwatch.events import MaintenanceEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_INF = np.iinfo(np.int64).max


def micros(ts: pd.Series) -> np.ndarray:
    """A timezone-aware timestamp column as int64 microseconds since the epoch (UTC).

    >>> micros(pd.Series(pd.to_datetime([1.5], unit="s", utc=True))).tolist()
    [1500000]
    """
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"column `ts`: expected timezone-aware timestamps, got dtype {ts.dtype}")
    return ts.to_numpy(dtype="datetime64[us]").astype(np.int64)


def event_micros(when: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact)."""
    return (when - _EPOCH) // _US


def _seconds_to_micros(name: str, seconds: float) -> int:
    if not np.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name}: must be a positive number of seconds, got {seconds!r}")
    return round(seconds * 1e6)


def _truth(
    maintenance: Sequence[MaintenanceEvent],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """machine → (sorted failure times, sorted repair times) in µs."""
    failures: dict[str, list[int]] = {}
    repairs: dict[str, list[int]] = {}
    for event in maintenance:
        if event.kind == "failure":
            failures.setdefault(event.asset_id, []).append(event_micros(event.ts))
        elif event.kind == "repair":
            repairs.setdefault(event.asset_id, []).append(event_micros(event.ts))
    return {
        m: (
            np.sort(np.asarray(failures.get(m, []), dtype=np.int64)),
            np.sort(np.asarray(repairs.get(m, []), dtype=np.int64)),
        )
        for m in failures.keys() | repairs.keys()
    }


def label_windows(
    features: pd.DataFrame,
    maintenance: Sequence[MaintenanceEvent],
    horizon_s: float = 86400.0,
    end: datetime | None = None,
) -> np.ndarray:
    """One label per row of ``features`` (in its row order): 1.0, 0.0 or NaN (module docstring).

    ``features`` needs ``ts`` (window end, timezone-aware), ``machine_id`` and ``window_s``;
    ``end`` is the end of the record (default: the latest ``ts`` in ``features``).
    """
    horizon = _seconds_to_micros("horizon_s", horizon_s)
    ts = micros(features["ts"])
    labels = np.zeros(len(features), dtype=np.float64)
    if len(features) == 0:
        return labels
    start = ts - np.round(features["window_s"].to_numpy(dtype=np.float64) * 1e6).astype(np.int64)
    record_end = int(ts.max()) if end is None else event_micros(end)
    truth = _truth(maintenance)
    machines = features["machine_id"].to_numpy()
    codes, uniques = pd.factorize(machines, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for k, machine in enumerate(uniques):
        if machine not in truth:
            continue
        rows = order[bounds[k] : bounds[k + 1]]
        fail, repair = truth[machine]
        t, a = ts[rows], start[rows]
        # Positive: the first failure at or after ts is before ts + H.
        next_failure = np.append(fail, _INF)[np.searchsorted(fail, t, side="left")]
        labels[rows] = (next_failure - t < horizon).astype(np.float64)
        # Down: some failure f < ts whose repair (first at or after f) is after the start.
        if len(fail):
            back_up = np.append(repair, _INF)[np.searchsorted(repair, fail, side="left")]
            latest = np.maximum.accumulate(back_up)
            before = np.searchsorted(fail, t, side="left")  # failures strictly before ts
            down = (before > 0) & (latest[np.maximum(before - 1, 0)] > a)
            labels[rows[down]] = np.nan
    censored = (labels == 0.0) & (ts > record_end - horizon)
    labels[censored] = np.nan
    return labels


@dataclass(frozen=True)
class Split:
    """Which rows train and which test (boolean masks over the frame's rows), and why."""

    train: np.ndarray
    test: np.ndarray
    test_machines: tuple[str, ...]
    #: Train rows end at or before ``cut``; test rows end after ``cut + gap_s``.
    cut: pd.Timestamp | None
    gap_s: float


def split_by_machine_and_time(
    features: pd.DataFrame,
    test_machines: float = 0.3,
    seed: int = 0,
    gap_s: float | None = None,
    horizon_s: float = 86400.0,
    time_cut: float | None = 0.5,
) -> Split:
    """Held-out machines, and a time cut with a gap, so no training label or window overlaps a
    test window.

    - A share ``test_machines`` of the machines (at least one, and one fewer than all), drawn
      with ``seed``, is the test set: none of their windows is trained on.
    - With ``time_cut`` (a share of the frame's time span) at time *T*: training keeps windows
      ending at or before *T*, testing keeps windows ending after *T* + ``gap_s``. The default
      gap is ``horizon_s`` plus the longest window, so a test window's readings start after the
      horizon of every training label has ended: neither a training label nor a training
      window sees the test period, even through plant-wide effects shared by all machines.
      ``time_cut=None`` splits by machine only.

    >>> import pandas as pd
    >>> frame = pd.DataFrame({
    ...     "ts": pd.to_datetime([0, 100, 200, 300] * 2, unit="s", utc=True),
    ...     "machine_id": ["a"] * 4 + ["b"] * 4, "window_s": 10.0})
    >>> split = split_by_machine_and_time(frame, 0.5, seed=1, horizon_s=50.0)
    >>> split.test_machines, split.gap_s, str(split.cut)
    (('a',), 60.0, '1970-01-01 00:02:30+00:00')
    >>> frame[split.train].index.tolist(), frame[split.test].index.tolist()
    ([4, 5], [3])
    """
    if not 0.0 < test_machines < 1.0:
        raise ValueError(f"test_machines: must be a share in (0, 1), got {test_machines!r}")
    machines = np.asarray(sorted(features["machine_id"].unique()), dtype=object)
    if len(machines) < 2:
        raise ValueError(
            f"features: a split by machine needs at least 2 machines, got {len(machines)}"
        )
    n_test = min(max(1, round(test_machines * len(machines))), len(machines) - 1)
    rng = np.random.default_rng(seed)
    held_out = tuple(sorted(machines[rng.permutation(len(machines))[:n_test]]))
    is_test = features["machine_id"].isin(held_out).to_numpy()
    longest = float(features["window_s"].max())
    gap = horizon_s + longest if gap_s is None else float(gap_s)
    if gap < 0 or not np.isfinite(gap):
        raise ValueError(f"gap_s: must be a non-negative number of seconds, got {gap_s!r}")
    if time_cut is None:
        return Split(~is_test, is_test, held_out, None, gap)
    if not 0.0 < time_cut < 1.0:
        raise ValueError(f"time_cut: must be a share of the time span in (0, 1), got {time_cut!r}")
    ts = micros(features["ts"])
    first, last = int(ts.min()), int(ts.max())
    cut = first + round((last - first) * time_cut)
    train = ~is_test & (ts <= cut)
    test = is_test & (ts > cut + round(gap * 1e6))
    return Split(train, test, held_out, pd.Timestamp(cut, unit="us", tz="UTC"), gap)
