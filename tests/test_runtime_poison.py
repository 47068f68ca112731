"""Poison records (issue 7, items 1, 2 and 11): each input the issue reproduced goes through a
real worker on the embedded log. Each test asserts the dead letter (reason and the exact
original bytes), exact counters, that the valid events around the poison are processed and
their positions committed, and that the worker finishes on its own instead of dying."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import msgspec
import pytest
from pydantic import ValidationError

import wearwatch.bus.sqlite as sqlite_bus
from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.config import Settings, get_settings
from wearwatch.events import DeadLetter, Reading, ReadingTotals
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, TOTALS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC, Context
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.wiring import worker_options

#: Every record below is appended at this (patched) wall-clock time, so the event-time guard's
#: decisions do not depend on when the test runs.
APPENDED = datetime(2026, 1, 2, tzinfo=UTC)
GROUP = "poison"
OPTIONS = WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0, watermark_delay_s=5.0)
OUTCOMES = ("processed", "invalid", "late", "future", "failed")


def reading(second: int, machine: str = "m1", value: float = 1.0) -> bytes:
    """A valid reading at 2026-01-01T00:00:<second>Z, in the canonical bytes."""
    return (
        b'{"type":"reading","ts":"2026-01-01T00:%02d:%02dZ","v":1,"machine_id":"%s",'
        b'"sensor":"s0","value":%s,"unit":""}'
        % (second // 60, second % 60, machine.encode(), repr(value).encode())
    )


def batch(*items: bytes) -> bytes:
    return b"[" + b",".join(items) + b"]"


def at(raw: bytes, ts: bytes) -> bytes:
    """``raw`` (one reading from :func:`reading`) with another event time."""
    start = raw.index(b'"ts":"') + 6
    return raw[:start] + ts + raw[raw.index(b'"', start) :]


#: Fires every pending timer (a day after the readings, still behind the append time).
FLUSH = at(reading(0, machine="flush"), b"2026-01-01T23:59:59Z")


@dataclass
class Run:
    log: SqliteLog
    counters: Counter[str]
    letters: list[DeadLetter]
    totals: dict[str, tuple[int, float]]


class FrozenWallClock:
    """The ``time`` module with ``time()`` frozen (monotonic clocks and sleep still run)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def produce_at(log: SqliteLog, values: list[bytes], when: datetime | float = APPENDED) -> None:
    """Append ``values`` (one record each) as if the wall clock read ``when`` (or, a float,
    that many epoch seconds)."""
    now = when.timestamp() if isinstance(when, datetime) else when
    with mock.patch.object(sqlite_bus, "time", FrozenWallClock(now)):
        log.produce([OutRecord(READINGS_TOPIC, b"k", value) for value in values])


def run(
    tmp_path: Path,
    values: list[bytes],
    when: datetime | float = APPENDED,
    options: WorkerOptions = OPTIONS,
    operator: ReadingTotalsOperator | None = None,
    flush: bool = True,
) -> Run:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(READINGS_TOPIC, 1)
    values = [*values, FLUSH] if flush else values
    produce_at(log, values, when)
    worker = Worker(log, operator or ReadingTotalsOperator(ttl_s=1.0), GROUP, options)
    counters = worker.run(install_signals=False)
    # The worker got past every record and committed it: a restart would not see them again.
    assert log.committed(GROUP, [(READINGS_TOPIC, 0)]) == {(READINGS_TOPIC, 0): len(values)}
    # Every input item ends in exactly one outcome; every dead letter written is counted.
    assert counters["in"] == sum(counters[name] for name in OUTCOMES)
    letters = [
        msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTER_TOPIC)
    ]
    assert counters["dead_lettered"] == len(letters)
    totals: dict[str, tuple[int, float]] = {}
    for record in read_all(log, TOTALS_TOPIC):
        total = msgspec.json.decode(record.value, type=ReadingTotals)
        count, value = totals.get(total.key, (0, 0.0))
        totals[total.key] = (count + total.count, value + total.total)
    return Run(log, counters, letters, totals)


def only_counters(run: Run) -> dict[str, int]:
    return {name: run.counters[name] for name in ("in", *OUTCOMES, "dead_lettered")}


