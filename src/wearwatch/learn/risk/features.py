"""Trend features: what a machine's sensors did over hours, beside its current window.

A 30 s window says how a machine is now; a failure days away shows as a slow rise from where
*this* machine started. :class:`TrendFeatures` keeps, per machine and per sensor with a
``<sensor>.mean`` feature, a few numbers of state and adds to the window's own features:

- ``<sensor>.ewm_short`` / ``.ewm_long``: exponentially weighted means of the window means in
  event time, half-lives ``short_h`` (1 h) and ``long_h`` (6 h). Weights are
  ``2^(−age/half-life)``, normalised (pandas' ``ewm(halflife=..., times=...,
  adjust=True)``), so irregular spacing and gaps (a machine down for a day) weigh correctly.
- ``.rise``: ``ewm_short`` minus the machine's own baseline, the mean of its first
  ``baseline_windows`` window means (partial until then); ``.rise_rel``: the rise over
  ``|baseline|`` — scale-free, so a class I motor and a class IV fan compare.
- ``.trend_per_h``: ``(ewm_short − ewm_long) / (τ_long − τ_short)`` with τ = half-life / ln 2,
  the slope per hour of a linear trend (an EWMA lags a line by τ), from O(1) state.

A sensor missing from a window leaves its state as it was: its trend values repeat. The
stream's step (:meth:`TrendFeatures.update`) and the batch form over a whole feature store
(:meth:`TrendFeatures.transform`, pandas' EWM) are two implementations of one definition, so a
model is scored on what it was trained on; the tests hold them equal.

>>> from wearwatch.events import FeatureVector, utc
>>> trend = TrendFeatures(TrendConfig(window_s=30.0, baseline_windows=2))
>>> for t, v in [(30, 2.0), (60, 2.0), (90, 3.0)]:
...     out = trend.update(FeatureVector(ts=utc(t), machine_id="p1", window_s=30.0,
...                                      features={"vib.mean": v}))
>>> out["vib.mean"], round(out["vib.ewm_short"], 4), round(out["vib.rise"], 4)
(3.0, 2.3353, 0.3353)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wearwatch.events import FeatureVector
from wearwatch.learn.risk.labels import event_micros, micros

#: The trend features added per sensor, in order.
TREND_SUFFIXES: tuple[str, ...] = ("ewm_short", "ewm_long", "rise", "rise_rel", "trend_per_h")
_MEAN = ".mean"
_KEYS = frozenset({"ts", "machine_id", "window_s"})


@dataclass(frozen=True)
class TrendConfig:
    """Which windows feed the trend (one length: the longest, by default 30 s) and its memory."""

    window_s: float = 30.0
    short_h: float = 1.0
    long_h: float = 6.0
    #: Window means averaged into a machine's own baseline (120 × 30 s = its first hour).
    baseline_windows: int = 120

    def __post_init__(self) -> None:
        if not 0.0 < self.short_h < self.long_h:
            raise ValueError(
                f"short_h, long_h: need 0 < short_h < long_h, got {self.short_h}, {self.long_h}"
            )
        if self.baseline_windows < 1:
            raise ValueError(f"baseline_windows: must be ≥ 1, got {self.baseline_windows}")

    @property
    def lag_gap_h(self) -> float:
        """τ_long − τ_short in hours: a line's EWMAs differ by slope × this."""
        return (self.long_h - self.short_h) / math.log(2.0)


@dataclass
class _SensorTrend:
    """Normalised EWMA sums and the baseline accumulator of one sensor (all plain floats)."""

    last_us: int
    s_short: float = 0.0
    w_short: float = 0.0
    s_long: float = 0.0
    w_long: float = 0.0
    base_sum: float = 0.0
    base_n: int = 0


