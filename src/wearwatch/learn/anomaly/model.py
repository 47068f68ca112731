"""The combined anomaly model: rules, sensor-fault evidence, PCA T²+Q and Half-Space Trees.

:class:`AnomalyModel` is fitted in batch from feature-store windows believed healthy and is
then read-only. Everything that changes while a machine streams — persistence counters, the
short per-sensor history, the online detector — lives in that machine's
:class:`DetectorState`, which the stream owns (and checkpoints). So:

- :meth:`AnomalyModel.score` is pure: it never mutates the model or the state, and the API may
  call it for any request;
- :meth:`AnomalyModel.update` is the stream's step: counters, history, online learning.

A window's triggers, in order: hard limits (critical, never suppressed), sensor-fault
evidence (``category="sensor"``), z-scores of the machine's features — except on sensors with
sensor-fault evidence in that window, so a spiking sensor does not raise a bearing alarm —
PCA T²+Q and HST (a faulty sensor's inputs are imputed with their healthy values), then
persistence per alarm key (``machine`` or ``sensor:<sensor>``).

Artifacts are one JSON file (``artifact_format = "anomaly-model/1"``): the config, the
baselines, the hard limits and the PCA matrices. The online trees are state, not model: they
are grown per machine by the stream from a seed derived from the config's seed and the
machine, so a replay grows the same trees.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from wearwatch.events import SEVERITIES, AnomalyScore, FeatureVector, Trigger
from wearwatch.learn.anomaly.baseline import (
    Baseline,
    Baselines,
    HardLimits,
    feature_columns,
    split_feature,
)
from wearwatch.learn.anomaly.config import AnomalyConfig
from wearwatch.learn.anomaly.online import HstScaling, OnlineDetector
from wearwatch.learn.anomaly.pca import PcaDetector
from wearwatch.learn.anomaly.rules import (
    RANK,
    combine,
    hard_limit_trigger,
    persistence_trigger,
    strongest,
    zscore_trigger,
)
from wearwatch.learn.anomaly.sensor_faults import AGGREGATES, SensorFaultRules, stuck_limit

ARTIFACT = "anomaly.json"
MACHINE_KEY = "machine"
_WATCH = RANK["watch"]


def alarm_key(trigger: Trigger) -> str:
    """``machine`` or ``sensor:<sensor>``: the alarm a trigger is evidence for.

    >>> alarm_key(Trigger(detector="stuck", feature="pressure.std", value=0.0, threshold=0.01,
    ...     score=1.0, severity="medium", category="sensor"))
    'sensor:pressure'
    """
    if trigger.category == "sensor":
        return f"sensor:{trigger.feature.partition('.')[0]}"
    return MACHINE_KEY


@dataclass
class WindowState:
    """A machine's streaming state at one window size."""

    #: Alarm key → consecutive windows it was elevated (≥ watch), this stream's last included.
    runs: dict[str, int] = field(default_factory=dict)
    #: Sensor → (its latest value in the last window, windows in a row it was flat at it).
    history: dict[str, tuple[float, int]] = field(default_factory=dict)
    online: OnlineDetector | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "runs": dict(sorted(self.runs.items())),
            "history": {s: list(v) for s, v in sorted(self.history.items())},
            "online": None if self.online is None else self.online.snapshot(),
        }


@dataclass
class DetectorState:
    """One machine's detector state, owned by the stream (picklable for checkpoints)."""

    machine_id: str
    windows: dict[float, WindowState] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """Every value of the state as JSON values (to compare states, or to show one)."""
        return {
            "machine_id": self.machine_id,
            "windows": {repr(w): s.snapshot() for w, s in sorted(self.windows.items())},
        }