def expect(
    *, processed: int, invalid: int = 0, late: int = 0, future: int = 0, failed: int = 0
) -> dict[str, int]:
    outcomes = {
        "processed": processed,
        "invalid": invalid,
        "late": late,
        "future": future,
        "failed": failed,
    }
    # reading_totals dead-letters late events too.
    letters = invalid + late + future + failed
    return {"in": sum(outcomes.values()), **outcomes, "dead_lettered": letters}


BAD_UTF8 = reading(1).replace(b'"m1"', b'"m\xff1"')
UTF8_REASON = "field `machine_id`: invalid UTF-8, got b'\"m\\xff1\"'"


def test_invalid_utf8_alone_is_dead_lettered_with_its_bytes(tmp_path: Path) -> None:
    result = run(tmp_path, [reading(0), BAD_UTF8, reading(2)])
    (letter,) = result.letters
    assert (letter.reason, letter.field, letter.raw, letter.offset) == (
        UTF8_REASON,
        "machine_id",
        BAD_UTF8,
        1,
    )
    assert only_counters(result) == expect(processed=3, invalid=1)
    assert result.totals == {"m1/s0": (2, 2.0)}


def test_invalid_utf8_inside_a_batch_loses_only_that_item(tmp_path: Path) -> None:
    result = run(tmp_path, [batch(reading(0), BAD_UTF8, reading(2))])
    (letter,) = result.letters
    assert (letter.reason, letter.raw, letter.offset) == (UTF8_REASON, BAD_UTF8, 0)
    assert only_counters(result) == expect(processed=3, invalid=1)
    assert result.totals == {"m1/s0": (2, 2.0)}


def test_invalid_utf8_in_a_key_names_that_key(tmp_path: Path) -> None:
    bad = reading(1).replace(b'"sensor"', b'"sen\xc3sor"')
    result = run(tmp_path, [bad])
    (letter,) = result.letters
    assert letter.raw == bad
    assert letter.reason == "field `sen\ufffdsor`: invalid UTF-8, got b'\"sen\\xc3sor\"'"


DEEP = b"[" * 10_000 + b"]" * 10_000


def test_ten_thousand_deep_value_is_refused_before_anything_recurses(tmp_path: Path) -> None:
    deep_value = reading(1).replace(b'"value":1.0', b'"value":' + DEEP)
    result = run(tmp_path, [reading(0), deep_value, reading(2)])
    (letter,) = result.letters
    assert (letter.reason, letter.field, letter.raw) == (
        "field `$`: nesting deeper than 64 levels, got 10001",
        "$",
        deep_value,
    )
    assert only_counters(result) == expect(processed=3, invalid=1)
    assert result.totals == {"m1/s0": (2, 2.0)}


def test_ten_thousand_deep_top_level_array_is_refused_whole(tmp_path: Path) -> None:
    result = run(tmp_path, [DEEP, reading(2)])
    (letter,) = result.letters
    assert (letter.reason, letter.raw) == (
        "field `$`: nesting deeper than 64 levels, got 10000",
        DEEP,
    )
    assert only_counters(result) == expect(processed=2, invalid=1)


def test_ten_thousand_deep_item_refuses_its_batch_whole_with_the_record_bytes(
    tmp_path: Path,
) -> None:
    # No parser can find the items of a batch this deep without recursing into it: the whole
    # record is the dead letter (its valid readings included, so nothing is lost unseen).
    deep_object = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    deep_batch = batch(reading(0), deep_object, reading(1))
    result = run(tmp_path, [reading(0), deep_batch, batch(reading(1), DEEP), reading(2)])
    assert [(letter.reason, letter.raw) for letter in result.letters] == [
        ("field `$`: nesting deeper than 64 levels, got 10001", deep_batch),
        ("field `$`: nesting deeper than 64 levels, got 10001", batch(reading(1), DEEP)),
    ]
    assert only_counters(result) == expect(processed=3, invalid=2)
    assert result.totals == {"m1/s0": (2, 2.0)}


def test_a_batch_at_the_nesting_bound_is_still_taken_apart(tmp_path: Path) -> None:
    # The batch is 1 level, the reading 1, so 62 more inside the value make exactly 64.
    nested = reading(1).replace(b'"value":1.0', b'"value":' + b"[" * 62 + b"]" * 62)
    result = run(tmp_path, [batch(reading(0), nested, reading(2))])
    (letter,) = result.letters
    assert letter.raw == nested
    assert letter.reason.startswith("field `value`: expected `float`, got ")
    assert only_counters(result) == expect(processed=3, invalid=1)


