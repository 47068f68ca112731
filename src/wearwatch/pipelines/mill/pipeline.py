"""The mill pipeline core: join, online residual learning per product line, shadow router.

A plain, deterministic, picklable object; a stream runtime wraps it as a keyed operator
(key = slab_id; PassRequest and PassActual share one topic, so their order is the log's).

* ``on_event(PassRequest)``: standardise the physics features (Welford, statistics *before*
  the sample), predict the relative residual with every learner of the product line, route,
  emit a :class:`Setpoint`; buffer the request for the join (TTL in event time).
* ``on_event(PassActual)``: join on (slab_id, pass_no); on success score every learner and
  the router in shadow, learn (test-then-train), emit a :class:`PassOutcome` (and a
  :class:`DriftDetected` for each learner whose drift detector fired).
* ``on_watermark(wm)``: purge join halves whose ``ts + ttl_s < wm`` (counted as orphans).

Counters: ``requests``, ``actuals``, ``joined``, ``orphans`` (halves that never found a
partner: purged at TTL or arriving after their partner expired), ``late`` (the subset that
arrived after the partner's TTL), ``duplicates`` (a second copy of a request or actual).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from wearwatch.events import DriftDetected, Event, PassActual, PassOutcome, PassRequest, Setpoint
from wearwatch.learn.online import DEFAULT_LEARNER, PIPELINE_LEARNERS, Learner, make_learner
from wearwatch.learn.standardise import WelfordScaler
from wearwatch.physics.rolling import pass_features
from wearwatch.pipelines.mill.router import Decision, RouterConfig, ShadowRouter

Key = tuple[str, int]


@dataclass(frozen=True)
class MillPipelineConfig:
    ttl_s: float = 120.0
    #: How long (event time) joined / expired keys are remembered to spot duplicates and late
    #: halves.
    memory_s: float = 3600.0
    learners: tuple[str, ...] = PIPELINE_LEARNERS
    default_learner: str = DEFAULT_LEARNER
    router: RouterConfig = field(default_factory=RouterConfig)
    seed: int = 7

    def __post_init__(self) -> None:
        if not self.ttl_s > 0:
            raise ValueError(f"ttl_s={self.ttl_s}: expected > 0")
        if self.memory_s < self.ttl_s:
            raise ValueError(f"memory_s={self.memory_s}: expected ≥ ttl_s={self.ttl_s}")
        if self.default_learner not in self.learners:
            raise ValueError(
                f"default_learner={self.default_learner!r}: not in learners={self.learners!r}"
            )


@dataclass
class LineModels:
    """One product line's scaler and learner set."""

    scaler: WelfordScaler
    learners: dict[str, Learner]


@dataclass
class _Pending:
    request: PassRequest
    x: dict[str, float]
    residuals: dict[str, float]
    decision: Decision


