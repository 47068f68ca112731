"""Twins that resume: the fast-forward from a journal is bit-identical to an uninterrupted run,
journalled commands included."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from wearwatch.events import TwinCommand, utc
from wearwatch.twin.fleet.config import load_fleet_config, with_tick
from wearwatch.twin.fleet.simulation import FleetTwin
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig
from wearwatch.twin.resume import TwinJournal, resume_fleet, resume_mill

FAULT = TwinCommand(
    ts=utc(0), command="inject_fault", args={"machine": "motor-002", "mode": "bearing_wear"}
)
SENSOR = TwinCommand(
    ts=utc(0),
    command="inject_sensor_fault",
    args={"machine": "pump-001", "sensor": "bearing_temp", "kind": "stuck"},
)


def _fleet() -> FleetTwin:
    return FleetTwin(with_tick(load_fleet_config(), 30.0), machines=4, seed=11)


def _same_columns(a: object, b: object) -> None:
    assert len(a) == len(b)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.ts_us, b.ts_us)  # type: ignore[attr-defined]
    for name in ("machine_id", "sensor", "value"):
        np.testing.assert_array_equal(
            a.fields[name],  # type: ignore[attr-defined]
            b.fields[name],  # type: ignore[attr-defined]
        )


@pytest.mark.parametrize("pending", [False, True], ids=["published", "pending-at-stop"])
def test_fleet_resume_is_bit_identical(tmp_path: Path, pending: bool) -> None:
    """Reference: one twin steps 700 ticks, a fault injected at tick 300 and a sensor fault at
    tick 500 (or, `pending`, at the stop position itself: applied, not yet published). The
    interrupted run stops at tick 500; a fresh twin resumed from its journal then produces
    exactly the reference's remaining readings and ground truth."""
    reference = _fleet()
    reference.step(300)
    reference.apply(FAULT)
    reference.step(200)
    reference.apply(SENSOR)
    ref_cols, ref_events = reference.step(200)

    run = _fleet()
    journal = TwinJournal(tmp_path, {"twin": "fleet", "seed": 11})
    run.step(300)
    run.apply(FAULT)
    journal.record_command(run.tick, FAULT)
    run.step(200)
    if pending:
        run.apply(SENSOR)
        journal.record_command(run.tick, SENSOR)
    journal.record_position(run.tick, run.now_s)

    resumed = _fleet()
    skipped = resume_fleet(resumed, TwinJournal(tmp_path, {"twin": "fleet", "seed": 11}))
    assert skipped == 500
    if not pending:  # the sensor fault comes after the restart
        resumed.apply(SENSOR)
    cols, events = resumed.step(200)
    _same_columns(cols, ref_cols)
    assert events == ref_events
    assert any(e.kind == "sensor_fault" for e in events)  # the command's event goes out once
    assert resumed.state("motor-002") == reference.state("motor-002")


def _mill() -> MillTwin:
    cfg = MillTwinConfig(seed=5, loss_share=0.05, duplicate_share=0.05, late_share=0.02)
    return MillTwin(cfg)


SHOCK = TwinCommand(ts=utc(0), command="shock", args={"wear": 0.8})
GRADUAL = TwinCommand(ts=utc(0), command="gradual", args={"step": 0.01, "every_s": 60.0})


def test_mill_resume_is_bit_identical(tmp_path: Path) -> None:
    """The mill twin: commands applied after 400 and 900 events, stopped after 1000; the
    resumed twin's next 1500 events equal the uninterrupted run's, ids and values."""
    reference = _mill()
    events = reference.events()
    list(islice(events, 400))
    reference.apply(SHOCK)
    list(islice(events, 500))
    reference.apply(GRADUAL)
    list(islice(events, 100))
    expected = list(islice(events, 1500))

    journal = TwinJournal(tmp_path, {"twin": "mill", "seed": 5})
    journal.record_command(400, SHOCK)
    journal.record_command(900, GRADUAL)
    journal.record_position(1000, 0.0)

    resumed = _mill()
    assert resume_mill(resumed, TwinJournal(tmp_path, {"twin": "mill", "seed": 5})) == 1000
    got = list(islice(resumed.events(), 1500))
    assert got == expected
    assert resumed.wear == reference.wear


def test_journal_refuses_another_run_and_survives_a_torn_line(tmp_path: Path) -> None:
    journal = TwinJournal(tmp_path, {"twin": "fleet", "seed": 1, "machines": 4})
    journal.record_command(3, FAULT)
    with (tmp_path / "commands.jsonl").open("ab") as f:
        f.write(b'{"at": 9, "comm')  # a write cut short by a crash
    again = TwinJournal(tmp_path, {"twin": "fleet", "seed": 1, "machines": 4})
    assert [(e.at, e.command) for e in again.commands] == [(3, FAULT)]
    with pytest.raises(ValueError, match=r"machines=4, not machines=5"):
        TwinJournal(tmp_path, {"twin": "fleet", "seed": 1, "machines": 5})
    # A journal from before a setting existed (the mill's ``ideal``) names what it lacks.
    with pytest.raises(
        ValueError, match=r"holds a run of an older wearwatch \(no ideal\), not ideal=False"
    ):
        TwinJournal(tmp_path, {"twin": "fleet", "seed": 1, "machines": 4, "ideal": False})