def test_nesting_up_to_the_bound_is_judged_by_the_contract_not_the_depth(
    tmp_path: Path,
) -> None:
    # 63 levels inside a 1-level object: 64 in all, allowed; the field's type is what is wrong.
    nested = reading(1).replace(b'"value":1.0', b'"value":' + b"[" * 63 + b"]" * 63)
    result = run(tmp_path, [nested])
    (letter,) = result.letters
    assert letter.reason.startswith("field `value`: expected `float`, got ")
    assert letter.raw == nested


@pytest.mark.parametrize(
    "ts",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1969-12-31T23:59:59Z"],
)
def test_timestamp_outside_the_supported_range_names_ts_and_the_value(
    tmp_path: Path, ts: str
) -> None:
    bad = at(reading(1), ts.encode())
    result = run(tmp_path, [reading(0), bad, batch(reading(2), bad, reading(3))])
    reason = (
        f"field `ts`: expected a time in [1970-01-01T00:00:00Z, 2200-01-01T00:00:00Z), got {ts!r}"
    )
    assert [(letter.reason, letter.field, letter.raw) for letter in result.letters] == [
        (reason, "ts", bad),
        (reason, "ts", bad),
    ]
    assert only_counters(result) == expect(processed=4, invalid=2)
    assert result.totals == {"m1/s0": (3, 3.0)}


def test_year_9999_event_does_not_make_later_events_late(tmp_path: Path) -> None:
    last = at(reading(1), b"9999-12-31T23:59:59Z")
    result = run(tmp_path, [reading(0), last, reading(2), reading(3)])
    (letter,) = result.letters
    assert (letter.field, letter.raw) == ("ts", last)
    assert only_counters(result) == expect(processed=4, invalid=1)
    assert result.totals == {"m1/s0": (3, 3.0)}


def test_far_future_event_is_dead_lettered_as_future_and_never_moves_the_watermark(
    tmp_path: Path,
) -> None:
    future = at(reading(1), b"2150-01-01T00:00:00Z")
    result = run(tmp_path, [reading(0), batch(reading(1), future, reading(2)), reading(3)])
    (letter,) = result.letters
    assert letter.reason == (
        "future: event time 2150-01-01T00:00:00+00:00 is more than 86400 s ahead of the "
        "record's log time 2026-01-02T00:00:00+00:00"
    )
    assert (letter.field, letter.raw, letter.offset) == ("ts", future, 1)
    assert letter.ts == APPENDED  # the letter carries the log time, not the absurd event time
    # Readings 2 and 3 come after the future one and are not late: the watermark never saw it.
    assert only_counters(result) == expect(processed=5, future=1)
    assert result.totals == {"m1/s0": (4, 4.0)}


def test_future_is_judged_against_the_stored_append_time_so_replays_agree(
    tmp_path: Path,
) -> None:
    options = WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0, max_future_s=60.0)
    at_bound = b"2026-01-02T00:01:00Z"  # exactly append time + 60 s: allowed
    past_bound = b"2026-01-02T00:01:00.000001Z"
    inside = at(reading(1), at_bound)
    beyond = at(reading(2), past_bound)
    first = run(tmp_path, [reading(0), inside, beyond], options=options, flush=False)
    assert [letter.raw for letter in first.letters] == [beyond]
    assert only_counters(first) == expect(processed=2, future=1)
    # A replay of the same log by a new group, with the wall clock long past every event,
    # decides the same: the guard reads the append time stored in the log, not the clock.
    with mock.patch("time.time", return_value=datetime(2100, 1, 1, tzinfo=UTC).timestamp()):
        replay = Worker(first.log, ReadingTotalsOperator(ttl_s=1.0), "replay", options)
        counters = replay.run(install_signals=False)
    assert {name: counters[name] for name in OUTCOMES} == {
        name: first.counters[name] for name in OUTCOMES
    }
    letters = read_all(first.log, DEAD_LETTER_TOPIC)
    assert [msgspec.json.decode(r.value, type=DeadLetter).raw for r in letters] == [beyond] * 2


