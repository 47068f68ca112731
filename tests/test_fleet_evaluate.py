"""Fleet evaluation: the alarm figures on hand-made cases, and a small twin + pipeline run that
is deterministic and whose figures agree with a brute-force recount."""

from __future__ import annotations

import math
import statistics

import pytest

from wearwatch.events import Alarm, MaintenanceEvent, utc
from wearwatch.pipelines.fleet.scoring import Interval, alarm_metrics, ground_truth

H = 3600.0
T0 = 1_767_225_600.0


def _m(t_h: float, machine: str, kind: str, mode: str = "", sensor: str = "") -> MaintenanceEvent:
    return MaintenanceEvent(
        ts=utc(T0 + t_h * H), asset_id=machine, kind=kind, mode=mode, sensor=sensor
    )  # type: ignore[arg-type]


def _a(
    t_h: float,
    machine: str,
    n: int,
    severity: str,
    status: str = "active",
    transition: str = "raised",
    kind: str = "machine",
) -> Alarm:
    return Alarm(
        ts=utc(T0 + t_h * H),
        alarm_id=f"{machine}/{kind}/{n}",
        machine_id=machine,
        alarm_type=kind,
        severity=severity,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        transition=transition,  # type: ignore[arg-type]
        raised_at=utc(T0 + t_h * H),
    )


TRUTH = [
    _m(10, "pump-001", "fault_onset", "bearing_wear"),
    _m(50, "pump-001", "failure", "bearing_wear"),
    _m(60, "pump-001", "repair"),
    _m(5, "fan-002", "fault_onset", "seal_leak"),
    _m(30, "fan-002", "failure", "seal_leak"),
    _m(40, "fan-002", "repair"),
    _m(20, "motor-003", "sensor_fault", "stuck", "bearing_temp"),
    _m(22, "motor-003", "sensor_fault_end", "stuck", "bearing_temp"),
    _m(70, "motor-003", "fault_onset", "imbalance"),
    _m(80, "motor-003", "maintenance"),
]


def test_ground_truth_intervals() -> None:
    truth = ground_truth(TRUTH, T0 + 100 * H)
    got = [(i.machine, (i.start - T0) / H, (i.end - T0) / H, i.kind, i.failure is not None)
           for i in truth]  # fmt: skip
    assert got == [
        ("fan-002", 5.0, 30.0, "fault", True),
        ("fan-002", 30.0, 40.0, "down", False),
        ("motor-003", 20.0, 22.0, "sensor", False),
        ("motor-003", 70.0, 80.0, "fault", False),
        ("pump-001", 10.0, 50.0, "fault", True),
        ("pump-001", 50.0, 60.0, "down", False),
    ]


def test_alarm_figures_on_a_hand_made_case() -> None:
    alarms = [
        # pump: watch at 20 h, medium at 30 h (lead 20 h), cleared after the repair.
        _a(20, "pump-001", 1, "watch"),
        _a(30, "pump-001", 1, "medium", transition="escalated"),
        _a(61, "pump-001", 1, "medium", "cleared", "cleared"),
        # fan: medium only 30 min before its failure (too late), raised before the onset?
        # no: at 29.5 h, inside the fault.
        _a(29.5, "fan-002", 1, "medium"),
        # motor: a sensor alarm during the stuck sensor (true), a machine alarm during it
        # (false), and a sensor alarm with no sensor fault (false).
        _a(20.5, "motor-003", 1, "watch", kind="sensor:bearing_temp"),
        _a(21.0, "motor-003", 1, "medium"),
        _a(90.0, "motor-003", 2, "watch", kind="sensor:vibration"),
        # A re-raise on the pump while it is healthy again: false.
        _a(65, "pump-001", 1, "medium", transition="reraised"),
    ]
    figures = alarm_metrics(alarms, ground_truth(TRUTH, T0 + 100 * H), 3, 100 / 24)
    assert figures["failures"] == 2
    assert figures["failures_alarmed_early"] == 1  # the fan's alarm came 30 min before
    assert figures["median_lead_time_h"] == statistics.median([20.0, 0.5])
    assert figures["false_alarms"] == 3
    assert figures["false_alarms_per_machine_day"] == round(3 / (3 * 100 / 24), 4)
    assert figures["sensor_faults"] == 1
    assert figures["sensor_faults_labelled_as_sensor"] == 1.0


def test_an_alarm_raised_before_the_onset_and_still_active_counts_for_the_fault() -> None:
    truth = [Interval("pump-001", T0 + 10 * H, T0 + 50 * H, "fault", "x", failure=T0 + 50 * H)]
    alarms = [_a(5, "pump-001", 1, "high")]
    figures = alarm_metrics(alarms, truth, 1, 3.0)
    assert figures["failures_alarmed_early"] == 1
    assert figures["median_lead_time_h"] == 40.0  # from the onset: the fault's own lead
    assert figures["false_alarms"] == 1  # raised while nothing was wrong
    assert math.isclose(figures["false_alarms_per_machine_day"], round(1 / 3, 4))


@pytest.mark.parametrize("severity", ["watch", "normal"])
def test_alarms_below_medium_do_not_count_as_early(severity: str) -> None:
    truth = [Interval("pump-001", T0, T0 + 50 * H, "fault", "x", failure=T0 + 50 * H)]
    figures = alarm_metrics([_a(5, "pump-001", 1, severity)], truth, 1, 3.0)
    assert figures["failures_alarmed_early"] == 0
    assert figures["median_lead_time_h"] is None


# -- a small run of the twin through the pipeline -------------------------------------------

_RANK = {"normal": 0, "watch": 1, "medium": 2, "high": 3, "critical": 4}


