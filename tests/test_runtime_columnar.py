"""The worker's columnar path: the same readings sent as JSON records and as Arrow records give
the same outputs, counters and dead letters; ``process_columns`` sees every row under the
watermark the per-event loop shows while processing it."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from wearwatch.bus.base import OutRecord, partition_for, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import Columns
from wearwatch.events import DeadLetter, Reading, encode
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, TOTALS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC, Context, KeyedOperator
from wearwatch.runtime.worker import NO_WATERMARK_US, Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings

PARTITIONS = 3
OPTIONS = WorkerOptions(
    watermark_delay_s=0.01, exit_when_idle=True, poll_timeout_s=0.0, poll_max_records=7
)

FUTURE_US = 4_102_444_800_000_000  # 2100-01-01: beyond any record's log time + max_future_s
# Bad rows, as JSON spells them and as Arrow carries them: (field, JSON value, Arrow value).
BAD = [
    ("ts", '"2100-01-01T00:00:00Z"', FUTURE_US),
    ("value", "1e999", math.inf),
    ("value", "null", None),
    ("machine_id", "null", None),
    ("machine_id", '""', ""),
    ("sensor", json.dumps("s" * 201), "s" * 201),
]


def _rows(n: int) -> list[dict[str, Any]]:
    """Readings with disorder (some arrive behind the watermark) and, every 97th, a bad one."""
    rows = []
    for i, r in enumerate(synthetic_readings(n, seed=5, jitter_s=0.05)):
        row = {
            "ts_us": (r.ts.timestamp() * 1e6).__round__(),
            "machine_id": r.machine_id,
            "sensor": r.sensor,
            "value": r.value,
            "unit": r.unit,
            "bad": None,
        }
        if i % 97 == 13:
            row["bad"] = BAD[(i // 97) % len(BAD)]
        rows.append(row)
    return rows


def _json_row(row: dict[str, Any]) -> str:
    """A row as its producer would send it: the canonical encoding, or a bad value spliced in."""
    reading = Reading(
        ts=datetime.fromtimestamp(row["ts_us"] / 1e6, UTC),
        machine_id=row["machine_id"],
        sensor=row["sensor"],
        value=row["value"],
        unit=row["unit"],
    )
    fields = msgspec.json.decode(encode(reading), type=dict[str, msgspec.Raw])
    if row["bad"] is not None:
        fields[row["bad"][0]] = msgspec.Raw(row["bad"][1].encode())
    return "{" + ",".join(f'"{k}":{bytes(v).decode()}' for k, v in fields.items()) + "}"


def _arrow(rows: list[dict[str, Any]]) -> bytes:
    columns: dict[str, list[Any]] = {k: [] for k in ("ts", "machine_id", "sensor", "value", "unit")}
    for row in rows:
        values = {"ts": row["ts_us"], **{k: row[k] for k in ("machine_id", "sensor", "value")}}
        values["unit"] = row["unit"]
        if row["bad"] is not None:
            values[row["bad"][0]] = row["bad"][2]
        for name, value in values.items():
            columns[name].append(value)
    batch = pa.RecordBatch.from_pydict(
        {
            "ts": pa.array(columns["ts"], pa.timestamp("us", "UTC")),
            "machine_id": pa.array(columns["machine_id"], pa.string()).dictionary_encode(),
            "sensor": pa.array(columns["sensor"], pa.string()).dictionary_encode(),
            "value": pa.array(columns["value"], pa.float64()),
            "unit": pa.array(columns["unit"], pa.string()).dictionary_encode(),
        },
        metadata={"type": "reading", "v": "1"},
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _records(rows: list[dict[str, Any]], columnar: bool) -> list[OutRecord]:
    """Rows packed per partition (key machine_id/sensor) into records of up to 40 rows; one
    garbage record in partition 0. Identical grouping for both encodings."""
    per_partition: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        key = f"{row['machine_id']}/{row['sensor']}".encode()
        per_partition.setdefault(partition_for(key, PARTITIONS), []).append(row)
    out = []
    for partition, mine in sorted(per_partition.items()):
        for start in range(0, len(mine), 40):
            chunk = mine[start : start + 40]
            if columnar:
                value = _arrow(chunk)
            else:
                value = ("[" + ",".join(_json_row(r) for r in chunk) + "]").encode()
            out.append(OutRecord(READINGS_TOPIC, None, value, "", partition))
    garbage = b"\xff\xff\xff\xff\x10\x00\x00\x00broken" if columnar else b'[{"type":"read'
    out.insert(5, OutRecord(READINGS_TOPIC, None, garbage, "", 0))
    return out


def _run(tmp_path: Path, name: str, records: list[OutRecord]) -> tuple[Counter[str], SqliteLog]:
    log = SqliteLog(tmp_path / f"{name}.db")
    log.create_topic(READINGS_TOPIC, PARTITIONS)
    log.produce(records)
    counters = Worker(log, ReadingTotalsOperator(ttl_s=0.2), "totals", OPTIONS).run(
        install_signals=False
    )
    return counters, log


def test_json_and_arrow_records_give_identical_outputs_counters_and_dead_letters(
    tmp_path: Path,
) -> None:
    rows = _rows(6000)
    json_counters, json_log = _run(tmp_path, "json", _records(rows, columnar=False))
    arrow_counters, arrow_log = _run(tmp_path, "arrow", _records(rows, columnar=True))

    n_bad = sum(1 for r in rows if r["bad"] is not None)
    assert json_counters == arrow_counters
    n_future = sum(1 for r in rows if r["bad"] and r["bad"][0] == "ts")
    assert arrow_counters["in"] == len(rows) + 1  # every row, plus the garbage record
    assert arrow_counters["future"] == n_future > 0
    assert arrow_counters["invalid"] == n_bad - n_future + 1
    assert arrow_counters["late"] >= 20  # the disorder really makes rows late
    assert arrow_counters["dead_lettered"] == n_bad + 1 + arrow_counters["late"]
    assert arrow_counters["processed"] == len(rows) - n_bad - arrow_counters["late"]

    def totals(log: SqliteLog) -> list[tuple[int, bytes | None, bytes, str]]:
        return [(r.partition, r.key, r.value, r.rid) for r in read_all(log, TOTALS_TOPIC)]

    assert totals(json_log) == totals(arrow_log)
    assert len(totals(arrow_log)) >= 200

    def letters(log: SqliteLog) -> list[DeadLetter]:
        return [
            msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTER_TOPIC)
        ]

    json_letters, arrow_letters = letters(json_log), letters(arrow_log)
    assert [(d.partition, d.offset, d.field) for d in json_letters] == [
        (d.partition, d.offset, d.field) for d in arrow_letters
    ]
    timing = [
        (j, a)
        for j, a in zip(json_letters, arrow_letters, strict=True)
        if j.reason.startswith(("late:", "future:"))
    ]
    assert len(timing) == arrow_counters["late"] + arrow_counters["future"]
    # A late or future row's dead letter carries the same bytes and reason on both paths (up
    # to the log time, which is each log's own append time).
    for j, a in timing:
        assert j.raw == a.raw
        assert j.reason.split("log time")[0] == a.reason.split("log time")[0]
    invalid = [a for a in arrow_letters if not a.reason.startswith(("late:", "future:"))]
    rows_refused = [a for a in invalid if a.field != "$"]
    assert Counter(a.field for a in rows_refused) == Counter(
        r["bad"][0] for r in rows if r["bad"] and r["bad"][0] != "ts"
    )
    for letter in rows_refused:  # each carries its own row, as JSON
        row = json.loads(letter.raw)
        assert row["type"] == "reading" and letter.reason.startswith(f"field `{letter.field}`")
    garbage = [a for a in arrow_letters if a.field == "$"]
    assert len(garbage) == 1 and garbage[0].raw.startswith(b"\xff\xff\xff\xff")
    json_log.close()
    arrow_log.close()


class Probe(KeyedOperator):
    """Records what the worker shows it: each event's time and the watermark at that moment,
    and its timers (one per event, so that when they fire cannot change which fire)."""

    name = "probe"
    input_topic = "probe.in"
    input_type = Reading
    outputs = ()

    def __init__(self) -> None:
        self.seen: list[tuple[float, float, str]] = []
        self.fired: list[tuple[float, str]] = []

    def key(self, event: Reading) -> str:
        return event.machine_id

    def process(self, event: Reading, key: str, ts: float, ctx: Context) -> None:
        self.seen.append((ts, ctx.watermark, "on time"))
        ctx.set_timer(f"{key}@{ts}", ts + 0.05)

    def on_late(self, event: Any, raw: bytes, offset: int, ts: float, ctx: Context) -> None:
        self.seen.append((ts, ctx.watermark, "late"))

    def on_timer(self, key: str, when: float, ctx: Context) -> None:
        self.fired.append((when, key))


class ColumnarProbe(Probe):
    def process_columns(self, cols: Columns, watermarks_us: np.ndarray, ctx: Context) -> None:
        keys = cols.fields["machine_id"].tolist()
        marks = watermarks_us.tolist()
        for ts_us, wm_us, key in zip(cols.ts_us.tolist(), marks, keys, strict=True):
            ts = ts_us / 1e6
            watermark = -math.inf if wm_us == NO_WATERMARK_US else wm_us / 1e6
            late = ts < watermark
            self.seen.append((ts, watermark, "late" if late else "on time"))
            if not late:
                ctx.set_timer(f"{key}@{ts}", ts + 0.05)


def test_process_columns_sees_each_row_under_the_watermark_the_per_event_loop_shows_it(
    tmp_path: Path,
) -> None:
    rows = [{**r, "bad": None} for r in _rows(3000)]
    chunks = [rows[i : i + 64] for i in range(0, len(rows), 64)]
    results = []
    for name, probe, encode_chunk in (
        ("json", Probe(), lambda c: ("[" + ",".join(map(_json_row, c)) + "]").encode()),
        ("arrow", ColumnarProbe(), _arrow),
    ):
        log = SqliteLog(tmp_path / f"{name}.db")
        log.create_topic(Probe.input_topic, 1)
        log.produce(OutRecord(Probe.input_topic, None, encode_chunk(c), "", 0) for c in chunks)
        counters = Worker(log, probe, "probe", OPTIONS).run(install_signals=False)
        results.append((counters, probe))
        log.close()
    (json_counters, by_event), (arrow_counters, by_batch) = results
    assert json_counters == arrow_counters
    assert by_event.seen == by_batch.seen  # exact floats, row by row
    late = [s for s in by_batch.seen if s[2] == "late"]
    assert len(late) == arrow_counters["late"] >= 20
    # Timers fire after a batch rather than between its rows: the same ones, in the same order
    # (one set by a row is due after the watermark that row saw, so after any fired before).
    assert by_event.fired == by_batch.fired
    assert len(by_batch.fired) >= 100
