"""The pipeline's join: TTL in event time, duplicates, orphans, late and reordered halves."""

from __future__ import annotations

from wearwatch.events import PassActual, PassOutcome, PassRequest, Setpoint, utc
from wearwatch.pipelines.mill.pipeline import MillPipeline, MillPipelineConfig

T0 = 1_767_225_600.0


def req(slab: str = "S1-000001", n: int = 1, t: float = 0.0, line: str = "structural"):
    return PassRequest(
        ts=utc(T0 + t),
        slab_id=slab,
        pass_no=n,
        line=line,
        width_mm=1500.0,
        h_in_mm=220.0,
        h_out_mm=170.0,
        temp_c=1150.0,
        speed_mps=2.0,
        roll_radius_mm=550.0,
        baseline_force_kn=22_000.0,
        rating_force_kn=45_000.0,
    )


def act(slab: str = "S1-000001", n: int = 1, t: float = 10.0, f: float = 22_100.0):
    return PassActual(ts=utc(T0 + t), slab_id=slab, pass_no=n, force_kn=f)


def pipe() -> MillPipeline:
    return MillPipeline(MillPipelineConfig(ttl_s=60.0, memory_s=600.0))


def kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


def test_request_then_actual_joins() -> None:
    p = pipe()
    assert kinds(p.on_event(req(), T0)) == ["Setpoint"]
    out = p.on_event(act(), T0 + 5)
    assert kinds(out) == ["PassOutcome"]
    o = out[0]
    assert isinstance(o, PassOutcome) and o.actual_force_kn == 22_100.0
    assert abs(o.physics_ape - 100 / 22_100 * 100) < 1e-9
    assert p.counters["joined"] == 1 and p.counters["orphans"] == 0


def test_reordered_actual_first_joins_on_request() -> None:
    p = pipe()
    assert p.on_event(act(), T0) == []
    out = p.on_event(req(), T0)
    assert kinds(out) == ["Setpoint", "PassOutcome"]
    assert p.counters["joined"] == 1


def test_duplicates_dropped_and_counted() -> None:
    p = pipe()
    p.on_event(req(), T0)
    assert p.on_event(req(), T0) == []
    p.on_event(act(), T0 + 5)
    assert p.on_event(act(), T0 + 6) == []
    assert p.counters["duplicates"] == 2 and p.counters["joined"] == 1


def test_missing_actual_purged_as_orphan_at_ttl() -> None:
    p = pipe()
    p.on_event(req(t=0.0), T0)
    p.on_watermark(T0 + 59.0)
    assert p.counters["orphans"] == 0 and len(p.pending_requests) == 1
    p.on_watermark(T0 + 61.0)
    assert p.counters["orphans"] == 1 and not p.pending_requests


def test_late_actual_after_ttl_is_an_orphan_not_a_join() -> None:
    p = pipe()
    p.on_event(req(t=0.0), T0)
    p.on_watermark(T0 + 100.0)
    assert p.on_event(act(t=10.0), T0 + 1000.0) == []
    assert p.counters == {
        "requests": 1,
        "actuals": 1,
        "joined": 0,
        "orphans": 2,
        "late": 1,
        "duplicates": 0,
    }


def test_actual_older_than_ttl_without_request_is_late() -> None:
    p = pipe()
    assert p.on_event(act(t=0.0), T0 + 500.0) == []
    assert p.counters["late"] == 1 and not p.pending_actuals


def test_lonely_actual_purged_and_its_late_request_still_gets_a_setpoint() -> None:
    p = pipe()
    p.on_event(act(t=0.0), T0)
    p.on_watermark(T0 + 100.0)
    assert p.counters["orphans"] == 1
    out = p.on_event(req(t=-5.0), T0 + 100.0)
    assert kinds(out) == ["Setpoint"] and isinstance(out[0], Setpoint)
    assert p.counters["late"] == 1 and p.counters["orphans"] == 2


def test_keys_are_slab_and_pass() -> None:
    p = pipe()
    p.on_event(req(n=1), T0)
    p.on_event(req(n=2, t=20), T0)
    assert p.on_event(act(n=2, t=25), T0) and p.on_event(act(n=1, t=12), T0)
    assert p.counters["joined"] == 2


def test_memory_of_seen_keys_is_bounded() -> None:
    p = pipe()
    for i in range(50):
        p.on_event(req(slab=f"S1-{i:06d}", t=i * 100.0), T0 + i * 100.0)
        p.on_event(act(slab=f"S1-{i:06d}", t=i * 100.0 + 5), T0 + i * 100.0)
        p.on_watermark(T0 + i * 100.0)
    assert len(p.seen_requests) <= 8 and p.counters["joined"] == 50
