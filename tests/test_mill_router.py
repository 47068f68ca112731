"""Shadow router: limits, rating, warm-up, trust deficit, hysteresis, reasons."""

from __future__ import annotations

import math

import pytest

from wearwatch.pipelines.mill.router import REASONS, LineTrust, RouterConfig, ShadowRouter

B, RATING = 20_000.0, 45_000.0


def warm(**kw: object) -> ShadowRouter:
    return ShadowRouter(RouterConfig(**{"warmup_passes": 0, **kw}))


def test_limits_clip_or_fall_back_with_reason() -> None:
    r = warm()
    a = LineTrust()
    d = r.decide(a, B, 1.30 * B, RATING)
    assert (d.source, d.reason, d.served_kn) == ("clipped", "limit_high", 1.25 * B)
    d = r.decide(a, B, 0.70 * B, RATING)
    assert (d.source, d.reason, d.served_kn) == ("clipped", "limit_low", 0.80 * B)
    phys = warm(on_limit="physics")
    d = phys.decide(a, B, 1.30 * B, RATING)
    assert (d.source, d.reason, d.served_kn) == ("physics", "limit_high", B)
    d = r.decide(a, B, 1.10 * B, RATING)
    assert (d.source, d.reason, d.served_kn) == ("model", "model", 1.10 * B)


def test_never_above_rating() -> None:
    r = warm()
    a = LineTrust()
    d = r.decide(a, 40_000.0, 47_000.0, RATING)
    assert d.served_kn == RATING and d.reason == "over_rating"
    d = r.decide(a, 50_000.0, 50_000.0, RATING)  # even the baseline exceeds the rating
    assert d.served_kn == RATING and d.reason == "over_rating"
    assert d.source == "clipped"
    # The reason the candidate was chosen for survives the clamp.
    cold = ShadowRouter(RouterConfig(warmup_passes=5))
    d = cold.decide(LineTrust(), 50_000.0, 41_000.0, RATING)
    assert (d.source, d.reason, d.served_kn) == ("clipped", "warmup+over_rating", RATING)


def test_no_model_value() -> None:
    r = warm()
    a = LineTrust()
    for bad in (None, math.nan, math.inf):
        d = r.decide(a, B, bad, RATING)
        assert (d.source, d.reason, d.served_kn) == ("physics", "no_model", B)


def test_warmup_per_line() -> None:
    r = ShadowRouter(RouterConfig(warmup_passes=3))
    a, b = LineTrust(), LineTrust()
    for _ in range(3):
        assert r.decide(a, B, 1.01 * B, RATING).reason == "warmup"
        r.observe(a, 1.01 * B, B, 1.01 * B)
    assert r.decide(a, B, 1.01 * B, RATING).reason == "model"
    assert r.decide(b, B, 1.01 * B, RATING).reason == "warmup"


def test_trust_deficit_benches_and_hysteresis_promotes() -> None:
    r = warm(promote_passes=5)
    a = LineTrust()
    actual = 1.0 * B
    # The model is 10 % off while physics is exact: EWMA deficit > 3 pp → benched.
    r.observe(a, actual, B, 1.10 * B)
    assert r.state(a) == "benched"
    d = r.decide(a, B, 1.0 * B, RATING)
    assert (d.source, d.reason) == ("physics", "trust_deficit")
    # Now the model is exact and physics 5 % off: EWMA of the model falls below physics...
    promoted_after = None
    for i in range(1, 30):
        r.observe(a, actual, 1.05 * B, 1.0 * B)
        if r.state(a) == "serving":
            promoted_after = i
            break
    # ...but it serves again only after 5 consecutive better passes (hysteresis).
    assert promoted_after is not None and promoted_after >= 5
    assert a.benchings == 1 and a.promotions == 1


def test_small_deficit_within_margin_does_not_bench() -> None:
    r = warm()
    a = LineTrust()
    for _ in range(50):
        r.observe(a, B, B, 1.02 * B)  # 2 pp worse than physics: inside the 3 pp margin
    assert r.state(a) == "serving"


def test_streak_resets_when_model_falls_behind() -> None:
    r = warm(promote_passes=3)
    a = LineTrust()
    r.observe(a, B, B, 1.2 * B)
    assert r.state(a) == "benched"
    for _ in range(40):
        r.observe(a, B, 1.05 * B, B)
        r.observe(a, B, 1.05 * B, 1.5 * B)  # alternately bad: never 3 in a row
    assert r.state(a) == "benched"


def test_reasons_are_known_and_config_validated() -> None:
    assert set(REASONS) >= {"model", "warmup", "trust_deficit", "limit_high", "limit_low"}
    with pytest.raises(ValueError, match="on_limit='drop'"):
        RouterConfig(on_limit="drop")
    with pytest.raises(ValueError, match="alpha=0"):
        RouterConfig(alpha=0)
