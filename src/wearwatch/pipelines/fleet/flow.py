"""The fleet pipeline: readings → window features → anomaly scores → health → alarms.

::

    fleet.readings ─(machine_id)─ tumbling windows (5 s, 30 s) ─▶ FeatureVector ─▶ fleet.features
      └─ AnomalyModel.score, then .update ─▶ fleet.scores
          ├─ on the health window (the longest): risk, health, time to maintenance ─▶ fleet.health
          └─ on the alarm window (the longest): AlarmStep ─▶ fleet.alarms

Every step is keyed by machine, and ``fleet.readings`` is partitioned by machine, so the whole
flow is one stage: no repartition topic, and over columnar (Arrow) records the windows are
aggregated per batch with numpy before the per-machine Python steps see one feature vector per
closed window.

**Untrained defaults.** Without an anomaly model the rules run on hard limits only (what a
plant configures: ``limits``); without a risk model the risk is 0 and the health score rests
on the anomaly evidence; without an alarm config :class:`AlarmConfig`'s defaults apply.

**Model rollout.** With a rollout of the ``risk`` family in the registry
(:mod:`wearwatch.store.rollout`: ``wearwatch models rollout risk VERSION --shadow`` or
``--canary SHARE``), both the current version and the candidate score every health window,
each with its own trend state; the one the rollout picks for the machine serves (the current
one in shadow; the candidate for a canary's cohort) and is named in
``MachineHealth.model_version``, and both predictions go to ``fleet.model_scores``
(:class:`~wearwatch.events.ModelScore`), where :mod:`.live_metrics` compares them. Without a
rollout the flow and its outputs are exactly those of before (no ``fleet.model_scores``).

**State.** Per machine: the detector state (persistence counters and online detectors, kept
per window size by the model), each risk model version's trend features, the maintenance
forecast, and the machine's alarms. All of it is checkpointed with the partition, so a restart
continues with the same state and emits the same alarms.

**Operators' commands.** With ``alarm_input=True`` the alarm window's scores go to
``fleet.alarm_input`` instead, where the API and ``wearwatch alarms`` put operators'
:class:`~wearwatch.events.AlarmCommand` s, and the ``fleet-alarms`` flow
(:func:`fleet_alarms_flow`) applies both in the one order that topic holds::

    fleet.alarm_input (AnomalyScore | AlarmCommand, by machine) ─ AlarmStep ─▶ fleet.alarms

so a replay of the log acknowledges, clears and silences the same alarms. Without commands
the two flows give the alarms of the fused one (same policy, same scores, same deadlines).

**Alarm deadlines.** A clear or de-escalation due at ``t`` is applied by an event-time timer at
``t + grace_s``: by then every window ending before ``t`` has been scored, so the alarms are
those a later score would have produced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wearwatch import topics
from wearwatch.events import (
    AlarmCommand,
    AnomalyScore,
    FeatureVector,
    MachineHealth,
    ModelScore,
)
from wearwatch.learn.anomaly.baseline import Baselines, HardLimits
from wearwatch.learn.anomaly.config import AnomalyConfig
from wearwatch.learn.anomaly.model import AnomalyModel, DetectorState
from wearwatch.learn.risk.features import TrendFeatures
from wearwatch.learn.risk.health import MaintenanceForecast, health_score
from wearwatch.learn.risk.model import RiskModel, risk_level
from wearwatch.pipelines.fleet.alarms import AlarmConfig, AlarmStep
from wearwatch.pipelines.fleet_features import feature_vectors
from wearwatch.runtime.dataflow import Flow, Source, register
from wearwatch.store.registry import ModelRegistry, UnknownFamily
from wearwatch.store.rollout import Rollout

FLOW_NAME = "fleet"
ALARMS_FLOW_NAME = "fleet-alarms"
Limits = dict[str, dict[str, tuple[float | None, float | None]]]


@dataclass
class MachineState:
    """The scoring step's state of one machine (checkpointed with its partition)."""

    detector: DetectorState
    #: Per risk model version (``risk@v0003``; ``""`` untagged): its trend state, so a rollout's
    #: candidate warms up its own, and keeps it when promoted.
    trends: dict[str, TrendFeatures] | None = None
    forecast: MaintenanceForecast | None = None


