"""Live control of the mill twin through mill.control: commands change the plant, bad ones
are dead-lettered with their reason, and the CLI rejects bad values with one line."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.cli import app
from wearwatch.events import DeadLetter, MaintenanceEvent, TwinCommand, TwinTelemetry, encode, utc
from wearwatch.topics import DEAD_LETTERS, MILL_CONTROL, MILL_TWIN
from wearwatch.twin.mill.publish import publish, send_command
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig


def _truth(log: SqliteLog) -> list[MaintenanceEvent | TwinTelemetry]:
    return [
        e
        for r in read_all(log, MILL_TWIN.name)
        for e in msgspec.json.decode(r.value, type=list[MaintenanceEvent | TwinTelemetry])
    ]


def test_commands_on_the_control_topic_steer_a_running_twin(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    send_command(log, "shock", {"wear": 0.8})
    log.produce(
        [
            OutRecord(
                MILL_CONTROL.name,
                b"x",
                encode(
                    TwinCommand(ts=utc(0.0), command="gradual", args={"step": 0.1, "every_s": -5})
                ),
            )
        ]
    )
    twin = MillTwin(MillTwinConfig(seed=1, scenario="none", planned_passes=60))
    stats = publish(log, twin.events(max_passes=60), twin=twin, batch=5)
    assert stats.commands == 1 and stats.rejected_commands == 1
    truth = _truth(log)
    assert any(isinstance(e, MaintenanceEvent) and e.kind == "fault_onset" for e in truth)
    wear = [e.value for e in truth if isinstance(e, TwinTelemetry)]
    assert wear[0] == 0.0 and wear[-1] == pytest.approx(0.8)  # new rolls, then the shock
    (letter,) = [
        msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTERS.name)
    ]
    assert "every_s=-5" in letter.reason and letter.source_topic == MILL_CONTROL.name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gradual", "--step", "0.1", "--every", "0s"], "must be greater than zero"),
        (["gradual", "--step", "0.1", "--every", "-3m"], "--every"),
        (["set-wear", "7"], "wear=7.0"),
    ],
)
def test_cli_rejects_bad_commands_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("WEARWATCH_BUS", f"sqlite:///{tmp_path / 'log.db'}")
    from wearwatch.config import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["twin", "command", *args])
    get_settings.cache_clear()
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
