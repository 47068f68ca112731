"""Settings are finite and bounded (issue 7, item 9); retention 0 keeps records forever.

Every float setting is found from the model itself, so a duration added later is covered too.
"""

from __future__ import annotations

import math
import sqlite3
import typing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from wearwatch.bus.base import OutRecord, check_retention_s, read_all, retention_ms
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.cli.errors import describe
from wearwatch.config import MAX_DURATION_S, Settings

FLOAT_SETTINGS = sorted(
    name
    for name, hint in typing.get_type_hints(Settings, include_extras=False).items()
    if hint is float and name in Settings.model_fields
)
NOT_FINITE = ["inf", "-inf", "nan", "Infinity", "1e309"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEARWATCH_CONFIG", raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no ./wearwatch.toml here


def test_the_float_settings_are_found() -> None:
    # Guards the discovery below: it must see at least the durations known today.
    assert {"retention_s", "watermark_delay_s", "checkpoint_interval_s"} <= set(FLOAT_SETTINGS)


@pytest.mark.parametrize("name", FLOAT_SETTINGS)
@pytest.mark.parametrize("raw", [*NOT_FINITE, "1e300", "-1"])
def test_every_float_setting_refuses_non_finite_huge_and_negative_values(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    env = f"WEARWATCH_{name.upper()}"
    monkeypatch.setenv(env, raw)
    with pytest.raises(ValidationError) as info:
        Settings()
    line = describe(info.value)
    assert line.startswith(f"config {name}={raw!r} ({env}): "), line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("name", "zero_ok"),
    [("retention_s", True), ("watermark_delay_s", True), ("checkpoint_interval_s", False)],
)
def test_zero_is_accepted_only_where_it_means_something(
    monkeypatch: pytest.MonkeyPatch, name: str, zero_ok: bool
) -> None:
    monkeypatch.setenv(f"WEARWATCH_{name.upper()}", "0")
    if zero_ok:
        assert getattr(Settings(), name) == 0.0
    else:
        with pytest.raises(ValidationError, match="greater than 0"):
            Settings()


def test_the_longest_duration_is_accepted_and_one_more_second_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEARWATCH_RETENTION_S", repr(MAX_DURATION_S))
    assert Settings().retention_s == MAX_DURATION_S
    monkeypatch.setenv("WEARWATCH_RETENTION_S", repr(MAX_DURATION_S + 1))
    with pytest.raises(ValidationError, match="less than or equal to 31557600000"):
        Settings()


def test_poll_max_records_is_bounded_before_it_reaches_sqlite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEARWATCH_POLL_MAX_RECORDS", "9223372036854775808")
    with pytest.raises(ValidationError, match="less than or equal to 1000000"):
        Settings()


@given(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, MAX_DURATION_S]))
def test_settings_and_the_log_agree_on_what_a_retention_is(value: float) -> None:
    try:
        check_retention_s(value)
        log_ok = True
    except ValueError:
        log_ok = False
    try:
        Settings(retention_s=value)
        settings_ok = True
    except ValidationError:
        settings_ok = False
    assert settings_ok == log_ok
    assert log_ok == (value == 0 or 0 < value <= MAX_DURATION_S)


def test_retention_ms_is_kafkas_minus_one_for_forever() -> None:
    assert retention_ms(0.0) == -1
    assert retention_ms(7 * 24 * 3600.0) == 604_800_000
    assert retention_ms(0.0001) == 1  # a positive retention never becomes 0 ms (delete now)
    assert retention_ms(MAX_DURATION_S) == 31_557_600_000_000
    for bad in (math.inf, math.nan, 1e300, -1.0):
        with pytest.raises(ValueError, match="retention_s="):
            retention_ms(bad)


def _log_with_records(path: Path, retention_s: float) -> SqliteLog:
    log = SqliteLog(path, retention_s=retention_s)
    log.create_topic("t", 2)
    log.produce(OutRecord("t", f"k{i}".encode(), b"v%d" % i) for i in range(50))
    return log


