"""Bad input loses nothing: each bad event lands in the dead letters with a reason naming the
field and with its raw bytes; valid events around it are processed; counters are exact."""

from __future__ import annotations

from pathlib import Path

import msgspec

from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import DeadLetter, ReadingTotals, encode
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, TOTALS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings

VALID = (
    b'{"type":"reading","v":1,"ts":"2026-01-01T01:00:%02dZ","machine_id":"m1","sensor":"s0",'
    b'"value":1.5}'
)

BAD: list[tuple[bytes, str, str]] = [
    (b'{"type":"reading","v":1,"ts":', "malformed JSON", "$"),
    (
        b'{"type":"reading","v":1,"ts":"2026-01-01T00:00:01Z","machine_id":"m1","sensor":"s0",'
        b'"value":"hot"}',
        "field `value`",
        "value",
    ),
    (
        b'{"type":"reading","v":1,"ts":"2026-01-01T00:00:01Z","sensor":"s0","value":1.0}',
        "field `machine_id`: missing",
        "machine_id",
    ),
    (
        b'{"type":"reading","v":1,"ts":"2026-01-01T00:00:01Z","machine_id":"m1","sensor":"s0",'
        b'"value":1e999}',
        "expected a finite number, got '1e999'",
        "value",
    ),
    (
        b'{"type":"reading","v":1,"ts":"2026-01-01T00:00:01Z","machine_id":"m1","sensor":"s0",'
        b'"value":NaN}',
        "malformed JSON",
        "$",
    ),
    (
        b'{"type":"reading","v":1,"ts":"2026-01-01T00:00:01","machine_id":"m1","sensor":"s0",'
        b'"value":1.0}',
        "timezone, got '2026-01-01T00:00:01'",
        "ts",
    ),
    (
        b'{"type":"reading","v":1,"ts":"2026-01-01T00:00:01Z","machine_id":"m1","sensor":"s0",'
        b'"value":1.0,"unit":"' + b"x" * 70_000 + b'"}',
        "exceeds max_event_bytes=65536",
        "payload",
    ),
    (
        b'{"type":"reading","v":9,"ts":"2026-01-01T00:00:01Z","machine_id":"m1","sensor":"s0",'
        b'"value":1.0}',
        "unsupported schema version",
        "v",
    ),
]


def test_bad_events_are_dead_lettered_with_field_reason_and_raw_bytes(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    log.create_topic(READINGS_TOPIC, 2)
    good = list(synthetic_readings(1000, seed=3))  # 2026-01-01T00:00, before VALID's hour
    records: list[OutRecord] = [OutRecord(READINGS_TOPIC, b"m1", encode(good))]
    valid = 0
    expected_raw: list[tuple[bytes, str, str]] = []
    for i, (raw, reason, field) in enumerate(BAD):
        # Each bad event travels twice: alone, and inside a batch between valid events.
        records.append(OutRecord(READINGS_TOPIC, b"m1", raw))
        batch = b"[" + VALID % (2 * i) + b"," + raw + b"," + VALID % (2 * i + 1) + b"]"
        records.append(OutRecord(READINGS_TOPIC, b"m1", batch))
        expected_raw.append((raw, reason, field))
        if reason == "malformed JSON":
            # Malformed JSON has no trustworthy item boundaries: the whole batch is the
            # dead letter (valid neighbours included, so still nothing is lost).
            expected_raw.append((batch, reason, field))
        else:
            expected_raw.append((raw, reason, field))
            valid += 2
    # A reading a day later moves the watermark past every timer: all totals get emitted.
    flush = VALID.replace(b"2026-01-01T01", b"2026-01-02T01").replace(b"m1", b"m9") % 0
    records.append(OutRecord(READINGS_TOPIC, b"m1", flush))
    log.produce(records)

    worker = Worker(
        log,
        ReadingTotalsOperator(ttl_s=1.0),
        "bad",
        WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0, poll_max_records=4),
    )
    counters = worker.run(install_signals=False)

    letters = [
        msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTER_TOPIC)
    ]
    assert counters["dead_lettered"] == len(letters) == 2 * len(BAD)
    assert counters["in"] == 2 * len(BAD) + valid + len(good) + 1
    assert counters["late"] == 0
    by_raw: dict[bytes, list[DeadLetter]] = {}
    for letter in letters:
        by_raw.setdefault(letter.raw, []).append(letter)
    assert sorted(by_raw) == sorted({raw for raw, _, _ in expected_raw})
    for raw, reason, field in expected_raw:
        hits = by_raw[raw]
        assert len(hits) == sum(1 for r, _, _ in expected_raw if r == raw), raw[:60]
        for letter in hits:
            assert reason in letter.reason, (letter.reason, reason)
            assert letter.field == field
            assert letter.source_topic == READINGS_TOPIC
            assert letter.offset >= 0
    # The worker kept going: every valid reading is counted in the totals it emitted.
    totals = [msgspec.json.decode(r.value, type=ReadingTotals) for r in read_all(log, TOTALS_TOPIC)]
    assert sum(t.count for t in totals) == valid + len(good)
