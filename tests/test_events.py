"""The event contract: round trips, strictness, and errors that name field and value."""

from __future__ import annotations

import contextlib
import datetime as dt

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wearwatch.events import (
    EARLIEST,
    EVENT_TYPES,
    LATEST,
    MAX_NESTING,
    SCHEMA_VERSION,
    EventDecodeError,
    PassRequest,
    Reading,
    ReadingTotals,
    TwinCommand,
    _nesting,
    decode_batch,
    decode_event,
    decode_record,
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


# --- what msgspec alone lets through, or chokes on (issue 7) -----------------------------

VALID = (
    b'{"type":"reading","ts":"2026-01-01T00:00:00Z","v":1,"machine_id":"p1","sensor":"vib",'
    b'"value":1.0,"unit":""}'
)


def _refusal(raw: bytes, kind: type = Reading) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as info:
        decode_event(raw, kind)
    return info.value


def test_duplicate_keys_are_refused_with_the_path_of_the_key_even_nested() -> None:
    command = (
        b'{"type":"twin_command","ts":"2026-01-01T00:00:00Z","command":"shock",'
        b'"args":{"wear":{"stand":1,"stand":2}}}'
    )
    error = _refusal(command, TwinCommand)
    assert (str(error), error.field) == (
        "field `args.wear.stand`: duplicate key, got 1 and 2",
        "args.wear.stand",
    )
    escaped = VALID.replace(b'"unit":""', b'"unit":"","\\u0075nit":"mm"')
    assert str(_refusal(escaped)) == "field `unit`: duplicate key, got '' and 'mm'"


def test_non_canonical_bytes_without_duplicates_decode() -> None:
    spaced = VALID.replace(b",", b" , ").replace(b'"unit":""', b'"unit":"\\u00b0C"')
    assert decode_event(spaced, Reading).unit == "°C"


def test_nesting_is_bounded_even_where_the_contract_allows_any_value() -> None:
    def command(depth: int) -> bytes:
        return (
            b'{"type":"twin_command","ts":"2026-01-01T00:00:00Z","command":"c","args":{"a":'
            + b"[" * depth
            + b"]" * depth
            + b"}}"
        )

    # 2 levels of objects + 62 arrays = 64, the bound: accepted.
    nested: list = []
    for _ in range(61):
        nested = [nested]
    assert decode_event(command(62), TwinCommand).args == {"a": nested}
    assert str(_refusal(command(63), TwinCommand)) == (
        "field `$`: nesting deeper than 64 levels, got 65"
    )
    assert str(_refusal(command(10_000), TwinCommand)) == (
        "field `$`: nesting deeper than 64 levels, got 10002"
    )


@given(
    st.integers(0, 80),
    st.lists(st.sampled_from(["[", "]", "{", "}", '"', "\\", "a", ",", ":"]), max_size=90),
)
def test_nesting_counts_brackets_outside_strings_like_a_parser_does(
    opened: int, chars: list[str]
) -> None:
    raw = ("[" * opened + "".join(chars)).encode()
    # Brute force: walk the characters, skipping string literals (with their escapes).
    depth = deepest = 0
    in_string = escaped = False
    for char in raw.decode():
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if in_string:
        return  # an unterminated string: only parsable input has a nesting depth
    bound = _nesting(raw)
    # Exact whenever either exceeds the bound; an upper bound (a bracket count) otherwise.
    if bound > MAX_NESTING or deepest > MAX_NESTING:
        assert bound == deepest
    else:
        assert bound >= deepest


@pytest.mark.parametrize(
    ("ts", "shown"),
    [
        ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+14:00"),
        ("9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59-14:00"),
        ("2200-01-01T00:00:00Z", "2200-01-01T00:00:00Z"),
        ("1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z"),
    ],
)
def test_timestamps_outside_the_supported_range_are_refused(ts: str, shown: str) -> None:
    error = _refusal(VALID.replace(b"2026-01-01T00:00:00Z", ts.encode()))
    assert (str(error), error.field) == (
        "field `ts`: expected a time in [1970-01-01T00:00:00Z, 2200-01-01T00:00:00Z), "
        f"got {shown!r}",
        "ts",
    )


def test_the_range_bounds_are_inclusive_below_and_exclusive_above() -> None:
    low = VALID.replace(b"2026-01-01T00:00:00Z", b"1970-01-01T00:00:00Z")
    high = VALID.replace(b"2026-01-01T00:00:00Z", b"2199-12-31T23:59:59.999999Z")
    assert decode_event(low, Reading).ts == EARLIEST
    assert decode_event(high, Reading).ts < LATEST


def test_other_timestamp_fields_are_range_checked_too() -> None:
    totals = (
        b'{"type":"reading_totals","ts":"2026-01-01T00:00:00Z","key":"k",'
        b'"first_ts":"0001-01-01T00:00:00+01:00","count":1,"total":1.0}'
    )
    assert _refusal(totals, ReadingTotals).field == "first_ts"
    events, bad = decode_batch(b"[" + totals + b"]", ReadingTotals)
    assert events == [] and [(raw, err.field) for raw, err in bad] == [(totals, "first_ts")]


def test_each_event_of_a_batch_keeps_the_bytes_it_arrived_as() -> None:
    spaced = VALID.replace(b",", b", ")
    record = b"[" + VALID + b" ,\n" + spaced + b"]"
    decoded = decode_record(record, Reading)
    assert [decoded.raw_event(0), decoded.raw_event(1)] == [VALID, spaced]
    salvaged = decode_record(b"[" + spaced + b',{"x":1},' + VALID + b"]", Reading)
    assert [salvaged.raw_event(0), salvaged.raw_event(1)] == [spaced, VALID]
    assert decode_record(VALID, Reading).raw_event(0) == VALID


@given(st.binary(max_size=200) | st.builds(lambda b: b"[" + b, st.binary(max_size=200)))
def test_decoding_any_bytes_never_raises_and_accounts_for_every_byte_string(raw: bytes) -> None:
    decoded = decode_record(raw, Reading)
    # Everything refused is the record itself or one of its items, never re-encoded bytes.
    for bad, error in decoded.rejected:
        assert bad == raw or bad in raw
        assert isinstance(error, EventDecodeError) and error.field
    for index in range(len(decoded.events)):
        assert decoded.raw_event(index) in raw
    with contextlib.suppress(EventDecodeError):
        decode_event(raw, Reading)
