"""Per product line: serve at the request, learn at the joined outcome (test-then-train).

A ``process`` step keyed by product line. Its typed state, :class:`LineState`, is the line's
scaler, learner set and router trust, plus the predictions of requests still waiting for
their measurement.

* :class:`~wearwatch.events.PassRequest`: standardise the physics features (Welford,
  statistics *before* the sample), predict the relative residual with every learner, route,
  emit a :class:`~wearwatch.events.Setpoint`; keep the prediction for the join.
* :class:`~wearwatch.events.JoinedPass`: score every learner and the router in shadow with the
  prediction made at the request, learn, emit a :class:`~wearwatch.events.PassOutcome` (and a
  :class:`~wearwatch.events.DriftDetected` per learner whose drift detector fired; counted
  as ``drifts``).

A prediction whose request never joins is dropped when the watermark reaches the request's
``ts + ttl_s``. No joined pass can come for it after that: the join upstream joins a request
either in the very input event that brought it (its measurement was waiting), or while the
request waits, i.e. before the join's watermark reaches ``ts + ttl_s`` — and this stage's
watermark is the join's, carried on every record of the repartition topic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from wearwatch.events import (
    DriftDetected,
    JoinedPass,
    PassOutcome,
    PassRequest,
    Setpoint,
)
from wearwatch.learn.online import Learner, make_learner
from wearwatch.learn.standardise import WelfordScaler
from wearwatch.pipelines.mill.pipeline import MillPipelineConfig, request_features
from wearwatch.pipelines.mill.router import Decision, LineTrust, ShadowRouter

PassKey = tuple[str, int]


@dataclass
class Prediction:
    """What was predicted and served for a request, kept until its measurement joins."""

    request_s: float
    x: dict[str, float]
    residuals: dict[str, float]
    decision: Decision


@dataclass
class LineState:
    """One product line: scaler, learners, router trust, predictions awaiting a join."""

    scaler: WelfordScaler
    learners: dict[str, Learner]
    trust: LineTrust = field(default_factory=LineTrust)
    pending: dict[PassKey, Prediction] = field(default_factory=dict)


class ServeAndLearn:
    """Predict, route and serve at the request; learn at the join. See the module docstring.

    A ``process`` step: ``init() -> LineState``, ``on_event(event, state, ctx)``,
    ``on_timer(when, state, ctx)``.
    """

    def __init__(self, config: MillPipelineConfig) -> None:
        self.config = config
        self.router = ShadowRouter(config.router)

    def init(self) -> LineState:
        cfg = self.config
        return LineState(
            WelfordScaler(), {name: make_learner(name, cfg.seed) for name in cfg.learners}
        )

    def on_event(self, event: PassRequest | JoinedPass, state: LineState, ctx: Any) -> None:
        if isinstance(event, PassRequest):
            self._serve(event, state, ctx)
        elif isinstance(event, JoinedPass):
            self._learn(event, state, ctx)
        else:
            raise TypeError(
                f"event type {type(event).__name__!r}: expected PassRequest or JoinedPass"
            )

    def on_timer(self, when: float, state: LineState, ctx: Any) -> None:
        watermark, ttl = ctx.watermark, self.config.ttl_s
        for key in [k for k, p in state.pending.items() if p.request_s + ttl <= watermark]:
            del state.pending[key]
        self._arm(state, ctx)

    def _arm(self, state: LineState, ctx: Any) -> None:
        if state.pending:
            oldest = min(p.request_s for p in state.pending.values())
            ctx.set_timer(oldest + self.config.ttl_s)

    def _serve(self, req: PassRequest, state: LineState, ctx: Any) -> None:
        x = state.scaler.transform_then_learn(request_features(req))
        residuals = {name: m.predict_one(x) for name, m in state.learners.items()}
        model_kn = _model_kn(req.baseline_force_kn, residuals[self.config.default_learner])
        decision = self.router.decide(
            state.trust, req.baseline_force_kn, model_kn, req.rating_force_kn
        )
        ctx.emit(
            Setpoint(
                ts=req.ts,
                slab_id=req.slab_id,
                pass_no=req.pass_no,
                line=req.line,
                served_force_kn=decision.served_kn,
                source=decision.source,
                reason=decision.reason,
                baseline_force_kn=req.baseline_force_kn,
                model_force_kn=model_kn,
            )
        )
        first = not state.pending
        state.pending[(req.slab_id, req.pass_no)] = Prediction(
            req.ts.timestamp(), x, residuals, decision
        )
        if first:
            self._arm(state, ctx)

    def _learn(self, joined: JoinedPass, state: LineState, ctx: Any) -> None:
        req, act = joined.request, joined.actual
        prediction = state.pending.pop((req.slab_id, req.pass_no), None)
        if prediction is None:
            raise LookupError(
                f"joined pass {req.slab_id}/{req.pass_no}: no prediction for its request "
                "(the request never reached this stage, or expired here first)"
            )
        base = req.baseline_force_kn
        actual = act.force_kn
        y = (actual - base) / base
        model_ape: dict[str, float] = {}
        drifts: list[DriftDetected] = []
        for name, learner in state.learners.items():
            r = prediction.residuals[name]
            model_ape[name] = _ape(base * (1.0 + r), actual) if math.isfinite(r) else 1e6
            before = getattr(learner, "drifts", 0)
            learner.learn_one(prediction.x, y)
            after = getattr(learner, "drifts", 0)
            if after > before:
                drifts.append(
                    DriftDetected(ts=act.ts, line=req.line, learner=name, detections=after)
                )
        model_kn = _model_kn(base, prediction.residuals[self.config.default_learner])
        self.router.observe(state.trust, actual, base, model_kn)
        d = prediction.decision
        ctx.emit(
            PassOutcome(
                ts=act.ts,
                slab_id=req.slab_id,
                pass_no=req.pass_no,
                line=req.line,
                actual_force_kn=actual,
                baseline_force_kn=base,
                served_force_kn=d.served_kn,
                source=d.source,
                physics_ape=_ape(base, actual),
                served_ape=_ape(d.served_kn, actual),
                model_ape=model_ape,
                router_state=self.router.state(state.trust),
            )
        )
        for drift in drifts:
            ctx.emit(drift)
            ctx.count("drifts")


def _model_kn(baseline_kn: float, residual: float) -> float | None:
    return baseline_kn * (1.0 + residual) if math.isfinite(residual) else None


def _ape(pred: float, actual: float) -> float:
    return abs(pred - actual) / abs(actual) * 100.0
