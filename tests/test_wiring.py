"""The app's wiring hands each setting to the argument that uses it, and nothing else does."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from wearwatch.bus.kafka import KafkaLog
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.config import Settings
from wearwatch.runtime.worker import WorkerOptions
from wearwatch.wiring import open_configured_log, worker_options


@pytest.fixture(autouse=True)
def _no_ambient_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the values a test passes: no WEARWATCH_* variables, no ./wearwatch.toml."""
    import os

    for name in list(os.environ):
        if name.startswith("WEARWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_worker_options_carry_each_worker_setting() -> None:
    settings = Settings(
        watermark_delay_s=2.5,
        checkpoint_interval_s=0.25,
        poll_max_records=77,
        max_event_bytes=1024,
        lease_s=3.0,
        max_outage_s=9.0,
        max_future_s=600.0,
        checkpoint_key="secret",
        checkpoint_unsigned=True,
    )
    expected = WorkerOptions(
        watermark_delay_s=2.5,
        checkpoint_interval_s=0.25,
        poll_max_records=77,
        max_event_bytes=1024,
        lease_s=3.0,
        max_outage_s=9.0,
        max_future_s=600.0,
        checkpoint_key="secret",
        unsigned_checkpoints=True,
    )
    assert worker_options(settings) == expected
    # Every field of Settings that WorkerOptions also has is carried (a new one cannot be
    # forgotten): with all defaults, the options equal the settings field by field.
    defaults = worker_options(Settings())
    shared = {f.name for f in dataclasses.fields(WorkerOptions)} & set(Settings.model_fields)
    assert shared == {
        "watermark_delay_s",
        "checkpoint_interval_s",
        "poll_max_records",
        "max_event_bytes",
        "max_future_s",
        "lease_s",
        "max_outage_s",
        "checkpoint_key",
    }
    assert {n: getattr(defaults, n) for n in shared} == {n: getattr(Settings(), n) for n in shared}


def test_overrides_win_over_settings() -> None:
    options = worker_options(
        Settings(lease_s=3.0, checkpoint_unsigned=True),
        lease_s=1.5,
        unsigned_checkpoints=False,
        exit_when_idle=True,
    )
    assert (options.lease_s, options.unsigned_checkpoints, options.exit_when_idle) == (
        1.5,
        False,
        True,
    )


def test_unknown_override_is_refused() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'leas_s'"):
        worker_options(Settings(), leas_s=1.0)


def _topic_row(path: Path, topic: str) -> tuple[int, float]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT partitions, retention_s FROM topics WHERE name=?", (topic,)
        ).fetchone()


def test_configured_embedded_log_creates_topics_as_configured(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", partitions=3, retention_s=0.0)
    log = open_configured_log(settings)  # no bus setting: <data_dir>/log.db
    assert isinstance(log, SqliteLog)
    assert log.path == tmp_path / "var" / "log.db"
    log.create_topic("readings")
    log.create_topic("narrow", 1)  # an explicit count still wins
    log.close()
    assert _topic_row(tmp_path / "var" / "log.db", "readings") == (3, 0.0)
    assert _topic_row(tmp_path / "var" / "log.db", "narrow") == (1, 0.0)


def test_explicit_url_wins_over_the_bus_setting(tmp_path: Path) -> None:
    settings = Settings(bus=f"sqlite:///{tmp_path / 'configured.db'}", retention_s=60.0)
    log = open_configured_log(settings, f"sqlite:///{tmp_path / 'flag.db'}")
    log.create_topic("t")
    log.close()
    assert not (tmp_path / "configured.db").exists()
    assert _topic_row(tmp_path / "flag.db", "t") == (4, 60.0)


@pytest.mark.parametrize("backend", [SqliteLog, KafkaLog])
def test_logs_refuse_a_bad_default_partition_count(tmp_path: Path, backend: type) -> None:
    url = str(tmp_path / "log.db") if backend is SqliteLog else "kafka://127.0.0.1:1"
    with pytest.raises(ValueError, match="default_partitions=0: must be at least 1"):
        backend(url, default_partitions=0)


def test_kafka_log_refuses_a_bad_retention() -> None:
    with pytest.raises(ValueError, match=r"kafka://127.0.0.1:1: retention_s=-1\.0"):
        KafkaLog("kafka://127.0.0.1:1", retention_s=-1.0)


@pytest.mark.kafka
def test_configured_kafka_log_creates_topics_as_configured(kafka_url: str) -> None:
    log = open_configured_log(Settings(bus=kafka_url, partitions=3, retention_s=0.0))
    assert isinstance(log, KafkaLog)
    try:
        log.create_topic("wiring-default-count")
        log.create_topic("wiring-explicit-count", 2)
        assert log.topics()["wiring-default-count"] == 3
        assert log.topics()["wiring-explicit-count"] == 2
    finally:
        log.close()
