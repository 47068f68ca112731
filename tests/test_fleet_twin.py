"""The fleet twin: deterministic however it is stepped, ISO 10816 conventions, symptoms in the
right order, sensor faults with their ground truth, failure → down → repair, preventive
maintenance, live commands, config errors and the calibrated failure count."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from wearwatch.bus.base import read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.cli import app
from wearwatch.columnar import Columns, decode_columns
from wearwatch.events import DeadLetter, MaintenanceEvent, Reading, TwinCommand, utc
from wearwatch.topics import DEAD_LETTERS, FLEET_CONTROL, MAINTENANCE, READINGS
from wearwatch.twin.fleet.config import (
    DEFAULT_PATH,
    ISO_10816_ZONES,
    FleetConfig,
    FleetConfigError,
    load_fleet_config,
    with_tick,
)
from wearwatch.twin.fleet.publish import publish_fleet, send_fleet_command
from wearwatch.twin.fleet.simulation import FleetTwin
from wearwatch.twin.synthetic import EPOCH_S

HOUR = 3600


def _config(
    onsets: float = 1.0,
    sensor_faults: float = 1.0,
    fault_hours: tuple[float, float] | None = None,
    **fleet: float,
) -> FleetConfig:
    """The default config with fault onset and sensor fault rates scaled (and sensor fault
    durations set), [fleet] changed."""
    cfg = load_fleet_config()
    modes = {
        name: msgspec.structs.replace(mode, onsets_per_year=mode.onsets_per_year * onsets)
        for name, mode in cfg.modes.items()
    }
    faults = {
        name: msgspec.structs.replace(
            f,
            per_machine_day=f.per_machine_day * sensor_faults,
            duration_h=fault_hours or f.duration_h,
        )
        for name, f in cfg.sensor_faults.items()
    }
    settings_ = msgspec.structs.replace(cfg.fleet, **fleet)
    return msgspec.structs.replace(cfg, modes=modes, sensor_faults=faults, fleet=settings_)


#: No random faults, no transit loss: what a test injects is all that happens.
QUIET = _config(onsets=0.0, sensor_faults=0.0, reading_loss=0.0)


def _inject(twin: FleetTwin, command: str, **args: object) -> list[MaintenanceEvent]:
    return twin.apply(TwinCommand(ts=utc(twin.now_s), command=command, args=args))


def _series(cols: Columns, machine: str, sensor: str) -> tuple[np.ndarray, np.ndarray]:
    """(seconds since the twin's start, value) of one machine's sensor."""
    machines, machine_names = cols.codes["machine_id"]
    sensors, sensor_names = cols.codes["sensor"]
    mask = (machines == machine_names.tolist().index(machine)) & (
        sensors == sensor_names.tolist().index(sensor)
    )
    return np.rint(cols.ts_us[mask] / 1e6 - EPOCH_S), cols.fields["value"][mask]


def _binned(t: np.ndarray, v: np.ndarray, width_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Means over consecutive bins of ``width_s``: (bin start, mean)."""
    bins = (t // width_s).astype(np.int64)
    starts, inverse = np.unique(bins, return_inverse=True)
    return starts * width_s, np.bincount(inverse, v) / np.bincount(inverse)


# --- determinism ------------------------------------------------------------------------------

#: Everything happens within half an hour: onsets, failures, repairs, preventive maintenance
#: (all compressed 30,000x), sensor faults, load changes.
BUSY = _config(
    sensor_faults=2000.0, fault_hours=(0.02, 0.1), compression=30_000.0, load_change_h=0.05
)


def _run(chunks: list[int]) -> tuple[Columns, list[MaintenanceEvent]]:
    twin = FleetTwin(BUSY, machines=6, seed=11)
    parts, events = [], []
    for n in chunks:
        cols, evs = twin.step(n)
        parts.append(cols)
        events += evs
    ts = np.concatenate([c.ts_us for c in parts])
    fields = {
        name: np.concatenate([c.fields[name] for c in parts])
        for name in ("machine_id", "sensor", "value", "unit")
    }
    return (ts, fields), events  # type: ignore[return-value]


_REFERENCE = _run([1800])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 700), min_size=1, max_size=12))
def test_same_seed_same_readings_and_events_however_step_is_chunked(cuts: list[int]) -> None:
    total = 1800
    chunks, left = [], total
    for n in cuts:
        n = min(n, left)
        chunks.append(n)
        left -= n
    chunks.append(left)
    (ts, fields), events = _run(chunks)
    (ref_ts, ref_fields), ref_events = _REFERENCE
    assert np.array_equal(ts, ref_ts)
    for name in ref_fields:
        assert np.array_equal(fields[name], ref_fields[name]), name
    assert events == ref_events


