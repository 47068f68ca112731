"""Columnar records: round trips, vectorised validation equal to the JSON contract's verdict row
by row, whole-record errors, and a fuzz test that decoding never raises and accounts for every
row exactly once."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearwatch.bus.base import partition_for
from wearwatch.columnar import (
    EARLIEST_US,
    IPC_MARKER,
    LATEST_US,
    decode_columns,
    encode_columns,
    encode_events,
    is_columnar,
    pack_columns,
)
from wearwatch.events import (
    EventDecodeError,
    PassActual,
    PassRequest,
    Reading,
    decode_event,
    encode,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs
META = {"type": "reading", "v": "1"}


def _ipc(batch: pa.RecordBatch | pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write(batch)
    return sink.getvalue().to_pybytes()


def _record(columns: dict[str, pa.Array | list], metadata: dict[str, str] | None = META) -> bytes:
    return _ipc(pa.RecordBatch.from_pydict(columns, metadata=metadata))


def _ts(*us: int | None) -> pa.Array:
    return pa.array(list(us), pa.timestamp("us", "UTC"))


# --- round trips ----------------------------------------------------------------------------

ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=200)
readings = st.builds(
    Reading,
    ts=st.integers(EARLIEST_US, LATEST_US - 1).map(lambda us: EPOCH + timedelta(microseconds=us)),
    machine_id=ids,
    sensor=st.sampled_from(["vib", "temp", "pressure", "ß-sensor"]),
    value=st.floats(-1e300, 1e300, allow_nan=False),
    unit=st.sampled_from(["", "mm/s", "°C"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(readings, min_size=1, max_size=40))
def test_readings_round_trip_and_match_the_json_path_exactly(events: list[Reading]) -> None:
    raw = encode_events(events)
    assert is_columnar(raw) and raw[:4] == IPC_MARKER
    cols, bad = decode_columns(raw, Reading)
    assert bad == []
    assert cols.events() == events
    assert cols.rows.tolist() == list(range(len(events)))
    # The times the worker computes from µs are the ones datetime gives the JSON path.
    assert (cols.ts_us / 1e6).tolist() == [e.ts.timestamp() for e in events]
    for i, event in enumerate(events):
        assert cols.row_bytes(i) == encode(event)
        assert decode_event(cols.row_bytes(i), Reading) == event
    # Codes index distinct strings: categories[codes] is the column.
    for name in ("machine_id", "sensor", "unit"):
        codes, categories = cols.codes[name]
        assert len(set(categories.tolist())) == len(categories)
        assert categories[codes].tolist() == [getattr(e, name) for e in events]


def test_dictionary_encoding_keeps_a_reading_near_19_bytes() -> None:
    n = 30_000
    rng = np.random.default_rng(1)
    raw = encode_columns(
        Reading,
        T0 + np.arange(n) * 1000,
        {
            "machine_id": (rng.integers(0, 50, n), [f"m{i:03d}" for i in range(50)]),
            "sensor": (rng.integers(0, 6, n), [f"s{i}" for i in range(6)]),
            "value": rng.normal(size=n),
            "unit": ["mm/s"] * n,
        },
    )
    assert 19.0 <= len(raw) / n < 19.2  # ts 8 + value 8 + three int8 codes, plus the schema
    cols, bad = decode_columns(raw, Reading)
    assert len(cols) == n and bad == []


def test_lenient_physical_types_are_read_as_the_contract_says() -> None:
    """Any timestamp unit and zone (Arrow stores UTC instants), integer values, plain and
    large strings, a left-out defaulted field."""
    raw = _record(
        {
            "ts": pa.array([1_767_225_600, 1_767_225_601], pa.timestamp("s", "Europe/Berlin")),
            "machine_id": pa.array(["p1", "p2"], pa.large_string()),
            "sensor": ["vib", "vib"],
            "value": pa.array([3, -4], pa.int16()),
        }
    )
    cols, bad = decode_columns(raw, Reading)
    assert bad == []
    assert cols.ts_us.tolist() == [T0, T0 + 1_000_000]
    assert cols.fields["value"].tolist() == [3.0, -4.0]
    assert cols.fields["unit"].tolist() == ["", ""]
    assert cols.events()[1] == Reading(
        ts=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), machine_id="p2", sensor="vib", value=-4.0
    )
    ns = _record(
        {
            "ts": pa.array([T0 * 1000 + 999], pa.timestamp("ns", "UTC")),
            "machine_id": ["p1"],
            "sensor": ["vib"],
            "value": [1.0],
        }
    )
    assert decode_columns(ns, Reading)[0].ts_us.tolist() == [T0]  # floor to the µs


def test_a_foreign_dictionary_that_repeats_values_still_gives_one_code_per_string() -> None:
    machine = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 2, 1], pa.int32()), pa.array(["a", "b", "a"])
    )
    raw = _record(
        {"ts": _ts(T0, T0, T0, T0), "machine_id": machine, "sensor": ["s"] * 4, "value": [1.0] * 4}
    )
    cols, bad = decode_columns(raw, Reading)
    codes, categories = cols.codes["machine_id"]
    assert bad == [] and categories.tolist() == ["a", "b"]
    assert codes.tolist() == [0, 1, 0, 1]


# --- bad rows -------------------------------------------------------------------------------

# (column, bad value, field, words in the reason, the value as the dead letter shows it); each
# goes into row 1 of a 3-row batch.
BAD_ROWS: list[tuple[str, Any, str, str, Any]] = [
    ("value", math.nan, "value", "expected a finite number, got nan", math.nan),
    ("value", math.inf, "value", "expected a finite number, got inf", math.inf),
    ("value", -math.inf, "value", "expected a finite number, got -inf", -math.inf),
    ("value", 1.5e300, "value", "expected a number <= 1e+300, got 1.5e+300", 1.5e300),
    ("value", None, "value", "null, expected a number", None),
    ("machine_id", "", "machine_id", "expected a string of length >= 1, got ''", ""),
    ("machine_id", None, "machine_id", "null, expected a string", None),
    ("sensor", "x" * 201, "sensor", "expected a string of length <= 200, got 'xxx", "x" * 201),
    ("ts", None, "ts", "null, expected a timestamp", None),
    ("ts", LATEST_US, "ts", "got 2200-01-01T00:00:00Z", "2200-01-01T00:00:00Z"),
    ("ts", -1, "ts", "got 1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z"),
    (
        "ts",
        2**62,
        "ts",
        "expected a time in [1970-01-01T00:00:00Z, 2200-01-01T00:00:00Z), "
        "got 4611686018427387904 us since 1970-01-01T00:00:00Z",
        "4611686018427387904 us since 1970-01-01T00:00:00Z",
    ),
]


@pytest.mark.parametrize(("column", "value", "field", "reason", "shown"), BAD_ROWS)
def test_a_bad_row_is_reported_alone_with_its_data_and_a_reason_naming_field_and_value(
    column: str, value: Any, field: str, reason: str, shown: Any
) -> None:
    data: dict[str, list[Any]] = {
        "ts": [T0, T0 + 1, T0 + 2],
        "machine_id": ["p1", "p2", "p3"],
        "sensor": ["vib", "vib", "vib"],
        "value": [1.0, 2.0, 3.0],
    }
    data[column][1] = value
    raw = _record({**data, "ts": _ts(*data["ts"])})
    cols, bad = decode_columns(raw, Reading)
    assert cols.rows.tolist() == [0, 2]
    assert cols.fields["machine_id"].tolist() == ["p1", "p3"]
    assert len(bad) == 1
    row, row_json, error = bad[0]
    assert row == 1 and isinstance(error, EventDecodeError)
    assert error.field == field
    assert str(error).startswith(f"field `{field}`: ") and reason in str(error), str(error)
    sent = json.loads(row_json)  # NaN/Infinity tokens: what JavaScript and Python read back
    expected = {
        "type": "reading",
        "v": 1,
        "ts": "2026-01-01T00:00:00.000001Z",
        "machine_id": "p2",
        "sensor": "vib",
        "value": 2.0,
        "unit": "",
        column: shown,
    }
    if column == "value" and value is not None and math.isnan(value):
        assert math.isnan(sent.pop("value"))
        expected.pop("value")
    assert sent == expected


def test_invalid_utf8_is_a_bad_row_in_plain_and_dictionary_columns() -> None:
    offsets = pa.py_buffer(np.array([0, 2, 4, 6], np.int32).tobytes())
    broken = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"p1\xff\xfep3")])
    raw = _record(
        {"ts": _ts(T0, T0, T0), "machine_id": broken, "sensor": ["s"] * 3, "value": [1.0] * 3}
    )
    cols, bad = decode_columns(raw, Reading)
    assert cols.fields["machine_id"].tolist() == ["p1", "p3"]
    assert [(row, err.field, str(err)) for row, _, err in bad] == [
        (1, "machine_id", "field `machine_id`: invalid UTF-8")
    ]
    assert json.loads(bad[0][1])["machine_id"] == "\\xff\\xfe"
    as_dictionary = pa.DictionaryArray.from_arrays(pa.array([2, 0, 1, 2], pa.int8()), broken)
    raw = _record(
        {"ts": _ts(T0, T0, T0, T0), "machine_id": as_dictionary, "sensor": ["s"] * 4,
         "value": [1.0] * 4}
    )  # fmt: skip
    cols, bad = decode_columns(raw, Reading)
    assert cols.rows.tolist() == [0, 1, 3] and [b[0] for b in bad] == [2]


# --- bad records ----------------------------------------------------------------------------

GOOD = {"ts": _ts(T0), "machine_id": ["p1"], "sensor": ["vib"], "value": [1.0]}


def _bad_records() -> list[tuple[str, bytes, str, str]]:
    good = _record(GOOD)
    naive = {**GOOD, "ts": pa.array([T0], pa.timestamp("us"))}
    many = {k: (v if k != "ts" else _ts(T0)) for k, v in GOOD.items()}
    return [
        ("missing column", _record({k: v for k, v in GOOD.items() if k != "sensor"}), "sensor",
         "field `sensor`: missing"),
        ("unknown column", _record({**GOOD, "colour": ["red"]}), "colour",
         "field `colour`: not in the contract"),
        ("mistyped column", _record({**GOOD, "value": ["hot"]}), "value",
         "field `value`: expected a number column, got string"),
        ("naive timestamps", _record(naive), "ts",
         "field `ts`: expected a timestamp-with-timezone column, got timestamp[us]"),
        ("another event type", _record(GOOD, {"type": "alert", "v": "1"}), "type",
         "field `type`: schema metadata names 'alert', expected 'reading'"),
        ("no metadata", _record(GOOD, None), "type", "schema metadata names ''"),
        ("another version", _record(GOOD, {"type": "reading", "v": "2"}), "v",
         "field `v`: unsupported schema version (this build reads 1), got '2'"),
        ("empty", _record({k: v[:0] for k, v in many.items()}), "$",
         "field `$`: empty batch, expected at least one row"),
        ("truncated", good[: len(good) - 9], "$", "field `$`: not an Arrow IPC stream"),
        ("garbage", IPC_MARKER + b"\x00" * 3 + b"garbage", "$", "field `$`: not an Arrow IPC"),
        ("duplicate column",
         _ipc(pa.RecordBatch.from_arrays(
             [_ts(T0), pa.array(["p1"]), pa.array(["s"]), pa.array([1.0]), pa.array([2.0])],
             names=["ts", "machine_id", "sensor", "value", "value"], metadata=META)),
         "value", "field `value`: 2 columns"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [pytest.param(raw, field, reason, id=name) for name, raw, field, reason in _bad_records()],
)
def test_a_bad_record_is_one_dead_letter_of_the_whole_record(
    raw: bytes, field: str, reason: str
) -> None:
    cols, bad = decode_columns(raw, Reading)
    assert len(cols) == 0
    assert len(bad) == 1
    row, carried, error = bad[0]
    assert (row, carried, error.field) == (-1, raw, field)
    assert reason in str(error), str(error)


def test_too_many_rows_is_a_bad_record() -> None:
    raw = _record({**GOOD, "ts": _ts(T0, T0), "machine_id": ["a", "b"], "sensor": ["s", "s"],
                   "value": [1.0, 2.0]})  # fmt: skip
    assert len(decode_columns(raw, Reading, max_rows=2)[0]) == 2
    _, bad = decode_columns(raw, Reading, max_rows=1)
    assert [(b[0], b[2].field, str(b[2])) for b in bad] == [
        (-1, "payload", "field `payload`: 2 rows exceeds max_batch_rows=1")
    ]


def test_a_topic_of_events_that_cannot_be_columnar_refuses_a_columnar_record() -> None:
    _, bad = decode_columns(_record(GOOD), PassRequest | PassActual)
    assert str(bad[0][2]) == (
        "field `type`: schema metadata names 'reading', expected 'pass_actual' or 'pass_request'"
    )


# --- the JSON contract is the reference -----------------------------------------------------

cells = {
    "ts": st.one_of(
        st.none(),
        st.integers(EARLIEST_US - 10, LATEST_US + 10),
        st.integers(-(2**63), 2**63 - 1),
    ),
    "machine_id": st.one_of(st.none(), st.text(max_size=3), st.text(min_size=199, max_size=202)),
    "sensor": st.one_of(st.none(), st.sampled_from(["", "vib", "s" * 200, "s" * 201])),
    "value": st.one_of(
        st.none(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([1e300, -1e300, 1.0000000000000002e300, 0.0, -0.0]),
    ),
    "unit": st.one_of(st.none(), st.text(max_size=4)),
}


def _json_verdict(row: dict[str, Any]) -> EventDecodeError | None:
    """The JSON path's verdict on the same row, fields in the same order (plus the event-time
    range rule, which the JSON path gets from the decode work of issue 7)."""
    us, value = row["ts"], row["value"]
    if us is not None and not EARLIEST_US <= us < LATEST_US:
        return EventDecodeError("out of range", "ts")
    if value is not None and math.isnan(value):
        value = "NaN"
    parts = [
        '"type":"reading"',
        '"ts":' + ("null" if us is None else json.dumps(_iso(us))),
        '"machine_id":' + json.dumps(row["machine_id"]),
        '"sensor":' + json.dumps(row["sensor"]),
        # ±inf as 1e999, which JSON parsers read as infinity; NaN has no JSON spelling: a
        # string is refused at the same field
        '"value":' + ("null" if value is None else json.dumps(value).replace("Infinity", "1e999")),
        '"unit":' + json.dumps(row["unit"]),
    ]
    try:
        decode_event(("{" + ",".join(parts) + "}").encode(), Reading)
    except EventDecodeError as exc:
        return exc
    return None


def _iso(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries(cells), min_size=1, max_size=12), st.booleans())
def test_columnar_validation_accepts_exactly_the_rows_the_json_contract_accepts(
    rows: list[dict[str, Any]], dictionary: bool
) -> None:
    def strings(name: str) -> pa.Array:
        array = pa.array([r[name] for r in rows], pa.string())
        return array.dictionary_encode() if dictionary else array

    raw = _record(
        {
            "ts": _ts(*(r["ts"] for r in rows)),
            "machine_id": strings("machine_id"),
            "sensor": strings("sensor"),
            "value": pa.array([r["value"] for r in rows], pa.float64()),
            "unit": strings("unit"),
        }
    )
    cols, bad = decode_columns(raw, Reading)
    verdicts = [_json_verdict(r) for r in rows]
    assert cols.rows.tolist() == [i for i, v in enumerate(verdicts) if v is None]
    # Same rows refused, for a problem in the same field (the first one, in field order).
    assert [(i, error.field) for i, _, error in bad] == [
        (i, v.field) for i, v in enumerate(verdicts) if v is not None
    ]
    good = [rows[i] for i in cols.rows.tolist()]
    assert cols.ts_us.tolist() == [r["ts"] for r in good]
    assert cols.fields["machine_id"].tolist() == [r["machine_id"] for r in good]
    assert cols.fields["value"].tolist() == [r["value"] for r in good]


# --- fuzz: never raises, every row exactly once ---------------------------------------------


def _valid_record(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_columns(
        Reading,
        T0 + rng.integers(0, 10**9, n),
        {
            "machine_id": [f"m{i}" for i in rng.integers(0, 5, n)],
            "sensor": ["vib"] * n,
            "value": rng.normal(size=n),
            "unit": ["mm/s"] * n,
        },
    )


def _accounted(raw: bytes, n_rows: int | None) -> None:
    cols, bad = decode_columns(raw, Reading)
    whole = [b for b in bad if b[0] == -1]
    if whole:
        assert len(bad) == 1 and len(cols) == 0 and whole[0][1] == raw
        assert isinstance(whole[0][2], EventDecodeError)
        return
    seen = Counter(cols.rows.tolist()) + Counter(b[0] for b in bad)
    assert all(count == 1 for count in seen.values())
    if n_rows is not None:
        assert sorted(seen) == list(range(n_rows))
    for _, row_json, error in bad:
        assert isinstance(error, EventDecodeError) and error.field
        json.loads(row_json)
    cols.events()  # the good rows materialise


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes_after_the_marker(tail: bytes) -> None:
    _accounted(IPC_MARKER + tail, None)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_fuzz_flipped_and_truncated_valid_records(
    n: int, seed: int, flips: list[tuple[int, int]], cut: int | None
) -> None:
    raw = bytearray(_valid_record(n, seed))
    for position, byte in flips:
        raw[position % len(raw)] = byte
    if cut is not None:
        raw = raw[: cut % len(raw)]
    _accounted(bytes(raw), n if not flips and cut is None else None)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries(cells), min_size=1, max_size=12), st.booleans())
def test_fuzz_hostile_values_are_all_accounted_for(rows: list[dict[str, Any]], large: bool) -> None:
    text = pa.large_string() if large else pa.string()
    raw = _record(
        {
            "ts": _ts(*(r["ts"] for r in rows)),
            "machine_id": pa.array([r["machine_id"] for r in rows], text),
            "sensor": pa.array([r["sensor"] for r in rows], text),
            "value": pa.array([r["value"] for r in rows], pa.float64()),
        }
    )
    _accounted(raw, len(rows))


# --- packing per partition ------------------------------------------------------------------


def test_pack_columns_puts_each_row_where_its_key_hashes_and_keeps_order() -> None:
    n = 5_000
    rng = np.random.default_rng(3)
    machines = [f"m{i:03d}" for i in range(37)]
    raw = encode_columns(
        Reading,
        T0 + np.arange(n),
        {"machine_id": [machines[i] for i in rng.integers(0, 37, n)], "sensor": ["s"] * n,
         "value": np.arange(n, dtype=float)},
    )  # fmt: skip
    cols, _ = decode_columns(raw, Reading)
    records = pack_columns("fleet.readings", cols, "machine_id", 4, max_rows=700)
    seen: list[float] = []
    for record in records:
        assert record.partition is not None and record.key is not None
        part, bad = decode_columns(record.value, Reading)
        assert bad == [] and 0 < len(part) <= 700
        expected = {partition_for(m.encode(), 4) for m in part.fields["machine_id"].tolist()}
        assert expected == {record.partition}
        assert partition_for(record.key, 4) == record.partition
        values = part.fields["value"].tolist()
        assert values == sorted(values)  # row order kept within the partition
        seen.extend(values)
    assert sorted(seen) == list(map(float, range(n)))
    # Records of one partition follow each other in row order.
    by_partition: dict[int, list[float]] = {}
    for record in records:
        assert record.partition is not None
        first = decode_columns(record.value, Reading)[0].fields["value"][0]
        by_partition.setdefault(record.partition, []).append(first)
    assert all(firsts == sorted(firsts) for firsts in by_partition.values())


def test_encoding_refuses_mixed_types_and_unknown_fields() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_events([])
    with pytest.raises(ValueError, match="field `colour`: not in the contract"):
        encode_columns(Reading, [T0], {"machine_id": ["a"], "sensor": ["s"], "value": [1.0],
                                       "colour": ["red"]})  # fmt: skip
    with pytest.raises(ValueError, match="cross-field checks"):
        encode_columns(PassRequest, [T0], {})
    assert msgspec.json.decode(encode(Reading(ts=EPOCH, machine_id="a", sensor="s", value=1.0)))