def test_old_history_replays_without_a_single_future_or_late_event(tmp_path: Path) -> None:
    old = [
        reading(i).replace(b"2026-01-01", b"1999-06-30").replace(b"m1", b"old") for i in range(5)
    ]
    result = run(tmp_path, old)
    assert only_counters(result) == expect(processed=6)
    assert result.totals == {"old/s0": (5, 5.0)}


def test_a_record_without_an_append_time_is_not_judged(tmp_path: Path) -> None:
    future = at(reading(1), b"2150-01-01T00:00:00Z")
    result = run(tmp_path, [future], when=datetime(1970, 1, 1, tzinfo=UTC), flush=False)
    assert result.letters == []
    assert only_counters(result) == expect(processed=1)


def test_an_absurd_producer_set_log_time_is_not_judged_and_kills_nothing(
    tmp_path: Path,
) -> None:
    # Kafka's CreateTime is whatever the producer says: here about the year 146,000, which
    # a dead letter's datetime could not hold.
    future = at(reading(1), b"2150-01-01T00:00:00Z")
    result = run(tmp_path, [BAD_UTF8, future], when=2**52, flush=False)
    (letter,) = result.letters
    assert (letter.raw, letter.ts) == (BAD_UTF8, datetime(1970, 1, 1, tzinfo=UTC))
    assert only_counters(result) == expect(processed=1, invalid=1)


DUPLICATE = reading(1).replace(b'"value":1.0', b'"value":1.0,"value":2.5')


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (DUPLICATE, "field `value`: duplicate key, got 1.0 and 2.5"),
        (
            reading(1).replace(b'"value":1.0', b'"value":1.0,"val\\u0075e":2.5'),
            "field `value`: duplicate key, got 1.0 and 2.5",
        ),
        (
            reading(1).replace(b'"v":1,', b'"v":1,"ts":"2026-01-01T00:00:09Z",'),
            "field `ts`: duplicate key, got '2026-01-01T00:00:01Z' and '2026-01-01T00:00:09Z'",
        ),
        (
            reading(1).replace(b'{"type":"reading",', b'{"type":"reading","type":"reading",'),
            "field `type`: duplicate key, got 'reading' and 'reading'",
        ),
    ],
    ids=["value", "escaped", "ts", "same-value"],
)
def test_duplicate_keys_are_refused_naming_the_key(tmp_path: Path, raw: bytes, reason: str) -> None:
    result = run(tmp_path, [raw, batch(reading(2), raw, reading(3))])
    assert [(letter.reason, letter.field, letter.raw) for letter in result.letters] == [
        (reason, reason.split("`")[1], raw),
        (reason, reason.split("`")[1], raw),
    ]
    assert only_counters(result) == expect(processed=3, invalid=2)
    assert result.totals == {"m1/s0": (2, 2.0)}


def test_an_optional_key_missing_in_one_event_hides_no_duplicate_in_another(
    tmp_path: Path,
) -> None:
    # Counting keys over the whole batch would balance these two out.
    no_unit = reading(2).replace(b',"unit":""', b"")
    two_units = reading(3).replace(b',"unit":""', b',"unit":"","unit":"mm"')
    result = run(tmp_path, [batch(no_unit, two_units)])
    (letter,) = result.letters
    assert (letter.reason, letter.raw) == (
        "field `unit`: duplicate key, got '' and 'mm'",
        two_units,
    )


def test_empty_batch_is_one_counted_dead_letter(tmp_path: Path) -> None:
    result = run(tmp_path, [b"[]", reading(1)])
    (letter,) = result.letters
    assert (letter.reason, letter.field, letter.raw, letter.offset) == (
        "field `$`: empty batch, expected at least one event",
        "$",
        b"[]",
        0,
    )
    assert only_counters(result) == expect(processed=2, invalid=1)


def test_late_events_are_dead_lettered_with_the_bytes_they_arrived_as(tmp_path: Path) -> None:
    # Not canonical (spaces, "1.50", no unit): re-encoding the event would give other bytes.
    late = b'{ "type": "reading", "ts": "2026-01-01T00:00:01Z", "machine_id": "m1", "sensor": "s0", "value": 1.50 }'  # noqa: E501
    result = run(tmp_path, [reading(30), late, batch(reading(31), late, reading(32))])
    assert [(letter.field, letter.raw, letter.offset) for letter in result.letters] == [
        ("ts", late, 1),
        ("ts", late, 2),
    ]
    assert all(letter.reason.startswith("late: event time ") for letter in result.letters)
    assert only_counters(result) == expect(processed=4, late=2)