def test_the_busy_reference_run_really_has_events_and_is_in_event_time_order() -> None:
    (ts, fields), events = _REFERENCE
    kinds = {e.kind for e in events}
    assert kinds == {
        "fault_onset",
        "failure",
        "repair",
        "maintenance",
        "sensor_fault",
        "sensor_fault_end",
    }
    assert bool((np.diff(ts) >= 0).all())  # event-time order
    gaps = np.diff(np.sort(ts[(fields["machine_id"] == "pump-001") & (fields["sensor"] == "flow")]))
    assert gaps.min() != gaps.max()  # timestamps are irregular


def test_advance_gives_the_events_and_state_of_step() -> None:
    stepped, advanced = FleetTwin(BUSY, 6, seed=3), FleetTwin(BUSY, 6, seed=3)
    events = stepped.step(900)[1] + stepped.step(900)[1]
    assert advanced.advance(1200) + advanced.advance(600) == events
    assert (
        stepped.step(50)[0].fields["value"].tolist()
        == advanced.step(50)[0].fields["value"].tolist()
    )


def test_another_seed_gives_other_readings() -> None:
    a = FleetTwin(QUIET, 4, seed=1).step(10)[0].fields["value"]
    b = FleetTwin(QUIET, 4, seed=2).step(10)[0].fields["value"]
    assert len(a) == len(b) == 200 and not np.array_equal(a, b)


# --- ISO 10816 and healthy operation ----------------------------------------------------------


def test_iso_10816_zone_boundaries() -> None:
    assert ISO_10816_ZONES == {
        "I": (0.71, 1.8, 4.5),
        "II": (1.12, 2.8, 7.1),
        "III": (1.8, 4.5, 11.2),
        "IV": (2.8, 7.1, 18.0),
    }


def test_machines_are_numbered_round_robin_with_their_classes_limits() -> None:
    twin = FleetTwin(QUIET, machines=5, seed=1)
    assert twin.machine_ids == ["pump-001", "motor-002", "compressor-003", "fan-004", "pump-005"]
    limits = twin.hard_limits()
    assert [limits[m]["vibration"] for m in twin.machine_ids[:4]] == [
        (None, 7.1),
        (None, 4.5),
        (None, 11.2),
        (None, 18.0),
    ]
    assert limits["pump-001"]["bearing_temp"] == (None, 95.0)
    assert set(limits["motor-002"]) == {"vibration", "bearing_temp", "speed", "current"}


def test_healthy_vibration_sits_in_zone_a_b_of_each_class_and_bearings_run_50_to_85() -> None:
    cfg = _config(onsets=0.0, sensor_faults=0.0, load_change_h=0.25, reading_loss=0.0)
    twin = FleetTwin(cfg, machines=8, seed=5)
    cols, events = twin.step(6 * HOUR)
    assert {e.kind for e in events} <= {"maintenance"}  # no fault: at most preventive
    for machine in twin.machine_ids:
        iso = cfg.machine_types[machine.split("-")[0]].iso_class
        _, vibration = _series(cols, machine, "vibration")
        _, temp = _series(cols, machine, "bearing_temp")
        assert len(vibration) == 6 * HOUR
        assert vibration.max() < ISO_10816_ZONES[iso][1], machine  # below B/C: zone A or B
        assert temp.min() > 50.0 and temp.max() < 85.0, machine