def test_retention_zero_keeps_records_forever(tmp_path: Path) -> None:
    forever = _log_with_records(tmp_path / "forever.db", retention_s=0.0)
    year_9000_s = 221_845_392_000.0
    assert forever.apply_retention(now_s=year_9000_s) == 0
    assert len(read_all(forever, "t")) == 50
    assert forever.low_offsets("t") == {0: 0, 1: 0}
    # The same records under a one-second retention are all gone by then: the call above
    # really had something to delete.
    short = _log_with_records(tmp_path / "short.db", retention_s=1.0)
    assert short.apply_retention(now_s=year_9000_s) == 50
    assert read_all(short, "t") == []


@pytest.mark.parametrize("stored", [math.inf, 1e300, 1e17, -5.0])
def test_a_retention_stored_by_an_older_version_never_crashes_a_retention_pass(
    tmp_path: Path, stored: float
) -> None:
    # Before issue 7, WEARWATCH_RETENTION_S=1e300 was accepted and stored per topic; the
    # first retention pass then died in int(retention_s * 1000) (OverflowError).
    log = _log_with_records(tmp_path / "log.db", retention_s=60.0)
    log.conn.execute("UPDATE topics SET retention_s=?", (stored,))
    assert log.apply_retention(now_s=2_000_000_000.0) == 0
    assert len(read_all(log, "t")) == 50


@pytest.mark.parametrize("bad", [math.inf, math.nan, 1e300, -1.0])
def test_the_embedded_log_refuses_a_bad_retention_naming_it(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match=r"retention_s=(inf|nan|1e\+300|-1\.0): expected 0"):
        SqliteLog(tmp_path / "log.db", retention_s=bad)
    assert not (tmp_path / "log.db").exists()


def test_reads_with_huge_ints_return_instead_of_overflowing_sqlite(tmp_path: Path) -> None:
    log = _log_with_records(tmp_path / "log.db", retention_s=60.0)
    expected = [r.value for r in read_all(log, "t") if r.partition == 0]
    assert [r.value for r in log.read("t", 0, 0, 2**63)] == expected
    assert log.read("t", 0, 2**63, 10) == []
    assert log.read("t", 0, 0, 0) == []


def test_sqlite_errors_that_are_bugs_keep_their_type(tmp_path: Path) -> None:
    # Only errors from the file or its environment become one-line SqliteLogErrors; a
    # constraint violation is a bug and keeps its traceback.
    log = _log_with_records(tmp_path / "log.db", retention_s=60.0)
    with pytest.raises(sqlite3.IntegrityError):
        log.conn.execute("INSERT INTO topics(name, partitions, retention_s) VALUES ('t', 1, 0)")
    log.create_topic("u", 1)  # the connection is still usable
    assert log.topics() == {"t": 2, "u": 1}


def test_kafka_topics_get_retention_ms_minus_one_for_zero(
    kafka_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    from wearwatch.config import get_settings
    from wearwatch.wiring import open_configured_log

    created = {}
    for retention in ("0", "3600"):  # the setting reaches the broker through the app's wiring
        monkeypatch.setenv("WEARWATCH_RETENTION_S", retention)
        get_settings.cache_clear()
        topic = f"retention-{retention}"
        log = open_configured_log(get_settings(), kafka_url)
        log.create_topic(topic, 1)
        log.close()
        created[topic] = retention
    get_settings.cache_clear()
    admin = AdminClient({"bootstrap.servers": kafka_url.removeprefix("kafka://"), "log_level": 0})
    futures = admin.describe_configs([ConfigResource("topic", t) for t in created])
    shown = {
        resource.name: future.result(timeout=30)["retention.ms"].value
        for resource, future in futures.items()
    }
    assert shown == {"retention-0": "-1", "retention-3600": "3600000"}