@dataclass(frozen=True)
class _Profile:
    """A baseline compiled for scoring: the window's statistics as an (aggregate × sensor)
    array, the healthy means and floored stds in the same shape, and what reads which row."""

    baseline: Baseline
    sensors: tuple[str, ...]
    aggregates: tuple[str, ...]  # rows; the first ones are sensor_faults.AGGREGATES
    names: tuple[str, ...]  # <sensor>.<aggregate>, aggregate-major: the fetch order
    mean: np.ndarray  # (aggregates, sensors), NaN where the baseline lacks the feature
    scale: np.ndarray
    rules: SensorFaultRules
    zscore_rows: np.ndarray
    pca: PcaDetector | None
    pca_rows: np.ndarray
    pca_cols: np.ndarray
    hst: HstScaling | None
    #: Per sensor, what :meth:`quiet` compares (see :meth:`AnomalyModel._quiet_checks`).
    checks: tuple[tuple[Any, ...], ...]
    #: Per PCA input: (feature, centre, floored std) in the detector's column order; the
    #: centre is the healthy mean shifted by the PCA's own mean, so (value − centre) / std is
    #: the centred PCA input.
    pca_inputs: tuple[tuple[str, float, float], ...]
    #: Per sensor: (sensor, its latest, min and max features), for the flat-run history.
    history_names: tuple[tuple[str, str, str, str], ...]

    def quiet(self, features: Mapping[str, float]) -> bool:
        """True when no sensor-fault rule and no z-score band can fire on this window: the
        common case, decided with a few float comparisons per sensor (no numpy) so healthy
        windows cost little. Anything else goes through the full rules."""
        get = features.get
        for (
            n_count,
            n_mean,
            n_std,
            n_min,
            n_max,
            level,
            band,
            drop_limit,
            count_p01,
            stuck_at,
            stuck_min,
            spike_at,
            wide_at,
        ) in self.checks:
            count = get(n_count)
            mean = get(n_mean)
            if count is None or mean is None:
                return False  # a sensor missing from the window: dropout evidence to weigh
            if not abs(mean - level) < band:
                return False
            if count <= drop_limit and count < count_p01:
                return False
            lo, hi, std = get(n_min), get(n_max), get(n_std)
            if lo is None or hi is None or not lo < hi:
                return False  # flat: maybe stuck
            if std is not None and (
                (count >= stuck_min and std <= stuck_at) or (count >= 3 and std >= wide_at)
            ):
                return False
            if count >= 3 and (
                count * (hi - mean) >= spike_at * (count - 1)
                or count * (mean - lo) >= spike_at * (count - 1)
            ):
                return False
        return True

    def pca_centred(self, features: Mapping[str, float]) -> np.ndarray:
        """The PCA inputs standardised and centred; a missing one takes its healthy mean."""
        get = features.get
        return np.array([(get(n, c) - c) / sc for n, c, sc in self.pca_inputs])

    def window(self, features: Mapping[str, float]) -> np.ndarray:
        nan = np.nan
        get = features.get
        return np.array([get(n, nan) for n in self.names]).reshape(len(self.aggregates), -1)