def test_load_changes_move_speed_current_and_temperature_together() -> None:
    cfg = _config(onsets=0.0, sensor_faults=0.0, load_change_h=3.0)
    twin = FleetTwin(cfg, machines=1, seed=2)
    load, means = [], []
    for _ in range(48):  # 24 h in half hours: the true load, then each sensor's mean
        load.append(twin.state("pump-001").load)
        cols, _ = twin.step(HOUR // 2)
        sensors = ("speed", "current", "bearing_temp")
        means.append([_series(cols, "pump-001", s)[1].mean() for s in sensors])
    speed, current, temp = np.array(means).T
    assert len(set(load)) > 5
    assert np.corrcoef(load, speed)[0, 1] > 0.95 and np.corrcoef(load, current)[0, 1] > 0.95
    # The bearing follows, through its thermal lag (tau 20 min) and under the ambient cycle.
    assert np.corrcoef(load, temp)[0, 1] > 0.6


# --- degradation ------------------------------------------------------------------------------


def test_bearing_wear_shows_in_vibration_long_before_temperature_then_fails() -> None:
    twin = FleetTwin(QUIET, machines=1, seed=3)
    onset = _inject(twin, "inject_fault", machine="pump-001", mode="bearing_wear", pf_h=48)
    assert [(e.kind, e.mode) for e in onset] == [("fault_onset", "bearing_wear")]
    cols, events = twin.step(49 * HOUR)
    failure = [e for e in events if e.kind == "failure"]
    assert [(e.mode, e.ts) for e in failure] == [("bearing_wear", utc(EPOCH_S + 48 * HOUR))]
    t, vib = _binned(*_series(cols, "pump-001", "vibration"), 600)
    _, temp = _binned(*_series(cols, "pump-001", "bearing_temp"), 600)
    up = t < 48 * HOUR
    vib_cross = t[up & (vib > ISO_10816_ZONES["II"][1])][0]  # into zone C
    temp_cross = t[up & (temp > temp[:6].mean() + 10.0)][0]  # +10 °C over its baseline
    assert temp_cross - vib_cross > 12 * HOUR
    assert temp_cross > 0.8 * 48 * HOUR  # heat only near the end of life
    assert vib[up][-1] > ISO_10816_ZONES["II"][2]  # zone D at failure


def test_seal_leak_shows_in_pressure_and_flow() -> None:
    twin = FleetTwin(QUIET, machines=1, seed=4)
    _inject(twin, "inject_fault", machine="pump-001", mode="seal_leak", pf_h=24)
    cols, events = twin.step(24 * HOUR - 1)
    assert [e.kind for e in events] == ["fault_onset"]  # the injection's, nothing since
    _, pressure = _binned(*_series(cols, "pump-001", "pressure"), HOUR)
    _, flow = _binned(*_series(cols, "pump-001", "flow"), HOUR)
    _, vib = _binned(*_series(cols, "pump-001", "vibration"), HOUR)
    assert pressure[-1] < 0.7 * pressure[0] and flow[-1] < 0.75 * flow[0]
    assert vib[-1] < ISO_10816_ZONES["II"][2]  # no vibration alarm: the pressure tells


def test_failure_stops_the_machine_until_it_is_repaired() -> None:
    twin = FleetTwin(QUIET, machines=1, seed=6)
    _inject(twin, "inject_fault", machine="pump-001", mode="imbalance", pf_h=1)
    cols, events = twin.step(6 * HOUR)
    kinds = [(e.kind, e.mode) for e in events]
    assert kinds == [
        ("fault_onset", "imbalance"),
        ("failure", "imbalance"),
        ("repair", "imbalance"),
    ]
    failed_s, repaired_s = (e.ts.timestamp() - EPOCH_S for e in events[1:])
    assert failed_s == HOUR
    lo, hi = QUIET.repair_s
    assert lo <= repaired_s - failed_s <= hi + 1
    for sensor, stopped in (("speed", 0.0), ("current", 0.0), ("flow", 0.0), ("pressure", 0.0)):
        t, v = _series(cols, "pump-001", sensor)
        assert np.all(v[(t > failed_s + 0.5) & (t < repaired_s - 0.5)] == stopped), sensor
        assert (
            v[t > repaired_s + 0.5].min()
            > 0.5 * QUIET.machine_types["pump"].sensors[sensor].nominal
        )
    t, vib = _series(cols, "pump-001", "vibration")
    assert vib[(t > failed_s + 0.5) & (t < repaired_s - 0.5)].max() < 0.1
    t, temp = _series(cols, "pump-001", "bearing_temp")
    down = temp[(t > failed_s + 0.5) & (t < repaired_s - 0.5)]
    assert down[-1] < down[0] - 10.0  # cooling towards ambient
    assert twin.state("pump-001").running and twin.state("pump-001").mode == ""


def test_preventive_maintenance_clears_a_fault_in_progress() -> None:
    cfg = msgspec.structs.replace(
        QUIET, maintenance=msgspec.structs.replace(QUIET.maintenance, preventive_interval_days=30)
    )  # every day in simulated time, staggered
    twin = FleetTwin(cfg, machines=1, seed=1)
    _inject(twin, "inject_fault", machine="pump-001", mode="bearing_wear", pf_h=200)
    cols, events = twin.step(30 * HOUR)
    (pm,) = [e for e in events if e.kind == "maintenance"][:1]
    assert pm.mode == "bearing_wear" and "cleared bearing_wear" in pm.detail
    assert "failure" not in {e.kind for e in events}
    assert twin.state("pump-001").mode == ""
    t, vib = _series(cols, "pump-001", "vibration")
    pm_s = pm.ts.timestamp() - EPOCH_S
    before = vib[(t > pm_s - 600) & (t < pm_s - 1)].mean()
    after = vib[(t > pm_s + 1) & (t < pm_s + 600)].mean()
    assert after < before


# --- sensor faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stuck", "drift", "spikes", "dropout"])
def test_each_sensor_fault_has_its_signature_on_one_sensor_and_its_ground_truth(
    kind: str,
) -> None:
    twin = FleetTwin(QUIET, machines=1, seed=8)
    twin.step(HOUR)
    (start,) = _inject(
        twin, "inject_sensor_fault", machine="pump-001", sensor="pressure", kind=kind, duration_h=1
    )
    cols, events = twin.step(2 * HOUR)
    assert (start.kind, start.mode, start.sensor) == ("sensor_fault", kind, "pressure")
    assert [(e.kind, e.mode, e.sensor, e.ts) for e in events] == [
        ("sensor_fault", kind, "pressure", utc(EPOCH_S + HOUR)),
        ("sensor_fault_end", kind, "pressure", utc(EPOCH_S + 2 * HOUR)),
    ]
    t, v = _series(cols, "pump-001", "pressure")
    during, after = v[t < 2 * HOUR], v[t >= 2 * HOUR]  # tick 2 h: the fault has ended
    nominal = QUIET.machine_types["pump"].sensors["pressure"].nominal
    if kind == "stuck":
        assert len(set(during.tolist())) == 1 and len(set(after.tolist())) > 1000
    elif kind == "drift":
        offset = abs(during[-60:].mean() - after[:60].mean())
        assert 0.02 * nominal < offset < 0.06 * nominal  # 2-5 % of nominal per hour, 1 h
    elif kind == "spikes":
        spikes = during > 2.5 * nominal
        assert 0.01 < spikes.mean() < 0.06 and not (after > 2.5 * nominal).any()
    else:
        assert 0.05 * HOUR < len(during) < 0.15 * HOUR and len(after) == HOUR
    for other in ("vibration", "bearing_temp", "flow", "speed", "current"):
        assert len(_series(cols, "pump-001", other)[1]) == 2 * HOUR  # only one sensor


def test_sensor_faults_come_at_the_configured_rate() -> None:
    twin = FleetTwin(load_fleet_config(), machines=50, seed=1)
    events = twin.advance(30 * 86400)
    starts = [e for e in events if e.kind == "sensor_fault"]
    per_machine_day = len(starts) / (50 * 30)
    assert 0.03 <= per_machine_day <= 0.05
    assert {e.mode for e in starts} == {"stuck", "drift", "spikes", "dropout"}
    assert all(e.sensor for e in starts)


# --- the calibrated fleet ---------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "failures"), [(1, 81), (2, 84), (3, 90)])
def test_fifty_machines_for_thirty_days_see_50_to_100_failures(seed: int, failures: int) -> None:
    twin = FleetTwin(load_fleet_config(), machines=50, seed=seed)
    events = twin.advance(30 * 86400)
    failed = [e for e in events if e.kind == "failure"]
    assert len(failed) == failures  # pinned: the same seed, the same events
    assert 50 <= len(failed) <= 100
    assert {e.mode for e in failed} == set(load_fleet_config().modes)
    repairs = sum(e.kind == "repair" for e in events)
    assert repairs in (len(failed), len(failed) - 1, len(failed) - 2)  # the last may be pending


# --- live commands ----------------------------------------------------------------------------


def test_live_commands_on_the_control_topic_steer_a_paced_run(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    cfg = QUIET
    send_fleet_command(
        log, "inject_fault", {"machine": "motor-002", "mode": "misalignment", "pf_h": 0.01}, cfg
    )
    send_fleet_command(log, "inject_fault", {"machine": "motor-006", "mode": "imbalance"}, cfg)
    with pytest.raises(ValueError, match="machine='pump-002': unknown machine"):
        send_fleet_command(log, "repair", {"machine": "pump-002"}, cfg)
    with pytest.raises(ValueError, match="mode='seal_leak'"):
        send_fleet_command(log, "inject_fault", {"machine": "fan-004", "mode": "seal_leak"}, cfg)
    twin = FleetTwin(cfg, machines=4, seed=1)
    clock = iter(float(i) for i in range(10_000))
    stats = publish_fleet(
        log, twin, 120, speed=60.0, clock=lambda: next(clock), sleep=lambda s: None
    )
    assert (stats.commands, stats.rejected_commands) == (1, 1)  # motor-006: not in this fleet
    assert stats.ticks == 120 and stats.failures == 1
    assert [(e.asset_id, e.kind, e.mode) for e in _truth(log)] == [
        ("motor-002", "fault_onset", "misalignment"),
        ("motor-002", "failure", "misalignment"),
    ]
    (letter,) = [
        msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTERS.name)
    ]
    assert letter.source_topic == FLEET_CONTROL.name and "motor-006" in letter.reason
    readings = [decode_columns(r.value, Reading)[0] for r in read_all(log, READINGS.name)]
    assert sum(len(c) for c in readings) == stats.readings == 120 * twin.readings_per_tick
    send_fleet_command(log, "repair", {"machine": "motor-002"}, cfg)
    publish_fleet(log, twin, 10, speed=60.0, clock=lambda: next(clock), sleep=lambda s: None)
    assert [(e.kind, e.detail) for e in _truth(log)[2:]] == [("repair", "live repair")]
    log.close()


def _truth(log: SqliteLog) -> list[MaintenanceEvent]:
    return [
        e
        for r in read_all(log, MAINTENANCE.name)
        for e in msgspec.json.decode(r.value, type=list[MaintenanceEvent])
    ]


def test_repair_of_a_running_machine_clears_its_faults() -> None:
    twin = FleetTwin(QUIET, machines=2, seed=1)
    _inject(twin, "inject_fault", machine="motor-002", mode="bearing_wear")
    _inject(twin, "inject_sensor_fault", machine="motor-002", sensor="current", kind="stuck")
    events = _inject(twin, "repair", machine="motor-002")
    assert [(e.kind, e.mode) for e in events] == [
        ("sensor_fault_end", "stuck"),
        ("maintenance", "bearing_wear"),
    ]
    state = twin.state("motor-002")
    assert (state.mode, state.sensor_fault, state.running) == ("", "", True)


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("inject_fault", {"machine": "pump-009", "mode": "bearing_wear"}, "machine='pump-009'"),
        ("inject_fault", {"machine": "pump-001", "mode": "wear"}, "mode='wear'"),
        (
            "inject_sensor_fault",
            {"machine": "motor-002", "sensor": "flow", "kind": "stuck"},
            "sensor='flow'",
        ),
        (
            "inject_sensor_fault",
            {"machine": "pump-001", "sensor": "flow", "kind": "frozen"},
            "kind='frozen'",
        ),
        ("repair", {"machine": "pump-001", "when": "now"}, "'when' unknown"),
        ("explode", {"machine": "pump-001"}, "command='explode'"),
        ("inject_fault", {"machine": "pump-001", "mode": "seal_leak", "pf_h": -1}, "pf_h=-1"),
    ],
)
def test_bad_commands_are_refused_naming_what_is_wrong(
    command: str, args: dict[str, object], message: str
) -> None:
    twin = FleetTwin(QUIET, machines=4, seed=1)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        _inject(twin, command, **args)
    assert twin.step(1)[1] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inject-fault", "pump-002", "bearing_wear"], "machine number 2 is a motor"),
        (["inject-fault", "motor-002", "seal_leak"], "mode='seal_leak'"),
        (["inject-sensor-fault", "pump-001", "speed", "frozen"], "kind='frozen'"),
        (["repair", "boiler-001"], "machine='boiler-001'"),
    ],
)
def test_cli_refuses_unknown_machines_and_modes_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("WEARWATCH_BUS", f"sqlite:///{tmp_path / 'log.db'}")
    from wearwatch.config import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["twin", "fleet-command", *args])
    get_settings.cache_clear()
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


