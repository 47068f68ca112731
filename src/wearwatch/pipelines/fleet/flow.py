"""The fleet pipeline: readings → window features → anomaly scores → health → alarms.

::

    fleet.readings ──(machine_id)── tumbling windows (5 s, 30 s) ──▶ FeatureVector ─▶ fleet.features
        └─ score: AnomalyModel.score, then .update (per machine and window size) ─▶ fleet.scores
            ├─ on the health window (the longest): risk, health, time to maintenance ─▶ fleet.health
            └─ on the alarm window: AlarmPolicy ─▶ fleet.alarms

Every step is keyed by machine, and ``fleet.readings`` is partitioned by machine, so the whole
flow is one stage: no repartition topic, and over columnar (Arrow) records the windows are
aggregated per batch with numpy before the per-machine Python steps see one feature vector per
closed window.

**Untrained defaults.** Without an anomaly model the rules run on hard limits only (what a
plant configures: ``limits``); without a risk model the risk is 0 and the health score rests
on the anomaly evidence; without an alarm config :class:`AlarmConfig`'s defaults apply.

**State.** Per machine: one detector state per window size (persistence counters and online
detectors must not mix 5 s and 30 s windows), the risk model's trend features, the maintenance
forecast, and the machine's alarms. All of it is checkpointed with the partition, so a restart
continues with the same state and emits the same alarms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wearwatch import topics
from wearwatch.events import AnomalyScore, FeatureVector, MachineHealth
from wearwatch.learn.anomaly.baseline import Baselines, HardLimits
from wearwatch.learn.anomaly.config import AnomalyConfig
from wearwatch.learn.anomaly.model import AnomalyModel, DetectorState
from wearwatch.learn.risk.features import TrendFeatures
from wearwatch.learn.risk.health import MaintenanceForecast, health_score
from wearwatch.learn.risk.model import RiskModel, risk_level
from wearwatch.pipelines.fleet.alarms import AlarmConfig, AlarmStep
from wearwatch.pipelines.fleet_features import feature_vectors
from wearwatch.runtime.dataflow import Flow, Source, register

FLOW_NAME = "fleet"
Limits = dict[str, dict[str, tuple[float | None, float | None]]]


@dataclass
class MachineState:
    """The scoring step's state of one machine (checkpointed with its partition)."""

    detector: DetectorState
    trend: TrendFeatures | None = None
    forecast: MaintenanceForecast | None = None


class ScoreStep:
    """Per machine: every window scored (``score``, the pure request path, then ``update``,
    the stream's step), and on the health window the failure risk, the health score and the
    time until vibration reaches the machine's hard limit (the ISO 10816 C/D boundary)."""

    def __init__(
        self,
        anomaly: AnomalyModel,
        risk: RiskModel | None,
        health_window_s: float,
        limits: Limits | None = None,
    ) -> None:
        self.anomaly = anomaly
        self.risk = risk
        self.health_window_s = health_window_s
        self.limits = limits or {}

    def init(self) -> None:
        return None  # made on the machine's first window: the detector needs its id

    def on_event(self, fv: FeatureVector, state: MachineState | None, ctx: Any) -> MachineState:
        if state is None:
            state = MachineState(self.anomaly.new_state(fv.machine_id))
        score = self.anomaly.score(fv, state.detector)
        state.detector = self.anomaly.update(fv, state.detector, score)
        ctx.emit(score)
        if fv.window_s == self.health_window_s:
            ctx.emit(self._health(fv, score, state))
        return state

    def _health(self, fv: FeatureVector, score: AnomalyScore, state: MachineState) -> MachineHealth:
        risk = 0.0
        if self.risk is not None:
            if state.trend is None:
                state.trend = self.risk.new_trend()
            risk = min(1.0, max(0.0, self.risk.predict_proba(state.trend.update(fv))))
        health, explanation = health_score(score, risk)
        if state.forecast is None:
            limit = self.limits.get(fv.machine_id, self.limits.get("*", {})).get("vibration")
            if limit is not None and limit[1] is not None:
                state.forecast = MaintenanceForecast(limit=float(limit[1]), sensor="vibration")
        hours = None
        if state.forecast is not None:
            state.forecast.update(fv)
            hours = state.forecast.hours_to_limit()
            explanation = {**explanation, **state.forecast.explain()}
        return MachineHealth(
            ts=fv.ts,
            machine_id=fv.machine_id,
            risk=risk,
            risk_level=risk_level(risk),
            health=health,
            time_to_maintenance_h=hours,
            explanation={k: v for k, v in explanation.items() if math.isfinite(v)},
            model_version=getattr(self.risk, "model_version", "") if self.risk else "",
        )