class Fragile(ReadingTotalsOperator):
    """Raises on a negative reading: a valid event this operator cannot handle."""

    def process(self, event: Reading, key: str, ts: float, ctx: Context) -> None:
        if event.value < 0:
            raise ArithmeticError(f"negative reading {event.value}")
        super().process(event, key, ts, ctx)


def test_failed_events_are_dead_lettered_with_the_bytes_they_arrived_as(tmp_path: Path) -> None:
    odd = b'{"value":-2.50,"sensor":"s0","machine_id":"m1","ts":"2026-01-01T01:00:00+01:00"}'
    result = run(tmp_path, [batch(reading(0), odd, reading(2)), odd], operator=Fragile(ttl_s=1.0))
    assert [(letter.reason, letter.raw) for letter in result.letters] == [
        ("processing failed: ArithmeticError: negative reading -2.5", odd),
        ("processing failed: ArithmeticError: negative reading -2.5", odd),
    ]
    assert only_counters(result) == expect(processed=3, failed=2)


POISON = [
    BAD_UTF8,
    batch(reading(0), BAD_UTF8),
    reading(1).replace(b'"value":1.0', b'"value":' + DEEP),
    DEEP,
    batch(reading(0), DEEP),
    at(reading(1), b"0001-01-01T00:00:00+14:00"),
    at(reading(1), b"9999-12-31T23:59:59-14:00"),
    at(reading(1), b"9999-12-31T23:59:59Z"),
    DUPLICATE,
    b"[]",
]


def test_a_running_worker_lives_through_every_poison_and_keeps_committing(
    tmp_path: Path,
) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(READINGS_TOPIC, 1)
    # A wide watermark delay: the reading inside a poison batch is never late. (The one beside
    # DEEP is refused with it, whole.)
    options = WorkerOptions(
        poll_timeout_s=0.05, checkpoint_interval_s=0.05, watermark_delay_s=3600.0
    )
    worker = Worker(log, ReadingTotalsOperator(ttl_s=1.0), GROUP, options)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            worker.run(install_signals=False)
        except BaseException as exc:  # pragma: no cover - the failure this test looks for
            failure.append(exc)

    producer = SqliteLog(tmp_path / "log.db")  # its own connection, as another process's
    thread = threading.Thread(target=work)
    thread.start()
    try:
        for i, poison in enumerate(POISON):
            # Each poison arrives while the worker runs, then a valid reading behind it.
            produce_at(producer, [poison, reading(10 + i)])
            deadline = time.monotonic() + 60
            while log.committed(GROUP, [(READINGS_TOPIC, 0)])[(READINGS_TOPIC, 0)] < 2 * i + 2:
                assert thread.is_alive() and not failure, failure
                assert time.monotonic() < deadline, f"worker stuck after poison {i}"
                time.sleep(0.02)
    finally:
        worker.stop()
        thread.join(60)
    assert not failure and not thread.is_alive()
    # The counters were checkpointed with the positions: a restart resumes them, exact.
    counters = Worker(log, ReadingTotalsOperator(ttl_s=1.0), GROUP, OPTIONS).run(
        install_signals=False
    )
    assert {name: counters[name] for name in ("in", *OUTCOMES, "dead_lettered")} == {
        **expect(processed=1 + len(POISON), invalid=len(POISON))
    }
    letters = [
        msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTER_TOPIC)
    ]
    assert [letter.offset for letter in letters] == [2 * i for i in range(len(POISON))]


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e400"])
def test_the_guard_bound_must_be_finite_and_positive(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEARWATCH_MAX_FUTURE_S", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    (error,) = info.value.errors()
    assert error["loc"] == ("max_future_s",) and error["input"] == value


def test_the_guard_bound_reaches_the_worker_from_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEARWATCH_MAX_FUTURE_S", "3600")
    get_settings.cache_clear()
    try:
        assert worker_options(get_settings()).max_future_s == 3600.0
    finally:
        get_settings.cache_clear()
    assert WorkerOptions().max_future_s == Settings.model_fields["max_future_s"].default == 86400