def test_cli_runs_the_fleet_onto_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEARWATCH_BUS", f"sqlite:///{tmp_path / 'log.db'}")
    from wearwatch.config import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(
        app, ["twin", "fleet", "--machines", "3", "--duration", "2m", "--tick", "2s"]
    )
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    log = SqliteLog(tmp_path / "log.db")
    rows = sum(len(decode_columns(r.value, Reading)[0]) for r in read_all(log, READINGS.name))
    log.close()
    reference = FleetTwin(with_tick(load_fleet_config(), 2.0), machines=3, seed=7)
    assert rows == len(reference.step(60)[0])  # 60 ticks of 2 s (the CLI's default seed)
    assert 0.99 * 60 * (6 + 4 + 6) < rows <= 60 * (6 + 4 + 6)  # every sensor, a few lost


# --- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('iso_class = "IV"', 'iso_class = "V"', "machine_types.fan.iso_class = 'V': expected one"),
        ("pf_days = [14.0, 60.0]", "pf_days = [60.0, 14.0]", "modes.seal_leak.pf_days = [60.0"),
        (
            "nominal = 22.0",
            "nominal = -22.0",
            "machine_types.motor.sensors.current.nominal = -22.0",
        ),
        ("tick_s = 1.0", 'tick_s = "fast"', "fleet.tick_s = 'fast': expected 'float'"),
        ("share = 0.1", "share = 0.1\ncolour = 3", "sensor_faults.dropout.colour: not a known key"),
        ("[sensors.flow]", "[sensors.fluxx]", "sensors.fluxx: unknown sensor"),
        ('"seal_leak", "imbalance"', '"seal_leek", "imbalance"', "'seal_leek' is not a mode"),
        ("jitter = 0.1 ", "jitter = 0.9 ", "fleet.jitter = 0.9: expected 'float' <= 0.45"),
    ],
)
def test_config_errors_name_the_file_the_key_path_and_the_value(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = DEFAULT_PATH.read_text()
    assert old in text
    path = tmp_path / "plant.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(FleetConfigError) as info:
        load_fleet_config(path)
    assert str(info.value).startswith("plant.toml: ") and message in str(info.value)


def test_a_missing_or_broken_config_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FleetConfigError, match="cannot read"):
        load_fleet_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[fleet\n")
    with pytest.raises(FleetConfigError, match=r"bad\.toml: not valid TOML"):
        load_fleet_config(tmp_path / "bad.toml")