@dataclass
class TrendFeatures:
    """One machine's trend state; feed it that machine's windows of ``config.window_s`` in
    event-time order. Small (a few floats per sensor) and picklable: it lives in checkpoints."""

    config: TrendConfig = field(default_factory=TrendConfig)
    sensors: dict[str, _SensorTrend] = field(default_factory=dict)

    def update(self, fv: FeatureVector) -> dict[str, float]:
        """The window's own features plus the trend features of every sensor seen so far."""
        cfg = self.config
        if fv.window_s != cfg.window_s:
            raise ValueError(
                f"window_s: trend features are computed on {cfg.window_s} s windows, "
                f"got a {fv.window_s} s window of {fv.machine_id}"
            )
        now = event_micros(fv.ts)
        out = dict(fv.features)
        for name, value in fv.features.items():
            if not name.endswith(_MEAN):
                continue
            sensor = name[: -len(_MEAN)]
            state = self.sensors.get(sensor)
            if state is None:
                state = self.sensors[sensor] = _SensorTrend(last_us=now)
            elif now < state.last_us:
                raise ValueError(
                    f"ts: windows of {fv.machine_id} must come in event-time order, got {fv.ts} "
                    f"after a window ending {state.last_us} µs since the epoch"
                )
            hours = (now - state.last_us) / 3.6e9
            short, long = 0.5 ** (hours / cfg.short_h), 0.5 ** (hours / cfg.long_h)
            state.s_short = state.s_short * short + value
            state.w_short = state.w_short * short + 1.0
            state.s_long = state.s_long * long + value
            state.w_long = state.w_long * long + 1.0
            state.last_us = now
            if state.base_n < cfg.baseline_windows:
                state.base_sum += value
                state.base_n += 1
        for sensor, state in self.sensors.items():
            ewm_short = state.s_short / state.w_short
            ewm_long = state.s_long / state.w_long
            baseline = state.base_sum / state.base_n
            rise = ewm_short - baseline
            out[f"{sensor}.ewm_short"] = ewm_short
            out[f"{sensor}.ewm_long"] = ewm_long
            out[f"{sensor}.rise"] = rise
            out[f"{sensor}.rise_rel"] = rise / abs(baseline) if baseline != 0.0 else math.nan
            out[f"{sensor}.trend_per_h"] = (ewm_short - ewm_long) / cfg.lag_gap_h
        return out

    @classmethod
    def transform(cls, frame: pd.DataFrame, config: TrendConfig | None = None) -> pd.DataFrame:
        """The batch form of :meth:`update`: ``frame`` (the feature store's schema, rows of
        ``config.window_s`` only) with the trend columns added, as if one fresh
        :class:`TrendFeatures` per machine had been fed its rows in ``ts`` order. Rows keep
        ``frame``'s order and index; a sensor a machine never had is NaN."""
        cfg = config or TrendConfig()
        wrong = frame["window_s"].to_numpy() != cfg.window_s
        if wrong.any():
            raise ValueError(
                f"window_s: trend features are computed on {cfg.window_s} s windows, got "
                f"{sorted(set(frame['window_s'][wrong].tolist()))}"
            )
        us = micros(frame["ts"])
        codes, _ = pd.factorize(frame["machine_id"].to_numpy())
        order = np.lexsort((us, codes))  # by machine, then time: each machine's stream
        groups = codes[order]
        times = pd.Series(us[order].astype("datetime64[us]"))
        added: dict[str, np.ndarray] = {}

        def unsorted(values: np.ndarray) -> np.ndarray:
            out = np.empty_like(values)
            out[order] = values
            return out

        for column in (c for c in frame.columns if c.endswith(_MEAN) and c not in _KEYS):
            sensor = column[: -len(_MEAN)]
            values = pd.Series(frame[column].to_numpy(dtype=np.float64)[order])
            by_machine = values.groupby(groups, sort=False)
            ewm = {}
            for label, half_life in (("short", cfg.short_h), ("long", cfg.long_h)):
                ewm[label] = (
                    by_machine.ewm(halflife=pd.Timedelta(hours=half_life), times=times)
                    .mean()
                    .droplevel(0)
                    .sort_index()
                    .to_numpy()
                )
            seen = values.notna().astype(np.int64).groupby(groups, sort=False).cumsum()
            in_base = values.where(seen <= cfg.baseline_windows, 0.0).fillna(0.0)
            base_sum = in_base.groupby(groups, sort=False).cumsum().to_numpy()
            base_n = np.minimum(seen.to_numpy(), cfg.baseline_windows).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                baseline = np.where(base_n > 0, base_sum / base_n, np.nan)
                rise = ewm["short"] - baseline
                rise_rel = np.where(baseline != 0.0, rise / np.abs(baseline), np.nan)
            added[f"{sensor}.ewm_short"] = unsorted(ewm["short"])
            added[f"{sensor}.ewm_long"] = unsorted(ewm["long"])
            added[f"{sensor}.rise"] = unsorted(rise)
            added[f"{sensor}.rise_rel"] = unsorted(rise_rel)
            added[f"{sensor}.trend_per_h"] = unsorted((ewm["short"] - ewm["long"]) / cfg.lag_gap_h)
        return pd.concat([frame, pd.DataFrame(added, index=frame.index)], axis=1)
