"""Per-cycle features for C-MAPSS that look only at the past.

Every feature of cycle *t* of an engine is a function of that engine's cycles ``<= t`` and of
statistics fitted once on the training set (which sensors to keep, operating regimes, per-regime
means and standard deviations). Removing later cycles therefore never changes earlier rows —
``tests/test_rul.py`` checks that property.

Features per kept sensor (after normalisation): the value, trailing rolling means (5/10/20/30),
rolling standard deviations (10/30), least-squares slopes over trailing windows (10/20/30),
exponentially weighted means, the expanding mean and the drift of the recent mean from the
engine's own first cycles. Plus the cycle number, a linear health index (fitted on train) and its
trailing statistics, and for multi-regime subsets the current regime and the share of cycles the
engine has spent in each regime so far.

That default (``features="history"``) uses each engine's whole history, which the data allows
but window-based papers (e.g. STAR) do not. ``features="window"`` makes rows comparable with
them: every feature of cycle *t* is a function of cycles ``t-window+1 .. t`` only (value, means,
standard deviations, slopes and exponentially weighted means over trailing sub-windows no longer
than the window, the health index's same statistics, and the current regime) — no cycle number,
no expanding mean, no drift from the first cycles, no regime shares. The window statistics are
computed on the window's own values (not as differences of running sums), so cycles before the
window cannot change them even by rounding; ``tests/test_rul.py`` checks that exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.cluster import KMeans

from wearwatch.learn.rul.data import OP_SETTINGS, SENSORS

MEAN_WINDOWS: tuple[int, ...] = (5, 10, 20, 30)
STD_WINDOWS: tuple[int, ...] = (10, 30)
SLOPE_WINDOWS: tuple[int, ...] = (10, 20, 30)
EWM_SPANS: tuple[int, ...] = (10, 30)
BASELINE_CYCLES = 10
#: Feature families: the engine's whole history (default) or a trailing window only.
FEATURE_KINDS: tuple[str, ...] = ("history", "window")


def _segments(units: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) row ranges of consecutive equal unit ids."""
    if len(units) == 0:
        return []
    change = np.flatnonzero(np.diff(units)) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [len(units)]))
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _trailing_sum(cs: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last ``window`` rows (fewer at the start) given ``cs`` = cumsum with a 0 row."""
    n = cs.shape[0] - 1
    hi = np.arange(1, n + 1)
    lo = np.maximum(hi - window, 0)
    return cs[hi] - cs[lo]


def _trailing_count(n: int, window: int) -> np.ndarray:
    return np.minimum(np.arange(1, n + 1), window).astype(np.float64)


def _cumsum0(x: np.ndarray) -> np.ndarray:
    out = np.zeros((x.shape[0] + 1, *x.shape[1:]), dtype=np.float64)
    np.cumsum(x, axis=0, out=out[1:])
    return out


def _ewm(x: np.ndarray, span: int) -> np.ndarray:
    """Exponentially weighted mean, ``adjust=False`` recursion started at the first value."""
    return pd.DataFrame(x).ewm(span=span, adjust=False).mean().to_numpy(dtype=np.float64)


def _engine_features(x: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """Trailing statistics of one engine's normalised signals ``x`` (cycles x signals)."""
    n = x.shape[0]
    cs = _cumsum0(x)
    cs2 = _cumsum0(x * x)
    tt = (t - t[0]).astype(np.float64)[:, None]
    cst = _cumsum0(np.broadcast_to(tt, x.shape) * 1.0)
    cstt = _cumsum0(np.broadcast_to(tt * tt, x.shape) * 1.0)
    cstx = _cumsum0(tt * x)
    blocks: list[np.ndarray] = [x]
    for w in MEAN_WINDOWS:
        blocks.append(_trailing_sum(cs, w) / _trailing_count(n, w)[:, None])
    for w in STD_WINDOWS:
        cnt = _trailing_count(n, w)[:, None]
        mean = _trailing_sum(cs, w) / cnt
        var = np.maximum(_trailing_sum(cs2, w) / cnt - mean * mean, 0.0)
        blocks.append(np.sqrt(var))
    for w in SLOPE_WINDOWS:
        cnt = _trailing_count(n, w)[:, None]
        st, stt = _trailing_sum(cst, w), _trailing_sum(cstt, w)
        sx, stx = _trailing_sum(cs, w), _trailing_sum(cstx, w)
        den = cnt * stt - st * st
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(den > 1e-12, (cnt * stx - st * sx) / np.where(den > 0, den, 1), 0.0)
        blocks.append(slope)
    for span in EWM_SPANS:
        blocks.append(_ewm(x, span))
    counts = np.arange(1, n + 1, dtype=np.float64)[:, None]
    expanding = cs[1:] / counts
    blocks.append(expanding)
    base = cs[np.minimum(np.arange(1, n + 1), BASELINE_CYCLES)] / np.minimum(
        counts, BASELINE_CYCLES
    )
    recent = _trailing_sum(cs, 10) / _trailing_count(n, 10)[:, None]
    blocks.append(recent - base)
    return blocks


def _window_sizes(sizes: tuple[int, ...], window: int) -> tuple[int, ...]:
    """The sub-windows of ``sizes`` that fit in ``window``, and the window itself.

    >>> _window_sizes((5, 10, 20, 30), 30), _window_sizes((5, 10, 20, 30), 12)
    ((5, 10, 20, 30), (5, 10, 12))
    """
    return tuple(sorted({w for w in sizes if w < window} | {window}))


def _window_engine_features(x: np.ndarray, t: np.ndarray, window: int) -> list[np.ndarray]:
    """Statistics of one engine's signals ``x`` (cycles x signals) over trailing windows only.

    Row *i* sees rows ``i-window+1 .. i`` (fewer at the start): each window's values are
    reduced directly, padded with NaN before the first cycle.
    """
    n, width = x.shape
    pad = np.full((window - 1, width), np.nan)
    xv = sliding_window_view(np.concatenate([pad, x]), window, axis=0)  # (n, signals, window)
    tp = np.concatenate([np.full(window - 1, np.nan), t.astype(np.float64)])
    tv = sliding_window_view(tp, window)[:, None, :]  # (n, 1, window)
    blocks: list[np.ndarray] = [x]
    for w in _window_sizes(MEAN_WINDOWS, window):
        blocks.append(np.nanmean(xv[..., -w:], axis=-1))
    for w in _window_sizes(STD_WINDOWS, window):
        blocks.append(np.nanstd(xv[..., -w:], axis=-1))
    for w in _window_sizes(SLOPE_WINDOWS, window):
        tw, xw = tv[..., -w:], xv[..., -w:]
        dt = tw - np.nanmean(tw, axis=-1, keepdims=True)
        dx = xw - np.nanmean(xw, axis=-1, keepdims=True)
        den = np.nansum(dt * dt, axis=-1)
        num = np.nansum(dt * dx, axis=-1)
        blocks.append(np.where(den > 1e-12, num / np.where(den > 0, den, 1.0), 0.0))
    ages = np.arange(window - 1, -1, -1, dtype=np.float64)  # 0 = the current cycle
    present = ~np.isnan(xv)
    for span in EWM_SPANS:
        weights = (1.0 - 2.0 / (span + 1.0)) ** ages * present
        blocks.append(np.nansum(xv * weights, axis=-1) / weights.sum(axis=-1))
    assert all(b.shape == (n, width) for b in blocks)
    return blocks


def _window_block_names(signals: list[str], window: int) -> list[str]:
    names = [f"{s}" for s in signals]
    names += [f"{s}_mean{w}" for w in _window_sizes(MEAN_WINDOWS, window) for s in signals]
    names += [f"{s}_std{w}" for w in _window_sizes(STD_WINDOWS, window) for s in signals]
    names += [f"{s}_slope{w}" for w in _window_sizes(SLOPE_WINDOWS, window) for s in signals]
    names += [f"{s}_wewm{w}" for w in EWM_SPANS for s in signals]
    return names


def _block_names(signals: list[str]) -> list[str]:
    names = [f"{s}" for s in signals]
    names += [f"{s}_mean{w}" for w in MEAN_WINDOWS for s in signals]
    names += [f"{s}_std{w}" for w in STD_WINDOWS for s in signals]
    names += [f"{s}_slope{w}" for w in SLOPE_WINDOWS for s in signals]
    names += [f"{s}_ewm{w}" for w in EWM_SPANS for s in signals]
    names += [f"{s}_expmean" for s in signals]
    names += [f"{s}_drift" for s in signals]
    return names


@dataclass
class FeaturePipeline:
    """Fitted on a training frame; turns any frame of C-MAPSS rows into past-only features."""

    n_regimes: int = 1
    seed: int = 7
    rul_cap: float = 125.0
    features: str = "history"  # one of FEATURE_KINDS
    window: int = 30  # trailing cycles seen by ``features="window"``
    sensors: list[str] = field(default_factory=list)
    regime_model: KMeans | None = None
    means: np.ndarray | None = None  # (n_regimes, n_sensors)
    stds: np.ndarray | None = None
    hi_coef: np.ndarray | None = None  # linear health index on normalised sensors
    hi_intercept: float = 0.0
    feature_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Everything fitted but the regime model, as JSON values (floats round-trip exactly)."""

        def matrix(value: np.ndarray | None) -> list[Any] | None:
            return None if value is None else np.asarray(value, dtype=np.float64).tolist()

        return {
            "n_regimes": self.n_regimes,
            "seed": self.seed,
            "rul_cap": self.rul_cap,
            "features": self.features,
            "window": self.window,
            "sensors": list(self.sensors),
            "means": matrix(self.means),
            "stds": matrix(self.stds),
            "hi_coef": matrix(self.hi_coef),
            "hi_intercept": self.hi_intercept,
            "feature_names": list(self.feature_names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], regime_model: KMeans | None) -> FeaturePipeline:
        def matrix(value: list[Any] | None) -> np.ndarray | None:
            return None if value is None else np.asarray(value, dtype=np.float64)

        return cls(
            n_regimes=int(data["n_regimes"]),
            seed=int(data["seed"]),
            rul_cap=float(data["rul_cap"]),
            # Models registered before window features existed are history models.
            features=str(data.get("features", "history")),
            window=int(data.get("window", 30)),
            sensors=[str(s) for s in data["sensors"]],
            regime_model=regime_model,
            means=matrix(data["means"]),
            stds=matrix(data["stds"]),
            hi_coef=matrix(data["hi_coef"]),
            hi_intercept=float(data["hi_intercept"]),
            feature_names=[str(n) for n in data["feature_names"]],
        )

    def __post_init__(self) -> None:
        if self.features not in FEATURE_KINDS:
            raise ValueError(
                f"features={self.features!r}: expected one of {', '.join(FEATURE_KINDS)}"
            )
        if self.window < 2:
            raise ValueError(f"window={self.window}: need at least 2 cycles")

    def regimes(self, frame: pd.DataFrame) -> np.ndarray:
        if self.n_regimes <= 1 or self.regime_model is None:
            return np.zeros(len(frame), dtype=np.int64)
        ops = frame[OP_SETTINGS].to_numpy(dtype=np.float64)
        return self.regime_model.predict(ops).astype(np.int64)

    def fit(self, train: pd.DataFrame) -> FeaturePipeline:
        if self.n_regimes > 1:
            km = KMeans(n_clusters=self.n_regimes, n_init=10, random_state=self.seed)
            km.fit(train[OP_SETTINGS].to_numpy(dtype=np.float64))
            self.regime_model = km
        reg = self.regimes(train)
        raw = train[SENSORS].to_numpy(dtype=np.float64)
        means = np.zeros((self.n_regimes, raw.shape[1]))
        stds = np.ones((self.n_regimes, raw.shape[1]))
        for r in range(self.n_regimes):
            rows = raw[reg == r]
            if len(rows):
                means[r] = rows.mean(axis=0)
                stds[r] = rows.std(axis=0)
        # A sensor is kept when it varies within the regimes (constant ones carry nothing).
        rel = stds / np.maximum(np.abs(means), 1e-9)
        keep = (rel > 1e-5).all(axis=0) & (stds > 1e-6).all(axis=0)
        nunique = train[SENSORS].nunique().to_numpy()
        keep &= nunique > 2 * self.n_regimes + 1
        self.sensors = [s for s, k in zip(SENSORS, keep, strict=True) if k]
        self.means = means[:, keep]
        self.stds = np.where(stds[:, keep] > 0, stds[:, keep], 1.0)
        z = self._normalise(train, reg)
        # Linear health index: least squares of the capped RUL on the normalised sensors.
        target = np.minimum(train["rul"].to_numpy(dtype=np.float64), self.rul_cap)
        design = np.column_stack([z, np.ones(len(z))])
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        self.hi_coef = coef[:-1]
        self.hi_intercept = float(coef[-1])
        self.feature_names = list(self.transform(train.head(2)).columns)
        return self

    def _normalise(self, frame: pd.DataFrame, reg: np.ndarray) -> np.ndarray:
        assert self.means is not None and self.stds is not None
        raw = frame[self.sensors].to_numpy(dtype=np.float64)
        return (raw - self.means[reg]) / self.stds[reg]

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Features for every row of ``frame`` (sorted by unit, cycle; index reset)."""
        if self.means is None:
            raise RuntimeError("FeaturePipeline.transform called before fit")
        frame = frame.sort_values(["unit", "cycle"], kind="stable").reset_index(drop=True)
        reg = self.regimes(frame)
        z = self._normalise(frame, reg)
        assert self.hi_coef is not None
        hi = (z @ self.hi_coef + self.hi_intercept)[:, None]
        signals = np.column_stack([z, hi])
        names = [*self.sensors, "hi"]
        units = frame["unit"].to_numpy()
        cycles = frame["cycle"].to_numpy()
        windowed = self.features == "window"
        columns = _window_block_names(names, self.window) if windowed else _block_names(names)
        parts: list[np.ndarray] = []
        for start, stop in _segments(units):
            x, t = signals[start:stop], cycles[start:stop]
            blocks = (
                _window_engine_features(x, t, self.window) if windowed else _engine_features(x, t)
            )
            parts.append(np.concatenate(blocks, axis=1))
        values = np.concatenate(parts, axis=0) if parts else np.empty((0, len(columns)))
        out = pd.DataFrame(values, columns=columns)
        if self.n_regimes > 1:
            out["regime"] = reg.astype(np.float64)
        if windowed:
            return out
        out.insert(0, "cycle", cycles.astype(np.float64))
        if self.n_regimes > 1:
            onehot = np.eye(self.n_regimes)[reg]
            shares = np.empty_like(onehot)
            for start, stop in _segments(units):
                seg = onehot[start:stop]
                shares[start:stop] = (
                    np.cumsum(seg, axis=0) / np.arange(1, stop - start + 1)[:, None]
                )
            for r in range(self.n_regimes):
                out[f"regime_share_{r}"] = shares[:, r]
        return out