class ScoreStep:
    """Per machine: every window scored (``score``, the pure request path, then ``update``,
    the stream's step), and on the health window the failure risk, the health score and the
    time until vibration reaches the machine's hard limit (the ISO 10816 C/D boundary).
    With a ``rollout``, the ``candidate`` risk model scores beside ``risk`` (module docstring).
    """

    def __init__(
        self,
        anomaly: AnomalyModel,
        risk: RiskModel | None,
        health_window_s: float,
        limits: Limits | None = None,
        candidate: RiskModel | None = None,
        rollout: Rollout | None = None,
    ) -> None:
        if (candidate is None) != (rollout is None):
            raise ValueError("candidate and rollout: give both (a rollout) or neither")
        if candidate is not None:
            if risk is None:
                raise ValueError("rollout: there is no current risk model to compare with")
            if not _tag(candidate) or _tag(candidate) == _tag(risk):
                raise ValueError(
                    f"candidate: needs its own model_version tag (got {_tag(candidate)!r}, "
                    f"current {_tag(risk)!r})"
                )
        self.anomaly = anomaly
        self.risk = risk
        self.health_window_s = health_window_s
        self.limits = limits or {}
        self.candidate = candidate
        self.rollout = rollout

    def init(self) -> None:
        return None  # made on the machine's first window: the detector needs its id

    def on_event(self, fv: FeatureVector, state: MachineState | None, ctx: Any) -> MachineState:
        if state is None:
            state = MachineState(self.anomaly.new_state(fv.machine_id))
        score = self.anomaly.score(fv, state.detector)
        state.detector = self.anomaly.update(fv, state.detector, score)
        ctx.emit(score)
        if fv.window_s == self.health_window_s:
            ctx.emit(self._health(fv, score, state, ctx))
        return state

    @staticmethod
    def _risk(model: RiskModel, fv: FeatureVector, state: MachineState) -> float:
        """``model``'s risk for the window, on (and updating) its own trend state."""
        if state.trends is None:
            state.trends = {}
        trend = state.trends.get(_tag(model))
        if trend is None:
            trend = state.trends[_tag(model)] = model.new_trend()
        return min(1.0, max(0.0, model.predict_proba(trend.update(fv))))

    def _forget_retired(self, state: MachineState) -> None:
        """Drop the trend state of versions no longer scored (replaced, or an aborted
        rollout's candidate): a restored checkpoint may hold them."""
        serving = {_tag(m) for m in (self.risk, self.candidate) if m is not None}
        if state.trends is not None and len(state.trends) > len(serving):
            state.trends = {k: v for k, v in state.trends.items() if k in serving}

    def _serve(self, fv: FeatureVector, state: MachineState, ctx: Any) -> tuple[float, str]:
        """The served risk and the version that made it; during a rollout both versions'
        predictions go out as :class:`ModelScore` s."""
        if self.risk is None:
            return 0.0, ""
        risk = self._risk(self.risk, fv, state)
        self._forget_retired(state)
        if self.candidate is None or self.rollout is None:
            return risk, _tag(self.risk)
        candidate = self._risk(self.candidate, fv, state)
        by_candidate = self.rollout.serves(fv.machine_id)
        for model, value, served in (
            (self.risk, risk, not by_candidate),
            (self.candidate, candidate, by_candidate),
        ):
            ctx.emit(
                ModelScore(
                    ts=fv.ts,
                    machine_id=fv.machine_id,
                    family="risk",
                    version=_tag(model),
                    value=value,
                    served=served,
                    rollout=self.rollout.mode,
                    horizon_s=model.horizon_s,
                )
            )
        return (candidate, _tag(self.candidate)) if by_candidate else (risk, _tag(self.risk))

    def _health(
        self, fv: FeatureVector, score: AnomalyScore, state: MachineState, ctx: Any
    ) -> MachineHealth:
        risk, version = self._serve(fv, state, ctx)
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
            model_version=version,
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
    registry: str | None = None,
    input_topic: str = topics.READINGS.name,
    features_topic: str = topics.FEATURES.name,
    scores_topic: str = topics.SCORES.name,
    health_topic: str = topics.HEALTH.name,
    alarms_topic: str = topics.ALARMS.name,
    alarm_input: bool = False,
    alarm_input_topic: str = topics.ALARM_INPUT.name,
    candidate: RiskModel | None = None,
    rollout: Rollout | None = None,
    model_scores_topic: str = topics.MODEL_SCORES.name,
) -> Flow:
    """The fleet flow. ``health_window_s`` (default: the longest window) is the window size
    risk and health are computed on, ``alarm_window_s`` (default: the longest) the one whose
    scores drive the alarms, ``score_windows_s`` the sizes scored and published on
    ``fleet.scores`` (default: the alarm and health windows — every score feeds a decision; the
    shorter windows still go to ``fleet.features``, and scoring them costs ~0.5 ms a window).
    ``registry``: a model registry directory whose current ``anomaly`` and ``risk`` versions
    serve where no model is given (``wearwatch worker fleet --param registry=DIR``).
    ``alarm_input``: the alarm window's scores go to ``alarm_input_topic`` for the
    ``fleet-alarms`` flow (which also applies operators' commands) instead of an alarm step
    here; ``alarms`` is then that flow's business.
    ``candidate`` and ``rollout``: a risk model version rolled out beside ``risk`` (module
    docstring); with ``registry`` and no ``candidate``, the registry's running risk rollout."""
    sizes = tuple(float(s) for s in windows_s)
    if not sizes:
        raise ValueError("windows_s=(): give at least one window size")
    health_on = float(health_window_s) if health_window_s is not None else max(sizes)
    alarm_on = float(alarm_window_s) if alarm_window_s is not None else max(sizes)
    if score_windows_s is None:
        scored_sizes = tuple(s for s in sizes if s in (health_on, alarm_on))
    else:
        scored_sizes = tuple(float(s) for s in score_windows_s)
    for name, value in (("health_window_s", health_on), ("alarm_window_s", alarm_on)):
        if value not in scored_sizes:
            raise ValueError(
                f"{name}={value:g}: not one of the scored windows {list(scored_sizes)}"
            )
    unknown = [s for s in scored_sizes if s not in sizes]
    if unknown:
        raise ValueError(f"score_windows_s={unknown}: not in windows_s={list(sizes)}")
    if registry is not None:
        anomaly = anomaly if anomaly is not None else _current(registry, "anomaly")
        risk = risk if risk is not None else _current(registry, "risk")
        if candidate is None:
            candidate, rollout = _rollout(registry)
    model = anomaly if anomaly is not None else default_anomaly_model(limits)
    source = topics.READINGS
    flow = Flow(FLOW_NAME, Source(input_topic, source.event_type, source.partitioned_by))
    features = feature_vectors(flow.stream, sizes, grace_s)
    features.to_topic(features_topic)
    to_score = features if scored_sizes == sizes else features.filter(_sized(scored_sizes))
    scored = to_score.process(ScoreStep(model, risk, health_on, limits, candidate, rollout))
    if candidate is not None:
        scored.filter(_is(ModelScore)).to_topic(model_scores_topic)
    scores = scored.filter(_is(AnomalyScore))
    scores.to_topic(scores_topic)
    scored.filter(_is(MachineHealth)).to_topic(health_topic)
    on_alarm_window = scores.filter(lambda s: s.window_s == alarm_on)
    if alarm_input:
        on_alarm_window.to_topic(alarm_input_topic)
        return flow
    # Deadlines (clears) wait for the scores of windows that ended before them: a window's
    # score comes once the watermark passes its end + grace.
    step = AlarmStep(alarms or AlarmConfig(), settle_s=grace_s)
    on_alarm_window.process(step).to_topic(alarms_topic)
    return flow


