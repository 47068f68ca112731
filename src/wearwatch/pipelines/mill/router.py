"""Shadow-mode safety router: serve the model's force only while it is safe and trusted.

Stateless limits: the served force stays within ``[−lower, +upper]`` of the physics baseline
(−20 % / +25 % by default) and never above the stand's absolute rating (the rating wins when
the two conflict). Stateful trust per product line: EWMAs (α = 0.2) of the model's and the
baseline's APE; a model is benched when its EWMA exceeds the baseline's by more than
``bench_margin_pp`` percentage points, and promoted again only after ``promote_passes``
consecutive joined passes at least ``promote_margin_pp`` better than the baseline
(hysteresis). Before ``warmup_passes`` joined passes a line's model never serves.

Reasons: ``model`` (served the model), ``warmup``, ``trust_deficit``, ``limit_high``,
``limit_low`` (model outside the relative band), ``no_model`` (no finite model value),
``over_rating`` (the candidate exceeded the rating → clamped to the rating; appended to the
reason the candidate was chosen for, e.g. ``warmup+over_rating``). A model value
outside the band is clamped to the band's edge (source ``clipped``) by default — the trusted
model says "more than +25 %", so the edge is closer to the truth than the baseline — or,
with ``on_limit="physics"``, replaced by the baseline. Every source other than ``model`` is a
fallback and carries its reason.

The router is the policy; a line's trust (:class:`LineTrust`) is state the caller keeps per
product line (the mill pipeline keeps it in the line's keyed state) and hands in.

>>> r = ShadowRouter(RouterConfig(warmup_passes=0))
>>> structural = LineTrust()
>>> d = r.decide(structural, baseline_kn=20_000.0, model_kn=26_000.0, rating_kn=45_000.0)
>>> d.source, d.reason, d.served_kn
('clipped', 'limit_high', 25000.0)
>>> r.decide(structural, 20_000.0, 21_000.0, 45_000.0).reason
'model'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

REASONS = (
    "model",
    "warmup",
    "trust_deficit",
    "limit_high",
    "limit_low",
    "no_model",
    "over_rating",
)


@dataclass(frozen=True)
class RouterConfig:
    upper: float = 0.25
    lower: float = 0.20
    alpha: float = 0.2
    bench_margin_pp: float = 3.0
    warmup_passes: int = 30
    promote_passes: int = 20
    promote_margin_pp: float = 0.0
    on_limit: str = "clip"  # or "physics"

    def __post_init__(self) -> None:
        if self.on_limit not in ("clip", "physics"):
            raise ValueError(f"on_limit={self.on_limit!r}: expected 'clip' or 'physics'")
        if not (0.0 <= self.lower < 1.0 and self.upper >= 0.0):
            raise ValueError(f"lower={self.lower}, upper={self.upper}: expected 0 ≤ lower < 1")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha={self.alpha}: expected a value in (0, 1]")
        if self.warmup_passes < 0 or self.promote_passes < 1:
            raise ValueError(
                f"warmup_passes={self.warmup_passes}, promote_passes={self.promote_passes}: "
                "expected warmup ≥ 0 and promote ≥ 1"
            )


@dataclass(frozen=True)
class Decision:
    served_kn: float
    source: str  # "model", "clipped" or "physics"
    reason: str
    state: str  # the line's router state when deciding: warmup, serving, benched
    low_kn: float
    high_kn: float


@dataclass
class LineTrust:
    """One product line's trust in its model: joined passes, APE EWMAs, bench state."""

    joined: int = 0
    ewma_model: float | None = None
    ewma_baseline: float | None = None
    benched: bool = False
    streak: int = 0
    benchings: int = 0
    promotions: int = 0


@dataclass(frozen=True)
class ShadowRouter:
    """The routing policy; every call takes the line's :class:`LineTrust`."""

    config: RouterConfig = field(default_factory=RouterConfig)

    def state(self, trust: LineTrust) -> str:
        if trust.joined < self.config.warmup_passes:
            return "warmup"
        return "benched" if trust.benched else "serving"

    def limits(self, baseline_kn: float, rating_kn: float) -> tuple[float, float]:
        """The served value's band; if −lower is above the rating, the band is the rating."""
        high = min(baseline_kn * (1.0 + self.config.upper), rating_kn)
        low = min(baseline_kn * (1.0 - self.config.lower), high)
        return low, high

    def decide(
        self, trust: LineTrust, baseline_kn: float, model_kn: float | None, rating_kn: float
    ) -> Decision:
        cfg = self.config
        state = self.state(trust)
        low, high = self.limits(baseline_kn, rating_kn)
        value, source = baseline_kn, "physics"
        if state == "warmup":
            reason = "warmup"
        elif state == "benched":
            reason = "trust_deficit"
        elif model_kn is None or not math.isfinite(model_kn):
            reason = "no_model"
        elif model_kn > baseline_kn * (1.0 + cfg.upper):
            reason = "limit_high"
            if cfg.on_limit == "clip":
                value, source = baseline_kn * (1.0 + cfg.upper), "clipped"
        elif model_kn < baseline_kn * (1.0 - cfg.lower):
            reason = "limit_low"
            if cfg.on_limit == "clip":
                value, source = baseline_kn * (1.0 - cfg.lower), "clipped"
        else:
            value, source, reason = model_kn, "model", "model"
        if value > high:
            # The rating clamps whatever was chosen; keep the reason it was chosen for.
            value, source = high, "clipped"
            reason = "over_rating" if reason == "model" else f"{reason}+over_rating"
        # Every candidate is ≥ baseline·(1 − lower) ≥ low, so only the rating can bind.
        return Decision(value, source, reason, state, low, high)

    def observe(
        self, trust: LineTrust, actual_kn: float, baseline_kn: float, model_kn: float | None
    ) -> None:
        """Score a joined pass (the model in shadow, whatever was served) and update trust."""
        cfg = self.config
        trust.joined += 1
        ape_b = abs(baseline_kn - actual_kn) / abs(actual_kn) * 100.0
        ape_m = (
            abs(model_kn - actual_kn) / abs(actual_kn) * 100.0
            if model_kn is not None and math.isfinite(model_kn)
            else ape_b + 100.0
        )
        a = cfg.alpha
        trust.ewma_baseline = (
            ape_b if trust.ewma_baseline is None else a * ape_b + (1 - a) * trust.ewma_baseline
        )
        trust.ewma_model = (
            ape_m if trust.ewma_model is None else a * ape_m + (1 - a) * trust.ewma_model
        )
        if trust.joined < cfg.warmup_passes:
            return
        if not trust.benched:
            if trust.ewma_model > trust.ewma_baseline + cfg.bench_margin_pp:
                trust.benched = True
                trust.streak = 0
                trust.benchings += 1
        elif trust.ewma_model + cfg.promote_margin_pp <= trust.ewma_baseline:
            trust.streak += 1
            if trust.streak >= cfg.promote_passes:
                trust.benched = False
                trust.streak = 0
                trust.promotions += 1
        else:
            trust.streak = 0
