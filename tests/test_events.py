"""The event contract: round trips, strictness, and errors that name field and value."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from wearwatch.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    EventDecodeError,
    PassRequest,
    Reading,
    decode_batch,
    decode_event,
    encode,
    utc,
)


def test_every_event_type_has_its_own_tag_and_carries_the_schema_version() -> None:
    tags = [t.__struct_config__.tag for t in EVENT_TYPES]
    assert len(tags) == len(set(tags))
    reading = Reading(ts=utc(0.0), machine_id="p1", sensor="vib", value=2.5, unit="mm/s")
    raw = encode(reading)
    assert msgspec.json.decode(raw)["v"] == SCHEMA_VERSION
    assert msgspec.json.decode(raw)["type"] == "reading"
    assert decode_event(raw, Reading) == reading


def test_timestamps_are_timezone_aware_and_compare_across_offsets() -> None:
    raw = (
        b'{"type":"reading","ts":"2026-01-01T02:00:00+02:00","machine_id":"p1",'
        b'"sensor":"vib","value":1}'
    )
    event = decode_event(raw, Reading)
    assert event.ts == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (
            b'{"type":"reading","ts":"2026-01-01T00:00:00Z","machine_id":"p1","sensor":"v",'
            b'"value":"x"}',
            "value",
            "field `value`: expected `float`, got 'x'",
        ),
        (
            b'{"type":"reading","ts":"2026-01-01T00:00:00Z","machine_id":"","sensor":"v",'
            b'"value":1}',
            "machine_id",
            "field `machine_id`",
        ),
        (
            b'{"type":"reading","ts":"2026-01-01T00:00:00Z","machine_id":"p","sensor":"v",'
            b'"value":1,"colour":"red"}',
            "colour",
            "field `colour`: not in the contract",
        ),
        (
            b'{"type":"pass_actual","ts":"2026-01-01T00:00:00Z","slab_id":"s","pass_no":1,'
            b'"force_kn":1}',
            "type",
            "field `type`",
        ),
        (
            b'{"type":"reading","ts":"yesterday","machine_id":"p","sensor":"v","value":1}',
            "ts",
            "got 'yesterday'",
        ),
    ],
)
def test_decode_errors_name_the_field_and_the_value(raw: bytes, field: str, message: str) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode_event(raw, Reading)
    assert info.value.field == field
    assert message in str(info.value)


def test_batch_salvages_good_events_and_reports_each_bad_one() -> None:
    good = [
        Reading(ts=utc(float(i)), machine_id="p1", sensor="vib", value=float(i)) for i in range(3)
    ]
    bad = b'{"type":"reading","ts":"2026-01-01T00:00:00Z","machine_id":"p1","sensor":"v"}'
    raw = (
        b"[" + encode(good[0]) + b"," + bad + b"," + encode(good[1]) + b"," + encode(good[2]) + b"]"
    )
    events, errors = decode_batch(raw, Reading)
    assert events == good
    assert [(item, err.field) for item, err in errors] == [(bad, "value")]


def test_pass_request_rejects_non_finite_numbers() -> None:
    raw = (
        b'{"type":"pass_request","ts":"2026-01-01T00:00:00Z","slab_id":"S1","pass_no":1,'
        b'"line":"structural","width_mm":1500,"h_in_mm":230,"h_out_mm":1e400,'
        b'"temp_c":1150,"speed_mps":2,"roll_radius_mm":550,"baseline_force_kn":20000,'
        b'"rating_force_kn":60000}'
    )
    with pytest.raises(EventDecodeError, match="field `h_out_mm`: expected a finite number"):
        decode_event(raw, PassRequest)
