"""NASA C-MAPSS run-to-failure engines replayed as a fleet through the fleet pipeline.

Real failures, not a twin's: each engine of a training set (``train_FD00x.txt``) is a machine
(``engine-001``…), each cycle one time step of :data:`CYCLE_S` = 1 s of event time (so the
windows, the alarm clocks and every figure below read directly in cycles), every engine starting
at the same instant. The operating settings are not sensors and are left out; sensors with fewer
than three distinct values on the engines the detectors are fitted on are constant (FD001:
1, 5, 6, 10, 16, 18, 19 — the set the literature drops) and are left out too. An engine's last
cycle is its failure.

FD002 and FD004 fly six operating conditions, and every sensor jumps with the condition far more
than with wear. There each sensor is replayed as its deviation from the healthy level of the
current condition, in units of that condition's healthy spread (:class:`RegimeNormaliser`: the
conditions clustered from the operating settings, levels and spreads from the fitting engines'
healthy cycles), as a plant would trend a tag against its operating point.

Detectors are fitted on *other* engines: the engines are split at random (seeded) into two
halves; the detectors are fitted on one half's healthy cycles — RUL > :data:`HEALTHY_RUL` =
125 cycles, the literature's healthy region (the piecewise-linear RUL cap) — and the other half
is replayed through :func:`~wearwatch.pipelines.fleet.flow.fleet_pipeline`; then the halves
swap, so each engine is replayed once by detectors that never saw it.

Figures, per replayed engine with failure at cycle ``T`` (``machine`` alarms: what a failing
engine should raise):

- **lead time**: ``T`` − the first cycle in ``[T − 125, T]`` at which a machine alarm is open
  (an alarm still open from earlier counts from ``T − 125``);
- **alarmed early**: lead time ≥ :data:`EARLY_CYCLES` = 20 cycles;
- **false alarm**: an alarm (any type) raised or re-raised at a cycle before ``T − 125``,
  while the engine is, by the literature's convention, healthy (``false_sensor_alarms``: those
  of sensor alarms).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wearwatch.events import Alarm
from wearwatch.ingest.replay import ReplayOptions, fit_detectors, run_pipeline

if TYPE_CHECKING:
    from wearwatch.learn.anomaly.model import AnomalyModel

#: Event-time seconds per cycle: windows and alarm clocks in seconds read as cycles.
CYCLE_S = 1.0
#: Cycles before failure counted as healthy beyond this RUL (the literature's cap).
HEALTHY_RUL = 125
#: An alarm this many cycles before the failure (or more) is early.
EARLY_CYCLES = 20
#: Fewer distinct values than this on the fitting engines: a constant sensor, dropped.
MIN_DISTINCT = 3
#: The fleet's common start: 2026-01-01T00:00:00Z.
START_US = 1_767_225_600 * 1_000_000


def default_options() -> ReplayOptions:
    """The fleet pipeline set for engines that fail in ~130–360 cycles rather than for a 1 Hz
    fleet scored 20,000 times a day. Chosen on FD003 (then run unchanged on FD001); each
    change from the fleet's defaults has a reason in the data:

    - one window of 10 cycles (alarms follow the longest window; 10 is short enough for a
      20-cycle lead, long enough to average sensor noise);
    - no relative std floor (the fleet floors a z-score's std at 1 % of the level): C-MAPSS
      sensors degrade by fractions of a percent of their level (their healthy noise is
      0.1–0.6 % of it), so that floor would hide every drift;
    - z-score watch band from |z| ≥ 3 (the fleet: 4) and persistence 2: two windows in a row
      at watch (20 cycles) escalate to medium. The fleet's bands budget for ~20,000 windows a
      day; an engine lives ~20 windows, and two windows in a row at |z| ≥ 3 on one of 14
      sensors happen in a healthy engine about once in 50 engine lives (Gaussian noise,
      independent sensors: (1 − 0.9973¹⁴)² ≈ 0.0014 per window, ~15 healthy windows);
    - no stuck or spike evidence: C-MAPSS has no sensor faults, and its sensors are recorded at
      a resolution (0.01, whole numbers) at which a healthy sensor repeats one value for a
      whole window — "stuck" cannot be told from quantisation here;
    - alarms clear after 15 quiet cycles and escalate after 30 (the fleet's 10 min quiet
      period would be 600 cycles, longer than most engines live).
    """
    from wearwatch.learn.anomaly.config import AnomalyConfig
    from wearwatch.pipelines.fleet.alarms import AlarmConfig

    never = 1_000_000_000
    anomaly = AnomalyConfig(
        std_floor_rel=0.0,
        z_watch=3.0,
        persistence=2,
        stuck_min_count=never,
        stuck_windows=never,
        spike_k=float(never),
    )
    return ReplayOptions(
        windows_s=(10.0 * CYCLE_S,),
        grace_s=0.0,
        watermark_delay_s=0.0,
        anomaly=anomaly,
        alarms=AlarmConfig(quiet_s=15.0 * CYCLE_S, escalate_after_s=30.0 * CYCLE_S),
        write=False,
    )


def engine_id(unit: int) -> str:
    return f"engine-{unit:03d}"


def constant_sensors(
    train: pd.DataFrame, sensors: list[str], regimes: np.ndarray | None = None
) -> list[str]:
    """Sensors with fewer than :data:`MIN_DISTINCT` distinct values in ``train`` (within each
    operating regime, when ``regimes`` labels the rows: a sensor that only follows the regime
    carries no wear)."""
    if regimes is None:
        return [s for s in sensors if train[s].nunique() < MIN_DISTINCT]
    per_regime = train[sensors].groupby(regimes).nunique()
    return [s for s in sensors if int(per_regime[s].max()) < MIN_DISTINCT]


@dataclass(frozen=True)
class RegimeNormaliser:
    """Sensor values as deviations from their operating regime's healthy level, in units of
    that regime's healthy std; regimes are k-means clusters of the operating settings.

    >>> ops = pd.DataFrame({"op_setting_1": [0.0, 0.0, 10.0, 10.0, 0.0, 10.0],
    ...                     "op_setting_2": 0.0, "op_setting_3": 0.0,
    ...                     "s": [1.0, 3.0, 101.0, 103.0, 5.0, 110.0]})
    >>> norm = RegimeNormaliser.fit(ops, ops.iloc[:4], ["s"], regimes=2, seed=0)
    >>> norm.apply(ops.iloc[4:])["s"].tolist()
    [3.0, 8.0]
    """

    kmeans: Any
    sensors: tuple[str, ...]
    means: np.ndarray
    stds: np.ndarray

    @classmethod
    def fit(
        cls,
        rows: pd.DataFrame,
        healthy: pd.DataFrame,
        sensors: list[str],
        regimes: int,
        seed: int,
    ) -> RegimeNormaliser:
        from sklearn.cluster import KMeans

        from wearwatch.learn.rul.data import OP_SETTINGS

        kmeans = KMeans(n_clusters=regimes, n_init=10, random_state=seed)
        kmeans.fit(rows[OP_SETTINGS].to_numpy(dtype=np.float64))
        labels = kmeans.predict(healthy[OP_SETTINGS].to_numpy(dtype=np.float64))
        values = healthy[sensors].to_numpy(dtype=np.float64)
        means = np.zeros((regimes, len(sensors)))
        stds = np.ones((regimes, len(sensors)))
        for r in range(regimes):
            mine = values[labels == r]
            if len(mine):
                means[r] = mine.mean(axis=0)
                spread = mine.std(axis=0)
                stds[r] = np.where(spread > 0, spread, 1.0)
        return cls(kmeans, tuple(sensors), means, stds)

    def regimes(self, rows: pd.DataFrame) -> np.ndarray:
        from wearwatch.learn.rul.data import OP_SETTINGS

        return self.kmeans.predict(rows[OP_SETTINGS].to_numpy(dtype=np.float64))

    def apply(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` with each sensor replaced by its regime-normalised value."""
        out = rows.copy()
        regime = self.regimes(rows)
        values = rows[list(self.sensors)].to_numpy(dtype=np.float64)
        out[list(self.sensors)] = (values - self.means[regime]) / self.stds[regime]
        return out


def fleet_readings(train: pd.DataFrame, sensors: list[str]) -> pd.DataFrame:
    """Engines' rows as long readings (ts, machine_id, sensor, value), in time order: cycle
    ``c`` of every engine at ``START + c · CYCLE_S``.

    >>> rows = pd.DataFrame({"unit": [1, 1, 2], "cycle": [1, 2, 1], "sensor_2": [1.0, 2.0, 3.0]})
    >>> fleet_readings(rows, ["sensor_2"])[["machine_id", "value"]].values.tolist()
    [['engine-001', 1.0], ['engine-002', 3.0], ['engine-001', 2.0]]
    """
    frame = train.sort_values(["cycle", "unit"], kind="stable")
    n = len(frame)
    us = START_US + (frame["cycle"].to_numpy(dtype=np.int64) * round(CYCLE_S * 1e6))
    machines = np.array([engine_id(u) for u in frame["unit"].to_numpy()], dtype=object)
    values = frame[sensors].to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(np.repeat(us, len(sensors)), unit="us", utc=True),
            "machine_id": np.repeat(machines, len(sensors)),
            "sensor": np.tile(np.array(sensors, dtype=object), n),
            "value": values.reshape(-1),
        }
    )


