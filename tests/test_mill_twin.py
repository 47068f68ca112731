"""Mill twin: determinism, event order, scenarios, live commands and their validation."""

from __future__ import annotations

from datetime import UTC

import pytest

from wearwatch.events import (
    MaintenanceEvent,
    PassActual,
    PassRequest,
    TwinCommand,
    TwinTelemetry,
    encode,
    utc,
)
from wearwatch.twin.mill.scenarios import make_scenario
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig, paced


def run(**kw: object) -> list:
    cfg = MillTwinConfig(**{"seed": 11, "scenario": "abrupt", "planned_passes": 300, **kw})
    return list(MillTwin(cfg).events(max_passes=300))


def test_same_seed_same_events_bit_for_bit() -> None:
    kw = dict(loss_share=0.05, duplicate_share=0.05, late_share=0.02)
    a = [encode(e) for e in run(**kw)]
    b = [encode(e) for e in run(**kw)]
    assert a == b
    assert a != [encode(e) for e in run(seed=12, **kw)]


def test_ids_derive_from_seed_and_requests_precede_actuals() -> None:
    events = run()
    requests = [e for e in events if isinstance(e, PassRequest)]
    assert len(requests) == 300
    assert requests[0].slab_id == "S11-000001"
    assert all(e.ts.tzinfo is not None and e.ts.utcoffset() == UTC.utcoffset(None) for e in events)
    seen: set[tuple[str, int]] = set()
    for e in events:
        if isinstance(e, PassRequest):
            seen.add((e.slab_id, e.pass_no))
            assert 5_000 < e.baseline_force_kn < e.rating_force_kn
            assert 900 <= e.width_mm <= 2000 and 0.09 < 1 - e.h_out_mm / e.h_in_mm <= 0.35
        elif isinstance(e, PassActual):
            assert (e.slab_id, e.pass_no) in seen


def test_stand_is_not_overloaded() -> None:
    twin = MillTwin(MillTwinConfig(seed=1, planned_passes=600))
    events = list(twin.events(max_passes=600))
    req = [e for e in events if isinstance(e, PassRequest)]
    slabs = {e.slab_id for e in req}
    # Passes of consecutive slabs never interleave (one stand) and the queue does not grow.
    order = [e.slab_id for e in req]
    assert len(slabs) == len({s for i, s in enumerate(order) if i == 0 or order[i - 1] != s})
    span_h = (req[-1].ts - req[0].ts).total_seconds() / 3600
    assert len(slabs) / span_h < 3600 / 150 * 1.3


def test_shares_of_loss_duplicates_and_late() -> None:
    events = run(loss_share=0.1, duplicate_share=0.1, late_share=0.1, late_delay_s=900)
    actuals = [e for e in events if isinstance(e, PassActual)]
    keys = [(a.slab_id, a.pass_no) for a in actuals]
    assert 300 * 0.8 < len(set(keys)) < 300 * 0.97  # ~10 % lost
    assert 10 < len(keys) - len(set(keys)) < 60  # ~10 % duplicated
    max_ts = 0.0
    late = 0
    for e in events:
        max_ts = max(max_ts, e.ts.timestamp())
        if isinstance(e, PassActual) and max_ts - e.ts.timestamp() > 600:
            late += 1
    assert late > 10


def test_scenario_wear_goes_to_telemetry_only() -> None:
    events = run()
    wear = [e.value for e in events if isinstance(e, TwinTelemetry)]
    assert wear[0] == 0.0 and wear[-1] == 0.9
    assert [e.kind for e in events if isinstance(e, MaintenanceEvent)] == ["fault_onset"]
    assert "wear" not in PassRequest.__struct_fields__


def test_gradual_scenario_has_maintenance_recovery() -> None:
    s = make_scenario("gradual", 900)
    assert s.wear_at(299) > 0.5 and s.wear_at(300) < 0.05
    assert [seg.onset for seg in s.segments] == ["", "maintenance", "maintenance"]


def test_live_commands() -> None:
    twin = MillTwin(MillTwinConfig(seed=2, scenario="none", planned_passes=100))
    it = twin.events(max_passes=100)
    for _ in range(10):
        next(it)
    twin.apply(TwinCommand(ts=utc(0), command="shock", args={"wear": 0.8}))
    assert twin.wear == 0.8
    out = twin.apply(TwinCommand(ts=utc(0), command="maintenance"))
    assert twin.wear == 0.0 and out[-1].kind == "maintenance"
    twin.apply(TwinCommand(ts=utc(0), command="gradual", args={"step": 0.01, "every_s": 60}))
    list(it)
    assert twin.wear > 0.1  # grew during the remaining ~2 h of virtual time
    twin2 = MillTwin(MillTwinConfig(seed=2, scenario="abrupt", planned_passes=100))
    twin2.apply(TwinCommand(ts=utc(0), command="set_wear", args={"wear": 0.3}))
    list(twin2.events(max_passes=100))
    assert twin2.wear == 0.3  # live command took over from the script


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("gradual", {"step": 0.01, "every_s": 0}, "every_s=0"),
        ("gradual", {"step": 0.01, "every_s": -5}, "every_s=-5"),
        ("gradual", {"step": 0.01}, "missing argument 'every_s'"),
        ("set_wear", {"wear": "high"}, "wear='high'"),
        ("set_wear", {"wear": 7}, "wear=7"),
        ("explode", {}, "command='explode'"),
    ],
)
def test_bad_commands_are_rejected(command: str, args: dict, message: str) -> None:
    twin = MillTwin(MillTwinConfig(seed=2))
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        twin.apply(TwinCommand(ts=utc(0), command=command, args=args))


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"loss_share=1\.5"):
        MillTwinConfig(loss_share=1.5)
    with pytest.raises(ValueError, match="scenario='sudden'"):
        MillTwin(MillTwinConfig(scenario="sudden"))


def test_paced_sleeps_virtual_time_over_speed() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    twin = MillTwin(MillTwinConfig(seed=3, planned_passes=50))
    events = list(paced(twin, 60.0, until_s=600, clock=lambda: clock[0], sleep=sleep))
    assert events and 9.0 < clock[0] <= 10.0 + 1e-9
    with pytest.raises(ValueError, match="speed=0"):
        list(paced(twin, 0))


def test_cli_twin_mill(tmp_path) -> None:
    from typer.testing import CliRunner

    from wearwatch.cli import app

    out = tmp_path / "ev.jsonl"
    runner = CliRunner()
    res = runner.invoke(
        app, ["twin", "mill", "--scenario", "abrupt", "--duration", "10m", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert out.read_text().count("pass_request") > 10
    res = runner.invoke(app, ["twin", "mill", "--duration", "10 parsecs"])
    assert res.exit_code == 2 and "--duration" in res.output
