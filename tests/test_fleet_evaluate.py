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