@dataclass(frozen=True)
class EngineOutcome:
    """One replayed engine: its failure cycle, its alarms' figures."""

    machine_id: str
    failure_cycle: int
    #: Cycles from the first open machine alarm in the last :data:`HEALTHY_RUL` cycles to the
    #: failure (None: no machine alarm there).
    lead_cycles: int | None
    false_alarms: int
    #: Cycle of every raise or re-raise (all alarm types).
    raised_at: tuple[int, ...] = ()
    #: Of ``false_alarms``, those of sensor alarms.
    false_sensor_alarms: int = 0

    @property
    def early(self) -> bool:
        return self.lead_cycles is not None and self.lead_cycles >= EARLY_CYCLES


def engine_outcome(machine_id: str, failure_cycle: int, alarms: list[Alarm]) -> EngineOutcome:
    """The figures of one engine from its alarm transitions (definitions: module docstring).

    >>> from wearwatch.events import utc
    >>> def alarm(cycle, transition, status, kind="machine"):
    ...     t = utc(START_US / 1e6 + cycle)
    ...     return Alarm(ts=t, alarm_id=f"e/{kind}/1", machine_id="e", alarm_type=kind,
    ...                  severity="medium", status=status, transition=transition, raised_at=t)
    >>> out = engine_outcome("e", 200, [alarm(10, "raised", "active"),
    ...     alarm(20, "cleared", "cleared"), alarm(150, "raised", "active", "sensor:s2"),
    ...     alarm(160, "reraised", "active")])
    >>> out.lead_cycles, out.false_alarms, out.early, out.raised_at
    (40, 1, True, (10, 150, 160))
    """
    healthy_until = failure_cycle - HEALTHY_RUL
    cycles = [round((a.ts.timestamp() * 1e6 - START_US) / (CYCLE_S * 1e6)) for a in alarms]
    raises = [(c, a) for c, a in zip(cycles, alarms, strict=True) if a.transition in _RAISES]
    raised = [c for c, _ in raises]
    false_alarms = sum(c < healthy_until for c in raised)
    false_sensor = sum(c < healthy_until and a.alarm_type != "machine" for c, a in raises)
    first: int | None = None
    open_since: int | None = None
    for c, a in sorted(zip(cycles, alarms, strict=True), key=lambda x: x[0]):
        if a.alarm_type != "machine":
            continue
        if a.status != "cleared" and open_since is None:
            open_since = c
        elif a.status == "cleared" and open_since is not None:
            if c > healthy_until:  # open during part of the window
                first = max(open_since, healthy_until)
                break
            open_since = None
    if first is None and open_since is not None and open_since <= failure_cycle:
        first = max(open_since, healthy_until)
    lead = None if first is None else failure_cycle - first
    return EngineOutcome(machine_id, failure_cycle, lead, false_alarms, tuple(raised), false_sensor)