class AnomalyModel:
    """Per-machine baselines, hard limits and learned detectors; see the module docstring."""

    artifact_format: ClassVar[str] = "anomaly-model/1"

    def __init__(
        self,
        config: AnomalyConfig,
        baselines: Baselines,
        limits: HardLimits,
        pca: Mapping[tuple[float, tuple[str, ...]], PcaDetector],
        *,
        trained: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.baselines = baselines
        self.limits = limits
        self.pca = dict(pca)
        self.trained = dict(trained or {})
        #: ``anomaly@v0003`` once loaded from the registry (set by whoever loads it).
        self.model_version = ""
        self._ignored = frozenset({"persistence", *config.persistence_ignores})
        self._profiles: dict[tuple[str, float, tuple[str, ...]], _Profile] = {}
        for b in [*baselines.own.values(), *(b for bs in baselines.fallbacks.values() for b in bs)]:
            self._profiles[(b.key, b.window_s, b.sensors)] = self._compile(b)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        features: pd.DataFrame,
        limits: Mapping[str, Mapping[str, Any]] | None = None,
        config: AnomalyConfig | None = None,
    ) -> AnomalyModel:
        """Fit from the feature-store frame of windows believed healthy.

        ``limits``: machine → sensor → (low, high); ``"*"`` = every machine, a machine's own
        entry for a sensor wins.
        """
        config = config or AnomalyConfig()
        if len(features) == 0:
            raise ValueError("feature frame: no rows to fit baselines on")
        baselines = Baselines.fit(features, config.min_windows)
        hard = HardLimits(limits)
        bare = cls(config, baselines, hard, {})
        pca: dict[tuple[float, tuple[str, ...]], PcaDetector] = {}
        if config.pca:
            pca = bare._fit_pca(features)
        trained = {
            "rows": len(features),
            "machines": int(features["machine_id"].nunique()),
            "windows_s": sorted(float(w) for w in features["window_s"].unique()),
        }
        return cls(config, baselines, hard, pca, trained=trained)

    def _fit_pca(self, frame: pd.DataFrame) -> dict[tuple[float, tuple[str, ...]], PcaDetector]:
        pools: dict[tuple[float, tuple[str, ...]], list[np.ndarray]] = {}
        inputs_of: dict[tuple[float, tuple[str, ...]], tuple[str, ...]] = {}
        columns = set(feature_columns(frame))
        for (machine, window_s), group in frame.groupby(["machine_id", "window_s"], sort=True):
            sensors = sorted({split_feature(c)[0] for c in columns if group[c].notna().any()})
            b = self.baselines.lookup(str(machine), float(window_s), sensors)
            if b is None:
                continue
            profile = self._profiles[(b.key, b.window_s, b.sensors)]
            key = (b.window_s, b.sensors)
            names = self.pca_inputs(b)
            if not names or not set(names) <= columns:
                continue
            mean = profile.mean[profile.pca_rows, profile.pca_cols]
            scale = profile.scale[profile.pca_rows, profile.pca_cols]
            x = group[list(names)].to_numpy(dtype=np.float64, na_value=np.nan)
            z = (x - mean) / scale
            pools.setdefault(key, []).append(z[np.isfinite(z).all(axis=1)])
            inputs_of[key] = names
        out = {}
        cfg = self.config
        for key, parts in sorted(pools.items()):
            z = np.vstack(parts)
            if len(z) < cfg.pca_min_rows:
                continue
            out[key] = PcaDetector.fit(
                inputs_of[key],
                z,
                variance=cfg.pca_variance,
                quantile=cfg.pca_quantile,
                margin=cfg.pca_margin,
            )
        return out

    def _compile(self, b: Baseline) -> _Profile:
        cfg = self.config
        extra = sorted(
            {*cfg.zscore_aggregates, *cfg.pca_aggregates, cfg.limit_aggregate} - set(AGGREGATES)
        )
        aggregates = (*AGGREGATES, *extra)
        row = {a: i for i, a in enumerate(aggregates)}
        sensors = b.sensors
        shape = (len(aggregates), len(sensors))
        mean, scale = np.full(shape, np.nan), np.full(shape, np.nan)
        for i, a in enumerate(aggregates):
            for j, s in enumerate(sensors):
                feature = f"{s}.{a}"
                if feature in b.stats:
                    mean[i, j] = b.stats[feature].mean
                    scale[i, j] = b.scale(feature, cfg.std_floor_rel, cfg.std_floor_abs)
        pca_at = [
            (row[a], j)
            for j, s in enumerate(sensors)
            for a in cfg.pca_aggregates
            if f"{s}.{a}" in b.stats
        ]
        detector = self.pca.get((b.window_s, sensors))
        names = tuple(f"{sensors[j]}.{aggregates[i]}" for i, j in pca_at)
        if detector is not None and detector.features != names:
            detector = None
        hst = None
        if cfg.hst and any(f"{s}.mean" in b.stats for s in sensors):
            hst = HstScaling.from_percentiles(
                {
                    f"{s}.mean": (
                        b.stats[f"{s}.mean"].p01,
                        b.stats[f"{s}.mean"].p99,
                        b.stats[f"{s}.mean"].mean,
                    )
                    for s in sensors
                    if f"{s}.mean" in b.stats
                },
                cfg.hst_margin,
            )
        return _Profile(
            baseline=b,
            sensors=sensors,
            aggregates=aggregates,
            names=tuple(f"{s}.{a}" for a in aggregates for s in sensors),
            mean=mean,
            scale=scale,
            rules=SensorFaultRules.compile(b, cfg),
            zscore_rows=np.array([row[a] for a in cfg.zscore_aggregates], dtype=np.intp),
            pca=detector,
            pca_rows=np.array([i for i, _ in pca_at], dtype=np.intp),
            pca_cols=np.array([j for _, j in pca_at], dtype=np.intp),
            hst=hst,
            checks=self._quiet_checks(b),
            pca_inputs=tuple(
                (
                    f"{sensors[j]}.{aggregates[i]}",
                    float(mean[i, j] + scale[i, j] * detector.mean[k]),
                    float(scale[i, j]),
                )
                for k, (i, j) in enumerate(pca_at)
            )
            if detector is not None
            else (),
            history_names=tuple((s, f"{s}.latest", f"{s}.min", f"{s}.max") for s in sensors),
        )

    def _quiet_checks(self, b: Baseline) -> tuple[tuple[Any, ...], ...]:
        """Per sensor of ``b``, the thresholds :meth:`_Profile.quiet` compares. A threshold
        the baseline cannot give is NaN, and a comparison with NaN never declares a window
        unsafe, exactly as in :class:`SensorFaultRules`. Only ``mean`` z-scores are covered:
        other z-scored aggregates make every window go through the full rules."""
        cfg = self.config
        if set(cfg.zscore_aggregates) - {"mean"}:
            return ((None,) * 13,)  # never quiet: a None count fails the first check
        out = []
        nan = float("nan")
        for s in b.sensors:
            st = b.stats.get
            mean = st(f"{s}.mean")
            count = st(f"{s}.count")
            noise = st(f"{s}.std")
            noise_p50 = noise.p50 if noise is not None else nan
            out.append(
                (
                    f"{s}.count",
                    f"{s}.mean",
                    f"{s}.std",
                    f"{s}.min",
                    f"{s}.max",
                    mean.mean if mean is not None else nan,
                    cfg.z_watch * b.scale(f"{s}.mean", cfg.std_floor_rel, cfg.std_floor_abs)
                    if mean is not None
                    else float("inf"),
                    cfg.dropout_ratio * count.p50 if count is not None and count.p50 > 0 else nan,
                    count.p01 if count is not None else nan,
                    stuck_limit(b, s, cfg),
                    cfg.stuck_min_count,
                    cfg.spike_k * noise_p50 if noise_p50 > 0 else float("inf"),
                    cfg.spike_std_ratio * noise.p99
                    if noise is not None and noise.p99 > 0
                    else float("inf"),
                )
            )
        return tuple(out)

    def pca_inputs(self, b: Baseline) -> tuple[str, ...]:
        """The features the PCA of ``b``'s sensor set reads, in its column order."""
        return tuple(
            f"{s}.{a}"
            for s in b.sensors
            for a in self.config.pca_aggregates
            if f"{s}.{a}" in b.stats
        )

    # ------------------------------------------------------------------ scoring
    def new_state(self, machine_id: str) -> DetectorState:
        """A machine's fresh stream state (its window states are created by :meth:`update`)."""
        return DetectorState(machine_id)

    def _profile(self, fv: FeatureVector) -> _Profile | None:
        b = self.baselines.own.get((fv.machine_id, fv.window_s))
        if b is None:
            sensors = {k.rpartition(".")[0] for k in fv.features}
            b = self.baselines.lookup(fv.machine_id, fv.window_s, sensors)
            if b is None:
                return None
        return self._profiles[(b.key, b.window_s, b.sensors)]

    def _hst_applies(self, window_s: float) -> bool:
        cfg = self.config
        return cfg.hst and (cfg.hst_window_s is None or window_s == cfg.hst_window_s)

    def _triggers(
        self, fv: FeatureVector, state: DetectorState
    ) -> tuple[list[Trigger], _Profile | None]:
        """Every trigger of one window except persistence, and the compiled profile."""
        features = fv.features
        triggers: list[Trigger] = []
        profile = self._profile(fv)
        if profile is None:
            self._hard_limits(fv, (), triggers)
            return triggers, None
        wstate = state.windows.get(fv.window_s)
        faulty = np.zeros(len(profile.sensors), dtype=bool)
        if profile.quiet(features):
            self._hard_limits(fv, (), triggers)
            if profile.pca is not None:
                t = self._pca_trigger(profile.pca, profile.pca_centred(features))
                if t is not None:
                    triggers.append(t)
        else:
            faulty = self._full_rules(profile, fv, wstate, triggers)
        if wstate is not None and wstate.online is not None:
            bad = [s for s, f in zip(profile.sensors, faulty, strict=True) if f]
            online = wstate.online
            value, threshold = online.score(online.scaling.transform(features, bad))
            if threshold is not None and threshold > 0 and value >= threshold:
                triggers.append(
                    Trigger(
                        detector="hst",
                        value=value,
                        threshold=threshold,
                        score=value / threshold,
                        severity="watch",
                    )
                )
        return triggers, profile

    def _hard_limits(
        self, fv: FeatureVector, spiking: Collection[str], triggers: list[Trigger]
    ) -> None:
        """Hard-limit triggers (critical). On a sensor with spike evidence a limit counts as
        crossed only when every reading of the window crossed it (its min above the high
        limit, its max below the low one): an outlier is not the machine's level."""
        get = fv.features.get
        aggregate = self.config.limit_aggregate
        for sensor, (low, high) in self.limits.for_machine(fv.machine_id).items():
            if sensor in spiking:
                checks = (("min", (None, high)), ("max", (low, None)))
            else:
                checks = ((aggregate, (low, high)),)
            for agg, limit in checks:
                value = get(f"{sensor}.{agg}")
                if value is not None:
                    t = hard_limit_trigger(sensor, agg, value, limit)
                    if t is not None:
                        triggers.append(t)

    def _full_rules(
        self,
        profile: _Profile,
        fv: FeatureVector,
        wstate: WindowState | None,
        triggers: list[Trigger],
    ) -> np.ndarray:
        """Hard limits, sensor-fault rules, z-scores and PCA on a window that is not quiet;
        appends to ``triggers`` and returns which sensors are at fault."""
        cfg = self.config
        features = fv.features
        x = profile.window(features)
        sensor_ts = profile.rules.triggers(x, wstate.history if wstate else {})
        spiking = {t.feature.partition(".")[0] for t in sensor_ts if t.detector == "spike"}
        self._hard_limits(fv, spiking, triggers)
        triggers.extend(sensor_ts)
        faulty = np.zeros(len(profile.sensors), dtype=bool)
        if sensor_ts:
            names = {t.feature.partition(".")[0] for t in sensor_ts}
            faulty[[j for j, s in enumerate(profile.sensors) if s in names]] = True
        with np.errstate(invalid="ignore"):
            z = (x - profile.mean) / profile.scale
            zz = z[profile.zscore_rows]
            hits = np.argwhere((np.abs(zz) >= cfg.z_watch) & ~faulty)
        for r, j in hits:
            i = profile.zscore_rows[r]
            t = zscore_trigger(
                f"{profile.sensors[j]}.{profile.aggregates[i]}",
                float(x[i, j]),
                float(profile.mean[i, j]),
                float(profile.scale[i, j]),
                cfg,
            )
            if t is not None:
                triggers.append(t)
        if profile.pca is not None:
            zp = z[profile.pca_rows, profile.pca_cols]
            # missing or faulty inputs take their healthy mean (z = 0)
            zp[~np.isfinite(zp) | faulty[profile.pca_cols]] = 0.0
            t = self._pca_trigger(profile.pca, zp - profile.pca.mean)
            if t is not None:
                triggers.append(t)
        return faulty

    def _pca_trigger(self, det: PcaDetector, centred: np.ndarray) -> Trigger | None:
        t2, q = det.statistics_centred(centred)
        r_t2, r_q = t2 / det.t2_threshold, q / det.q_threshold
        if max(r_t2, r_q) < 1.0:
            return None
        if r_t2 >= r_q:
            detector, value, threshold, ratio = "pca_t2", t2, det.t2_threshold, r_t2
        else:
            detector, value, threshold, ratio = "pca_q", q, det.q_threshold, r_q
        # T² is a distance *inside* the healthy subspace: an operating point beyond the
        # training range (a load never run while fitting) moves it as much as a fault does, so
        # it stays evidence (watch); Q, off the subspace (broken correlations), can be medium.
        medium = detector == "pca_q" and ratio >= self.config.pca_medium
        return Trigger(
            detector=detector,
            value=value,
            threshold=threshold,
            score=ratio,
            severity="medium" if medium else "watch",
        )

    def _key_levels(self, triggers: list[Trigger]) -> dict[str, Trigger]:
        """Alarm key → its strongest trigger that persistence counts (see
        ``AnomalyConfig.persistence_ignores``)."""
        ignored = self._ignored
        grouped: dict[str, list[Trigger]] = {}
        for t in triggers:
            if t.detector not in ignored:
                grouped.setdefault(alarm_key(t), []).append(t)
        return {k: strongest(ts) for k, ts in grouped.items()}  # type: ignore[misc]

    def score(self, fv: FeatureVector, state: DetectorState) -> AnomalyScore:
        """Score one window. Pure: neither the model nor ``state`` changes."""
        triggers, _profile = self._triggers(fv, state)
        wstate = state.windows.get(fv.window_s)
        runs = wstate.runs if wstate is not None else {}
        for key, best in sorted(self._key_levels(triggers).items()):
            if RANK[best.severity] < _WATCH:
                continue
            t = persistence_trigger(
                "" if key == MACHINE_KEY else best.feature,
                runs.get(key, 0) + 1,
                best.severity,
                best.category,
                self.config,
            )
            if t is not None:
                triggers.append(t)
        severity, score, category, reason = combine(triggers)
        return AnomalyScore(
            ts=fv.ts,
            machine_id=fv.machine_id,
            window_s=fv.window_s,
            severity=severity,  # type: ignore[arg-type]
            score=score,
            category=category,  # type: ignore[arg-type]
            reason=reason,
            triggers=triggers,
            model_version=self.model_version,
        )

    def update(
        self, fv: FeatureVector, state: DetectorState, scored: AnomalyScore | None = None
    ) -> DetectorState:
        """The stream's step after scoring ``fv``: persistence counters, sensor history and
        online learning. ``scored`` (what :meth:`score` returned for this ``fv`` and this
        ``state``) spares evaluating the window twice. Returns ``state``, updated in place."""
        cfg = self.config
        profile = self._profile(fv)
        wstate = state.windows.get(fv.window_s)
        if wstate is None:
            wstate = state.windows[fv.window_s] = WindowState()
            if profile is not None and profile.hst is not None and self._hst_applies(fv.window_s):
                seed = zlib.crc32(f"{cfg.seed}/{fv.machine_id}/{fv.window_s!r}".encode())
                wstate.online = OnlineDetector(
                    profile.hst,
                    trees=cfg.hst_trees,
                    height=cfg.hst_height,
                    window=cfg.hst_window,
                    quantile=cfg.hst_quantile,
                    seed=seed,
                )
        triggers = list(scored.triggers) if scored is not None else self._triggers(fv, state)[0]
        levels = self._key_levels(triggers)
        wstate.runs = {
            key: wstate.runs.get(key, 0) + 1
            for key, best in sorted(levels.items())
            if RANK[best.severity] >= _WATCH
        }
        if profile is None:
            return state
        get = fv.features.get
        previous = wstate.history
        history = {}
        for sensor, n_latest, n_min, n_max in profile.history_names:
            latest = get(n_latest)
            if latest is None:
                continue
            prev = previous.get(sensor)
            flat = prev is not None and get(n_min) == get(n_max) == prev[0]
            history[sensor] = (latest, prev[1] + 1 if flat else 0)  # type: ignore[index]
        wstate.history = history
        if wstate.online is not None:
            faulty = {t.feature.partition(".")[0] for t in triggers if t.category == "sensor"}
            wstate.online.learn(wstate.online.scaling.transform(fv.features, faulty))
        return state

    # ------------------------------------------------------------------ introspection
    def info(self) -> dict[str, Any]:
        """What the baselines, limits and learned detectors are (JSON values)."""
        own = sorted(self.baselines.own.values(), key=lambda b: (b.key, b.window_s))
        return {
            "format": self.artifact_format,
            "model_version": self.model_version,
            "severities": list(SEVERITIES),
            "config": self.config.to_dict(),
            "trained": self.trained,
            "machines_with_own_baseline": sorted({b.key for b in own}),
            "baselines": self.baselines.to_dict(),
            "limits": self.limits.to_dict(),
            "pca": [
                {"window_s": w, "sensors": list(s), **det.to_dict()}
                for (w, s), det in sorted(self.pca.items())
            ],
        }

    # ------------------------------------------------------------------ artifacts
    def to_artifacts(self) -> dict[str, bytes]:
        """One JSON artifact: config, baselines, limits and PCA matrices (no pickles)."""
        data = {
            "format": self.artifact_format,
            "config": self.config.to_dict(),
            "trained": self.trained,
            "baselines": self.baselines.to_dict(),
            "limits": self.limits.to_dict(),
            "pca": [
                {"window_s": w, "sensors": list(s), "detector": det.to_dict()}
                for (w, s), det in sorted(self.pca.items())
            ],
        }
        return {ARTIFACT: json.dumps(data, sort_keys=True, allow_nan=False).encode("utf-8")}

    @classmethod
    def from_artifacts(cls, files: Mapping[str, bytes]) -> AnomalyModel:
        data = json.loads(files[ARTIFACT].decode("utf-8"))
        if data.get("format") != cls.artifact_format:
            raise ValueError(
                f"{ARTIFACT}: format {data.get('format')!r} is not {cls.artifact_format!r}"
            )
        pca = {
            (float(item["window_s"]), tuple(item["sensors"])): PcaDetector.from_dict(
                item["detector"]
            )
            for item in data["pca"]
        }
        return cls(
            AnomalyConfig.from_dict(data["config"]),
            Baselines.from_dict(data["baselines"]),
            HardLimits(data["limits"]),
            pca,
            trained=data.get("trained", {}),
        )