@register(ALARMS_FLOW_NAME)
def fleet_alarms_flow(
    alarms: AlarmConfig | None = None,
    settle_s: float = 2.0,
    *,
    input_topic: str = topics.ALARM_INPUT.name,
    alarms_topic: str = topics.ALARMS.name,
) -> Flow:
    """The alarm stage on its own (``wearwatch worker fleet-alarms``): the alarm window's
    scores and operators' commands from ``fleet.alarm_input``, per machine, through
    :class:`AlarmStep` to ``fleet.alarms``. ``settle_s``: the fleet flow's window grace (see
    :class:`AlarmStep`). ``alarms`` may be given as a table of :class:`AlarmConfig` fields
    (``--param alarms='{"quiet_s": 300}'``)."""
    if isinstance(alarms, dict):
        alarms = AlarmConfig(**alarms)
    if alarms is not None and not isinstance(alarms, AlarmConfig):
        raise ValueError(f"alarms={alarms!r}: expected an AlarmConfig or a table of its fields")
    source = topics.ALARM_INPUT
    flow = Flow(
        ALARMS_FLOW_NAME, Source(input_topic, AnomalyScore | AlarmCommand, source.partitioned_by)
    )
    flow.stream.process(AlarmStep(alarms or AlarmConfig(), settle_s=settle_s)).to_topic(
        alarms_topic
    )
    return flow


def _current(registry: str, family: str) -> Any:
    """The current version of ``family`` in ``registry``, tagged ``<family>@v0003`` (None if
    the registry has no such family)."""
    try:
        model, version = ModelRegistry(registry).load_with_meta(family)
    except UnknownFamily:
        return None
    model.model_version = f"{family}@{version.tag}"
    return model


def _rollout(registry: str) -> tuple[RiskModel | None, Rollout | None]:
    """The running rollout's candidate (tagged) and plan; (None, None) without one. A rollout
    of a family this flow cannot run (``anomaly``) is an error, not silently ignored."""
    reg = ModelRegistry(registry)
    for family in ("anomaly",):
        other = reg.rollout(family)  # a family never registered has no rollout
        if other is not None:
            raise ValueError(
                f"registry: a rollout of {family} v{other.version:04d} is running; the fleet "
                f"flow rolls out risk models only: abort it (wearwatch models rollout {family} "
                "--abort)"
            )
    plan = reg.rollout("risk")
    if plan is None:
        return None, None
    model, version = reg.load_with_meta("risk", plan.version)
    model.model_version = f"risk@{version.tag}"
    return model, plan


def _tag(model: Any) -> str:
    """A model's version tag (``risk@v0003``; ``""``: given in process, untagged)."""
    return str(getattr(model, "model_version", ""))


def _sized(sizes: tuple[float, ...]) -> Callable[[Any], bool]:
    return lambda fv: fv.window_s in sizes


def _is(kind: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, kind)