_RAISES = ("raised", "reraised")


@dataclass
class CmapssReplay:
    subset: str
    options: ReplayOptions
    seed: int
    sensors: list[str]
    dropped: list[str]
    #: Operating conditions of the subset (> 1: sensors replayed regime-normalised).
    conditions: int = 1
    engines: list[EngineOutcome] = field(default_factory=list)
    #: Per fold: engines fitted on, feature vectors fitted on, engines replayed.
    folds: list[dict[str, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures as JSON values (definitions in the module docstring)."""
        failures = len(self.engines)
        early = sum(e.early for e in self.engines)
        leads = [e.lead_cycles for e in self.engines if e.lead_cycles is not None]
        false = sum(e.false_alarms for e in self.engines)
        return {
            "subset": self.subset,
            "engines": failures,
            "failures": failures,
            "cycle_s": CYCLE_S,
            "windows_cycles": [w / CYCLE_S for w in self.options.windows_s],
            "sensors": self.sensors,
            "dropped_constant_sensors": self.dropped,
            "sensor_values": (
                "raw"
                if self.conditions == 1
                else f"normalised per operating condition ({self.conditions} clusters)"
            ),
            "fitted_on": f"the other half's cycles with RUL > {HEALTHY_RUL} (seed {self.seed})",
            "failures_alarmed_early": early,
            "failures_alarmed_early_share": round(early / failures, 4) if failures else None,
            "early_means": f"a machine alarm open ≥ {EARLY_CYCLES} cycles before the failure",
            "failures_alarmed": len(leads),
            "median_lead_cycles": float(statistics.median(leads)) if leads else None,
            "false_alarms": false,
            "false_alarms_per_engine": round(false / failures, 4) if failures else None,
            "false_sensor_alarms": sum(e.false_sensor_alarms for e in self.engines),
            "false_means": f"an alarm raised more than {HEALTHY_RUL} cycles before the failure",
            "folds": self.folds,
        }


def replay_cmapss(
    directory: Path,
    subset: str = "FD001",
    options: ReplayOptions | None = None,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> CmapssReplay:
    """Two folds: fit on one random half's healthy cycles, replay the other half; swap."""
    from wearwatch.learn.rul.data import N_CONDITIONS, SENSORS, load_subset

    options = options or default_options()
    note = progress or (lambda stage, done, total: None)
    train = load_subset(directory, subset).train
    conditions = N_CONDITIONS[subset]
    units = np.array(sorted(train["unit"].unique()))
    order = np.random.default_rng(seed).permutation(units)
    halves = [np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])]
    result = CmapssReplay(subset, options, seed, [], [], conditions=conditions)
    for k, (fit_units, replay_units) in enumerate([halves, halves[::-1]]):
        note(f"fold {k + 1}: fitting", k, 2)
        fit_rows = train[train["unit"].isin(fit_units)]
        replay_rows = train[train["unit"].isin(replay_units)]
        healthy = fit_rows[fit_rows["rul"] > HEALTHY_RUL]
        regimes = None
        if conditions > 1:
            normaliser = RegimeNormaliser.fit(fit_rows, healthy, SENSORS, conditions, seed)
            regimes = normaliser.regimes(fit_rows)
        dropped = constant_sensors(fit_rows, SENSORS, regimes)
        sensors = [s for s in SENSORS if s not in dropped]
        if conditions > 1:
            healthy, replay_rows = normaliser.apply(healthy), normaliser.apply(replay_rows)
        model, windows = fit_detectors([fleet_readings(healthy, sensors)], options)
        note(f"fold {k + 1}: replaying", k, 2)
        outcomes = _replay(model, replay_rows, sensors, options)
        result.engines.extend(outcomes)
        result.folds.append(
            {
                "fitted_engines": len(fit_units),
                "fitted_windows": windows,
                "replayed_engines": len(replay_units),
                "sensors": len(sensors),
            }
        )
        if not result.sensors:
            result.sensors, result.dropped = sensors, dropped
    result.engines.sort(key=lambda e: e.machine_id)
    note("done", 2, 2)
    return result


def _replay(
    model: AnomalyModel, rows: pd.DataFrame, sensors: list[str], options: ReplayOptions
) -> list[EngineOutcome]:
    readings = fleet_readings(rows, sensors)
    run = run_pipeline(readings, model, options, lambda _rows: None)
    if run.dead_letters or run.late:
        raise RuntimeError(  # the readings are made here, in order: a bug, not bad input
            f"C-MAPSS replay: {len(run.dead_letters)} dead letters, {run.late} late readings "
            f"({run.dead_letters[0].reason if run.dead_letters else ''})"
        )
    by_engine: dict[str, list[Alarm]] = {}
    for a in run.alarms:
        by_engine.setdefault(a.machine_id, []).append(a)
    failure = rows.groupby("unit")["cycle"].max()
    return [
        engine_outcome(engine_id(u), int(t), by_engine.get(engine_id(u), []))
        for u, t in failure.items()
    ]


def with_windows(options: ReplayOptions, windows_cycles: tuple[float, ...]) -> ReplayOptions:
    """``options`` with windows given in cycles."""
    return replace(options, windows_s=tuple(w * CYCLE_S for w in windows_cycles))