class MillPipeline:
    """Join + learners per product line + :class:`ShadowRouter`; see the module docstring."""

    def __init__(self, config: MillPipelineConfig | None = None) -> None:
        self.config = config or MillPipelineConfig()
        self.router = ShadowRouter(self.config.router)
        self.lines: dict[str, LineModels] = {}
        self.pending_requests: dict[Key, _Pending] = {}
        self.pending_actuals: dict[Key, PassActual] = {}
        self.seen_requests: dict[Key, float] = {}
        self.seen_actuals: dict[Key, float] = {}
        self.counters: dict[str, int] = {
            "requests": 0,
            "actuals": 0,
            "joined": 0,
            "orphans": 0,
            "late": 0,
            "duplicates": 0,
        }
        self.decisions: dict[str, int] = {}
        self.purged_at = -math.inf

    # --- public API --------------------------------------------------------------------------

    def on_event(self, event: PassRequest | PassActual, watermark_s: float) -> list[Event]:
        if isinstance(event, PassRequest):
            return self._on_request(event)
        if isinstance(event, PassActual):
            return self._on_actual(event, watermark_s)
        raise TypeError(f"event type {type(event).__name__!r}: expected PassRequest or PassActual")

    def on_watermark(self, watermark_s: float) -> list[Event]:
        if watermark_s <= self.purged_at:
            return []  # nothing can have expired since the last purge
        self.purged_at = watermark_s
        ttl = self.config.ttl_s
        for key in [
            k for k, p in self.pending_requests.items() if _epoch(p.request) + ttl < watermark_s
        ]:
            del self.pending_requests[key]
            self.counters["orphans"] += 1
        for key in [k for k, a in self.pending_actuals.items() if _epoch(a) + ttl < watermark_s]:
            del self.pending_actuals[key]
            self.counters["orphans"] += 1
        horizon = watermark_s - self.config.memory_s
        for seen in (self.seen_requests, self.seen_actuals):
            if seen and next(iter(seen.values())) < horizon:
                for key in [k for k, ts in seen.items() if ts < horizon]:
                    del seen[key]
        return []

    def stats(self) -> dict[str, Any]:
        """Counters, decisions by reason, drift detections and router state per line."""
        drifts = {
            line: {name: int(getattr(m, "drifts", 0)) for name, m in models.learners.items()}
            for line, models in self.lines.items()
        }
        return {
            **self.counters,
            "pending_requests": len(self.pending_requests),
            "pending_actuals": len(self.pending_actuals),
            "decisions_by_reason": dict(sorted(self.decisions.items())),
            "drifts": drifts,
            "router": {line: self.router.state(line) for line in self.lines},
        }

    # --- internals ---------------------------------------------------------------------------

    def _models(self, line: str) -> LineModels:
        models = self.lines.get(line)
        if models is None:
            cfg = self.config
            models = self.lines[line] = LineModels(
                WelfordScaler(), {name: make_learner(name, cfg.seed) for name in cfg.learners}
            )
        return models

    def _on_request(self, req: PassRequest) -> list[Event]:
        key = (req.slab_id, req.pass_no)
        if key in self.seen_requests:
            self.counters["duplicates"] += 1
            return []
        self.counters["requests"] += 1
        self.seen_requests[key] = _epoch(req)
        models = self._models(req.line)
        x = models.scaler.transform_then_learn(request_features(req))
        residuals = {name: m.predict_one(x) for name, m in models.learners.items()}
        r_default = residuals[self.config.default_learner]
        model_kn = req.baseline_force_kn * (1.0 + r_default) if math.isfinite(r_default) else None
        decision = self.router.decide(
            req.line, req.baseline_force_kn, model_kn, req.rating_force_kn
        )
        self.decisions[decision.reason] = self.decisions.get(decision.reason, 0) + 1
        out: list[Event] = [
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
        ]
        pending = _Pending(req, x, residuals, decision)
        actual = self.pending_actuals.pop(key, None)
        if actual is not None:
            out.extend(self._join(pending, actual))
        elif key in self.seen_actuals:
            # Its measurement came first and expired: this request arrives too late to join.
            self.counters["late"] += 1
            self.counters["orphans"] += 1
        else:
            self.pending_requests[key] = pending
        return out

    def _on_actual(self, act: PassActual, watermark_s: float) -> list[Event]:
        key = (act.slab_id, act.pass_no)
        if key in self.seen_actuals:
            self.counters["duplicates"] += 1
            return []
        self.counters["actuals"] += 1
        self.seen_actuals[key] = _epoch(act)
        pending = self.pending_requests.pop(key, None)
        if pending is not None:
            return self._join(pending, act)
        if key in self.seen_requests or _epoch(act) + self.config.ttl_s < watermark_s:
            # The request expired (or the measurement is older than the TTL): too late.
            self.counters["late"] += 1
            self.counters["orphans"] += 1
            return []
        self.pending_actuals[key] = act
        return []

    def _join(self, pending: _Pending, act: PassActual) -> list[Event]:
        """Score, learn (test-then-train); a PassOutcome plus a DriftDetected per detector
        that fired while learning."""
        req = pending.request
        self.counters["joined"] += 1
        base = req.baseline_force_kn
        actual = act.force_kn
        y = (actual - base) / base
        models = self._models(req.line)
        model_ape: dict[str, float] = {}
        drifts: list[Event] = []
        for name, learner in models.learners.items():
            r = pending.residuals[name]
            pred = base * (1.0 + r)
            model_ape[name] = _ape(pred, actual) if math.isfinite(r) else 1e6
            before = getattr(learner, "drifts", 0)
            learner.learn_one(pending.x, y)
            after = getattr(learner, "drifts", 0)
            if after > before:
                drifts.append(
                    DriftDetected(ts=act.ts, line=req.line, learner=name, detections=after)
                )
        r_default = pending.residuals[self.config.default_learner]
        model_kn = base * (1.0 + r_default) if math.isfinite(r_default) else None
        self.router.observe(req.line, actual, base, model_kn)
        d = pending.decision
        outcome = PassOutcome(
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
            router_state=self.router.state(req.line),
        )
        return [outcome, *drifts]


def request_features(req: PassRequest) -> dict[str, float]:
    """The learners' raw inputs: physics features of what the request says (never wear)."""
    return pass_features(
        width_mm=req.width_mm,
        h_in_mm=req.h_in_mm,
        h_out_mm=req.h_out_mm,
        temp_c=req.temp_c,
        speed_mps=req.speed_mps,
        roll_radius_mm=req.roll_radius_mm,
        baseline_force_kn=req.baseline_force_kn,
    )


def _ape(pred: float, actual: float) -> float:
    return abs(pred - actual) / abs(actual) * 100.0


def _epoch(event: Event) -> float:
    return event.ts.timestamp()
