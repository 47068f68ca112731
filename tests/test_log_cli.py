"""``wearwatch log``: topics, tail and dead letters show what is in the log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wearwatch.bus.base import OutRecord
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.cli import app
from wearwatch.config import get_settings
from wearwatch.events import Reading, encode, utc
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.worker import Worker, WorkerOptions


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    monkeypatch.setenv("WEARWATCH_BUS", url)
    monkeypatch.setenv("COLUMNS", "250")  # Rich tables: no wrapping
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_log_commands_show_records_and_dead_letters(bus: str) -> None:
    log = SqliteLog(bus.removeprefix("sqlite:///"))
    log.create_topic(READINGS_TOPIC, 2)
    good = [
        Reading(ts=utc(float(i)), machine_id="p1", sensor="vib", value=float(i)) for i in range(5)
    ]
    log.produce(
        [
            OutRecord(READINGS_TOPIC, b"p1", encode(good)),
            OutRecord(READINGS_TOPIC, b"p1", b'{"type":"reading","oops":1}'),
        ]
    )
    Worker(
        log,
        ReadingTotalsOperator(ttl_s=1.0),
        "t",
        WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0),
    ).run(install_signals=False)
    runner = CliRunner()

    topics = runner.invoke(app, ["log", "topics"])
    assert topics.exit_code == 0
    assert READINGS_TOPIC in topics.output and "dead_letters" in topics.output

    tail = runner.invoke(app, ["log", "tail", READINGS_TOPIC, "-n", "1"])
    assert tail.exit_code == 0
    (line,) = tail.output.strip().splitlines()
    assert json.loads(line)["value"] == {"type": "reading", "oops": 1}

    letters = runner.invoke(app, ["log", "dead-letters"])
    assert letters.exit_code == 0
    assert "not in the contract" in letters.output and "oops" in letters.output

    missing = runner.invoke(app, ["log", "tail", "nope"])
    assert missing.exit_code == 2 and "topic 'nope' does not exist" in missing.output
