"""Failure paths: an operator that raises, impossible-but-well-formed events, a worker that
crashes mid-record, and a sink whose input was partly deleted by retention."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import DeadLetter, Reading, ReadingTotals, encode, utc
from wearwatch.pipelines.mill.flow import mill_flow
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, TOTALS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC, Context
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.store.analytics import sink_topics
from wearwatch.store.analytics_duckdb import DuckDBStore

OPTIONS = WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0, watermark_delay_s=0.0)


def _readings(values: list[float], machine: str = "m1", t0: float = 0.0) -> bytes:
    return encode(
        [
            Reading(ts=utc(t0 + i), machine_id=machine, sensor="s", value=v)
            for i, v in enumerate(values)
        ]
    )


class Fragile(ReadingTotalsOperator):
    """Raises on a negative reading: a valid event this operator cannot handle."""

    def process(self, event: Reading, key: str, ts: float, ctx: Context) -> None:
        if event.value < 0:
            raise ArithmeticError(f"negative reading {event.value}")
        super().process(event, key, ts, ctx)


def test_an_event_the_operator_cannot_handle_is_dead_lettered_and_the_rest_goes_on(
    tmp_path: Path,
) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(READINGS_TOPIC, 1)
    log.produce(
        [
            OutRecord(READINGS_TOPIC, b"m1", _readings([1.0, -2.0, 3.0])),
            OutRecord(READINGS_TOPIC, b"m1", _readings([4.0], machine="m2", t0=100.0)),
        ]
    )
    counters = Worker(log, Fragile(ttl_s=10.0), "g", OPTIONS).run(install_signals=False)
    assert counters["failed"] == 1 and counters["dead_lettered"] == 1
    (letter,) = [
        msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTER_TOPIC)
    ]
    assert letter.reason == "processing failed: ArithmeticError: negative reading -2.0"
    assert msgspec.json.decode(letter.raw)["value"] == -2.0
    (total,) = [
        msgspec.json.decode(r.value, type=ReadingTotals) for r in read_all(log, TOTALS_TOPIC)
    ]
    assert (total.key, total.count, total.total) == ("m1/s", 2, 4.0)


def test_impossible_passes_are_rejected_by_the_contract_not_by_a_crash() -> None:
    request = (
        b'{"type":"pass_request","ts":"2026-01-01T00:00:00Z","slab_id":"S1","pass_no":1,'
        b'"line":"structural","width_mm":1500,"h_in_mm":200,"h_out_mm":200,'
        b'"temp_c":1150,"speed_mps":2,"roll_radius_mm":550,"baseline_force_kn":20000,'
        b'"rating_force_kn":45000}'
    )
    actual = (
        b'{"type":"pass_actual","ts":"2026-01-01T00:00:05Z","slab_id":"S1","pass_no":1,'
        b'"force_kn":0}'
    )
    out = mill_flow().test([request, actual])
    letters = out["dead_letters"]
    assert [(d.field, d.reason, d.raw) for d in letters] == [
        ("h_out_mm", "field `h_out_mm`: 200.0 must be below h_in_mm=200.0", request),
        ("force_kn", "field `force_kn`: expected `float` > 0.0, got 0", actual),
    ]
    assert out.totals["failed"] == 0 and out.totals["dead_lettered"] == 2


class Crashing(ReadingTotalsOperator):
    """Dies (like a bug or an OOM) in the middle of its second record."""

    def __init__(self) -> None:
        super().__init__(ttl_s=1.0)
        self.calls = 0

    def process(self, event: Reading, key: str, ts: float, ctx: Context) -> None:
        self.calls += 1
        super().process(event, key, ts, ctx)
        if self.calls == 5:
            raise SystemExit("crash")


def test_a_worker_that_dies_mid_record_leaves_no_half_processed_checkpoint(
    tmp_path: Path,
) -> None:
    def fill(path: Path) -> SqliteLog:
        log = SqliteLog(path)
        log.create_topic(READINGS_TOPIC, 1)
        log.produce(
            [OutRecord(READINGS_TOPIC, b"m1", _readings([1.0] * 3, t0=10.0 * i)) for i in range(4)]
        )
        return log

    crashed = fill(tmp_path / "crashed.db")
    with pytest.raises(SystemExit):
        Worker(crashed, Crashing(), "g", OPTIONS).run(install_signals=False)
    counters = Worker(crashed, ReadingTotalsOperator(ttl_s=1.0), "g", OPTIONS).run(
        install_signals=False
    )
    reference = fill(tmp_path / "reference.db")
    expected = Worker(reference, ReadingTotalsOperator(ttl_s=1.0), "g", OPTIONS).run(
        install_signals=False
    )
    assert counters == expected  # `in` counts every event exactly once
    assert [r.value for r in read_all(crashed, TOTALS_TOPIC)] == [
        r.value for r in read_all(reference, TOTALS_TOPIC)
    ]


def test_the_sink_finishes_when_retention_deleted_what_it_had_not_read(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db", retention_s=60.0)
    log.create_topic("out", 1)
    log.produce(OutRecord("out", b"k", _readings([1.0]), f"r{i}") for i in range(5))
    log.apply_retention(now_s=time.time() + 3600)
    store = DuckDBStore(tmp_path / "a.duckdb")
    start = time.monotonic()
    assert sink_topics(log, store, ["out"], "sink", idle_timeout_s=30.0) == 0
    assert time.monotonic() - start < 10.0


def test_records_retention_deleted_before_the_worker_read_them_are_counted(
    tmp_path: Path,
) -> None:
    log = SqliteLog(tmp_path / "log.db", retention_s=60.0)
    log.create_topic(READINGS_TOPIC, 1)
    log.produce(OutRecord(READINGS_TOPIC, b"m1", _readings([1.0], t0=i)) for i in range(5))
    assert log.apply_retention(now_s=time.time() + 3600) == 5
    log.produce(OutRecord(READINGS_TOPIC, b"m1", _readings([1.0], t0=10 + i)) for i in range(3))
    counters = Worker(log, ReadingTotalsOperator(ttl_s=1.0), "g", OPTIONS).run(
        install_signals=False
    )
    assert counters["skipped_by_retention"] == 5
    assert counters["in"] == 3