def _small_config():
    import msgspec

    from wearwatch.pipelines.fleet.evaluate import EvaluationConfig
    from wearwatch.twin.fleet.config import load_fleet_config

    base = load_fleet_config()
    # Faults 20x as frequent and 20x as fast as the shipped compression, sensor faults 10x:
    # 6 machines see failures within 3 days.
    fleet = msgspec.structs.replace(base.fleet, compression=base.fleet.compression * 20)
    sensor_faults = {
        name: msgspec.structs.replace(spec, per_machine_day=spec.per_machine_day * 10)
        for name, spec in base.sensor_faults.items()
    }
    config = msgspec.structs.replace(base, fleet=fleet, sensor_faults=sensor_faults)
    return EvaluationConfig(
        seed=3, machines=6, days=3.0, tick_s=60.0, windows_s=(600.0, 1800.0), fleet=config
    )


def _state_at(alarms: list[Alarm], t: float) -> dict[str, Alarm]:
    """Every alarm's last transition at or before ``t``."""
    last: dict[str, Alarm] = {}
    for a in alarms:
        if a.ts.timestamp() <= t:
            last[a.alarm_id] = a
    return last


def _active(alarms: list[Alarm], machine: str, t: float, sensor: bool, floor: int) -> bool:
    return any(
        a.machine_id == machine
        and a.alarm_type.startswith("sensor:") == sensor
        and a.status != "cleared"
        and _RANK[a.severity] >= floor
        for a in _state_at(alarms, t).values()
    )


def _brute_force(run, lead_s: float = H) -> dict:
    """The figures recounted on a 60 s grid, state by state, from the raw lists."""
    events = sorted(run.events, key=lambda e: e.ts)
    alarms = sorted(run.alarms, key=lambda a: a.ts)
    failures = early = 0
    for f in (e for e in events if e.kind == "failure"):
        tf = f.ts.timestamp()
        onset = max(
            e.ts.timestamp() for e in events
            if e.asset_id == f.asset_id and e.kind == "fault_onset" and e.ts <= f.ts
        )  # fmt: skip
        failures += 1
        t = onset
        while t < tf - lead_s:
            if _active(alarms, f.asset_id, t, sensor=False, floor=2):
                early += 1
                break
            t += 60.0
    false = 0
    for a in (a for a in alarms if a.transition in ("raised", "reraised")):
        fault = down = False
        sensors: set[str] = set()
        for e in events:
            if e.asset_id != a.machine_id or e.ts > a.ts:
                continue
            if e.kind == "fault_onset":
                fault = True
            elif e.kind == "failure":
                fault, down = False, True
            elif e.kind in ("repair", "maintenance"):
                fault = down = False
            elif e.kind == "sensor_fault":
                sensors.add(e.sensor)
            elif e.kind == "sensor_fault_end":
                sensors.discard(e.sensor)
        ok = fault or down or (a.alarm_type != "machine" and bool(sensors))
        # An interval's end instant still counts as inside it (closed intervals).
        ends = ("failure", "repair", "maintenance")
        if a.alarm_type != "machine":
            ends = (*ends, "sensor_fault_end")
        ok = ok or any(e.asset_id == a.machine_id and e.ts == a.ts and e.kind in ends
                       for e in events)  # fmt: skip
        false += not ok
    labelled = faults = 0
    starts = [e for e in events if e.kind == "sensor_fault"]
    for s in starts:
        end = next(
            (e.ts.timestamp() for e in events
             if e.kind == "sensor_fault_end" and e.asset_id == s.asset_id
             and e.sensor == s.sensor and e.ts >= s.ts),
            run.end_s,
        )  # fmt: skip
        faults += 1
        t = s.ts.timestamp()
        while t < end:
            if _active(alarms, s.asset_id, t, sensor=True, floor=1):
                labelled += 1
                break
            t += 60.0
    return {"failures": failures, "early": early, "false": false, "sensor": (labelled, faults)}


@pytest.mark.slow
def test_a_small_run_is_deterministic_and_its_figures_match_a_brute_force_recount() -> None:
    from wearwatch.pipelines.fleet.evaluate import figures, run_evaluation, train_on_twin

    cfg = _small_config()
    trained = train_on_twin(cfg)
    run = run_evaluation(cfg, trained)
    again = run_evaluation(cfg, train_on_twin(cfg))
    assert again.alarms == run.alarms
    assert again.health == run.health
    assert again.events == run.events
    got = figures(cfg, run)
    assert got == figures(cfg, again)
    want = _brute_force(run)
    assert want["failures"] >= 3 and run.alarms
    assert got["failures"] == want["failures"]
    assert got["failures_alarmed_early"] == want["early"]
    assert got["false_alarms"] == want["false"]
    labelled, faults = want["sensor"]
    assert got["sensor_faults"] == faults
    if faults:
        assert got["sensor_faults_labelled_as_sensor"] == round(labelled / faults, 4)
    assert got["train_seed"] == cfg.seed + 1000


def test_a_fault_shorter_than_the_lead_cannot_be_alarmed_early() -> None:
    """Found by the brute-force recount: an alarm already active at a 40-minute fault's onset
    is not an alarm 1 h before its failure."""
    truth = [
        Interval("pump-001", T0 + 10 * H, T0 + 10.67 * H, "fault", "x", failure=T0 + 10.67 * H)
    ]
    figures = alarm_metrics([_a(9, "pump-001", 1, "high")], truth, 1, 1.0)
    assert figures["failures_alarmed_early"] == 0
    assert figures["median_lead_time_h"] == 0.67