def default_anomaly_model(limits: Limits | None = None) -> AnomalyModel:
    """The untrained detector: hard-limit rules only (no baselines to take z-scores from)."""
    return AnomalyModel(AnomalyConfig(), Baselines({}, {}), HardLimits(limits or {}), {})


@register(FLOW_NAME)
def fleet_pipeline(
    anomaly: AnomalyModel | None = None,
    risk: RiskModel | None = None,
    alarms: AlarmConfig | None = None,
    windows_s: Sequence[float] = (5.0, 30.0),
    grace_s: float = 2.0,
    *,
    limits: Limits | None = None,
    health_window_s: float | None = None,
    alarm_window_s: float | None = None,
    score_windows_s: Sequence[float] | None = None,
    input_topic: str = topics.READINGS.name,
    features_topic: str = topics.FEATURES.name,
    scores_topic: str = topics.SCORES.name,
    health_topic: str = topics.HEALTH.name,
    alarms_topic: str = topics.ALARMS.name,
) -> Flow:
    """The fleet flow. ``health_window_s`` (default: the longest window) is the window size
    risk and health are computed on, ``alarm_window_s`` (default: the longest) the one whose
    scores drive the alarms, ``score_windows_s`` (default: all) the sizes scored and published
    on ``fleet.scores`` (it must include the alarm and health windows)."""
    sizes = tuple(float(s) for s in windows_s)
    if not sizes:
        raise ValueError("windows_s=(): give at least one window size")
    health_on = float(health_window_s) if health_window_s is not None else max(sizes)
    alarm_on = float(alarm_window_s) if alarm_window_s is not None else max(sizes)
    scored_sizes = sizes if score_windows_s is None else tuple(float(s) for s in score_windows_s)
    for name, value in (("health_window_s", health_on), ("alarm_window_s", alarm_on)):
        if value not in scored_sizes:
            raise ValueError(
                f"{name}={value:g}: not one of the scored windows {list(scored_sizes)}"
            )
    unknown = [s for s in scored_sizes if s not in sizes]
    if unknown:
        raise ValueError(f"score_windows_s={unknown}: not in windows_s={list(sizes)}")
    model = anomaly if anomaly is not None else default_anomaly_model(limits)
    source = topics.READINGS
    flow = Flow(FLOW_NAME, Source(input_topic, source.event_type, source.partitioned_by))
    features = feature_vectors(flow.stream, sizes, grace_s)
    features.to_topic(features_topic)
    to_score = features if scored_sizes == sizes else features.filter(_sized(scored_sizes))
    scored = to_score.process(ScoreStep(model, risk, health_on, limits))
    scores = scored.filter(_is(AnomalyScore))
    scores.to_topic(scores_topic)
    scored.filter(_is(MachineHealth)).to_topic(health_topic)
    on_alarm_window = scores.filter(lambda s: s.window_s == alarm_on)
    # Deadlines (clears) wait for the scores of windows that ended before them: a window's
    # score comes once the watermark passes its end + grace.
    step = AlarmStep(alarms or AlarmConfig(), settle_s=grace_s)
    on_alarm_window.process(step).to_topic(alarms_topic)
    return flow


def _sized(sizes: tuple[float, ...]) -> Callable[[Any], bool]:
    return lambda fv: fv.window_s in sizes


def _is(kind: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, kind)
