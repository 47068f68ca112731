"""Columnar records: a log record carrying one Arrow IPC record batch of one event type.

A fleet streams millions of readings per second; decoding them one JSON object at a time and
touching each in Python caps a pipeline far below what the log carries. A columnar record is an
Arrow IPC *stream* (it starts with the continuation marker ``b"\\xff\\xff\\xff\\xff"``, which no
JSON text can, so the two kinds of record are never mistaken for each other) holding one record
batch whose schema mirrors the event's contract in :mod:`wearwatch.events`:

- schema metadata ``{"type": <the event's tag>, "v": "1"}``;
- ``ts``: ``timestamp[us, tz=UTC]`` (any unit and any zone are read: Arrow stores UTC
  instants; a timestamp without a zone is refused, as JSON's naive times are);
- one column per other field: strings as ``string`` or ``dictionary<int, string>`` (the encoder
  writes dictionaries: ~19 bytes per reading against ~120 as JSON), floats as ``float64`` (any
  integer or float column is read), integers as ``int64``, booleans as ``bool``. A field with a
  default may be left out; unknown columns are refused.

Validation is vectorised (numpy, ``pyarrow.compute``) and takes every rule from the msgspec
contract (id lengths, number bounds) plus the event-time range, so both encodings of an event
accept the same values. A bad *row* (null, NaN/inf, time out of range, empty or too long id,
invalid UTF-8) becomes one dead letter carrying that row as JSON and a reason naming the field
and the value; a bad *record* (not Arrow, damaged, missing or mistyped column, wrong type tag,
no rows, too many rows) becomes one dead letter carrying the whole record. Nothing raises.

Only event types made of flat fields (times, strings, numbers, booleans) without cross-field
checks (``__post_init__``) travel as columns; :class:`~wearwatch.events.Reading` does.

>>> from wearwatch.events import Reading, utc
>>> raw = encode_events([Reading(ts=utc(1.5), machine_id="p1", sensor="vib", value=2.0)])
>>> raw[:4] == IPC_MARKER
True
>>> cols, bad = decode_columns(raw, Reading)
>>> cols.ts_us.tolist(), cols.fields["machine_id"].tolist(), cols.fields["value"].tolist(), bad
([1500000], ['p1'], [2.0], [])
>>> cols.events() == [Reading(ts=utc(1.5), machine_id="p1", sensor="vib", value=2.0)]
True

This module sits beside the event contract and imports only it and the log's interface
(:mod:`wearwatch.bus.base`), so twins and plant adapters write columnar records without
importing the runtime.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import starmap
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc

from wearwatch.bus.base import OutRecord, partition_for
from wearwatch.events import EARLIEST, LATEST, SCHEMA_VERSION, Event, EventDecodeError, encode

#: Every Arrow IPC stream message starts with this continuation marker; JSON text never does.
IPC_MARKER = b"\xff\xff\xff\xff"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Event times must fall in the contract's [EARLIEST, LATEST), here in µs since the epoch.
EARLIEST_US = (EARLIEST - _EPOCH) // timedelta(microseconds=1)
LATEST_US = (LATEST - _EPOCH) // timedelta(microseconds=1)
#: Default cap on rows per record (the worker passes its own).
MAX_ROWS = 1_000_000

#: µs per unit of an Arrow timestamp (None: nanoseconds, divided instead).
_UNIT_US: dict[str, int | None] = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def is_columnar(raw: bytes) -> bool:
    """Whether a record is an Arrow IPC stream (otherwise it is JSON).

    >>> is_columnar(IPC_MARKER + b"..."), is_columnar(b'{"type":"reading"}')
    (True, False)
    """
    return raw[:4] == IPC_MARKER


# --- the columnar layout of an event type ---------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # "time" | "str" | "float" | "int" | "bool"
    required: bool
    default: Any = None
    min_length: int | None = None
    max_length: int | None = None
    bounds: tuple[tuple[str, float], ...] = ()  # (operator, bound): (">=", -1e300), ...


@dataclass(frozen=True)
class _Layout:
    """The columns of one event type, read from its msgspec contract (``ts`` first)."""

    cls: type
    tag: str
    fields: tuple[_Field, ...]

    def get(self, name: str) -> _Field | None:
        return next((f for f in self.fields if f.name == name), None)


_KINDS = {
    msgspec.inspect.StrType: "str",
    msgspec.inspect.FloatType: "float",
    msgspec.inspect.IntType: "int",
    msgspec.inspect.BoolType: "bool",
}
_DTYPES: dict[str, Any] = {"str": object, "float": np.float64, "int": np.int64, "bool": np.bool_}


@cache
def _layout(cls: type) -> _Layout:
    info = msgspec.inspect.type_info(cls)
    if not isinstance(info, msgspec.inspect.StructType) or not isinstance(info.tag, str):
        raise ValueError(f"event type {cls!r}: not a tagged event struct")
    if any("__post_init__" in vars(base) for base in cls.__mro__):
        raise ValueError(f"event type {info.tag!r}: has cross-field checks, cannot be columnar")
    fields = [_Field("ts", "time", True)]
    for f in info.fields:
        if f.name in ("ts", "v"):
            continue
        t = f.type
        kind = _KINDS.get(type(t))
        if kind is None or getattr(t, "pattern", None) is not None:
            raise ValueError(f"event type {info.tag!r}: field `{f.name}` ({t}) cannot be a column")
        default = None if f.default is msgspec.NODEFAULT else f.default
        if kind == "str":
            fields.append(_Field(f.name, kind, f.required, default, t.min_length, t.max_length))
            continue
        bounds: tuple[tuple[str, float], ...] = ()
        if kind != "bool":
            limits = ((">", t.gt), (">=", t.ge), ("<", t.lt), ("<=", t.le))
            bounds = tuple((op, b) for op, b in limits if b is not None)
        fields.append(_Field(f.name, kind, f.required, default, bounds=bounds))
    return _Layout(cls, info.tag, tuple(fields))


def column_kinds(event_type: Any) -> dict[str, str] | None:
    """What each field of ``event_type`` is as a column ("time", "str", "float", "int",
    "bool"), or None when the type cannot travel as columns.

    >>> from wearwatch.events import PassActual, Reading
    >>> column_kinds(Reading)
    {'ts': 'time', 'machine_id': 'str', 'sensor': 'str', 'value': 'float', 'unit': 'str'}
    >>> column_kinds(Reading | PassActual) is None
    True
    """
    try:
        return {f.name: f.kind for f in _layout(event_type).fields}
    except (ValueError, TypeError):
        return None


@cache
def _accepted(event_type: Any) -> dict[str, type]:
    """Tag → event class, for an event class or a union of them."""
    info = msgspec.inspect.type_info(event_type)
    structs = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    return {
        t.tag: t.cls
        for t in structs
        if isinstance(t, msgspec.inspect.StructType) and isinstance(t.tag, str)
    }


@cache
def _constructor(cls: type) -> Callable[..., Event]:
    """``cls`` called with its columns' values positionally (event structs take keywords
    only; building a dict per row would cost 5x more). Generated like ``dataclasses`` does,
    from the contract's own field names."""
    names = [f.name for f in _layout(cls).fields]
    assert all(name.isidentifier() for name in names)
    params = ", ".join(names)
    keywords = ", ".join(f"{name}={name}" for name in names)
    return eval(f"lambda {params}: cls({keywords})", {"cls": cls})


# --- decoded columns ------------------------------------------------------------------------


class FieldArrays(Mapping[str, np.ndarray]):
    """The per-field arrays of :class:`Columns`. A string field is held as dictionary codes
    and becomes an object array of ``str`` only when first read (most consumers group by the
    codes and never need the strings)."""

    __slots__ = ("_arrays", "_codes", "_names")

    def __init__(
        self,
        names: Sequence[str],
        arrays: dict[str, np.ndarray],
        codes: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self._names = tuple(names)
        self._arrays = arrays
        self._codes = codes

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None:
            codes, categories = self._codes[name]
            array = self._arrays[name] = categories[codes]
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def take(self, index: np.ndarray) -> FieldArrays:
        return FieldArrays(
            self._names,
            {name: a[index] for name, a in self._arrays.items() if name not in self._codes},
            {name: (c[index], cats) for name, (c, cats) in self._codes.items()},
        )


@dataclass(frozen=True)
class Columns:
    """The valid rows of a columnar record, as numpy arrays.

    ``ts_us``: event times, int64 µs since the epoch (UTC). ``fields``: one array per other
    field of the event — strings as object arrays of ``str`` (built on first access), floats
    float64, integers int64, booleans bool. ``codes``: each string field in dictionary form
    ``(codes, categories)``: int32 codes into an object array of distinct strings, with
    ``categories[codes]`` equal to ``fields[name]``; group by the codes rather than hashing
    strings. ``rows``: each row's index in the original batch (bad rows are absent).
    """

    event_type: type
    ts_us: np.ndarray
    fields: FieldArrays
    rows: np.ndarray

    @property
    def codes(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return self.fields._codes

    def __len__(self) -> int:
        return len(self.ts_us)

    def take(self, mask_or_index: np.ndarray) -> Columns:
        """The rows a boolean mask or an index array selects, in that order."""
        return Columns(
            self.event_type,
            self.ts_us[mask_or_index],
            self.fields.take(mask_or_index),
            self.rows[mask_or_index],
        )

    def events(self) -> list[Event]:
        """Every row as an event struct (the slow path, ~1 µs a row)."""
        # Float seconds → datetime rounds to the nearest µs: exact for every valid time.
        times = [datetime.fromtimestamp(s, UTC) for s in (self.ts_us / 1e6).tolist()]
        columns = [times, *(values.tolist() for values in self.fields.values())]
        return list(starmap(_constructor(self.event_type), zip(*columns, strict=True)))

    def row_bytes(self, i: int) -> bytes:
        """Row ``i`` as the JSON bytes of its event (dead letters of late or failed rows)."""
        return encode(self.take(np.array([i])).events()[0])


#: A bad row: its index in the batch (-1: the whole record), its bytes (the row as JSON, or the
#: whole record) and the error naming the field and the value.
BadRow = tuple[int, bytes, EventDecodeError]


def _empty(cls: type) -> Columns:
    try:
        layout = _layout(cls)
    except ValueError:  # an input type that cannot be columnar: no columns at all
        return Columns(cls, np.empty(0, np.int64), FieldArrays((), {}, {}), np.empty(0, np.int64))
    arrays = {f.name: np.empty(0, dtype=_DTYPES[f.kind]) for f in layout.fields[1:]}
    codes = {
        f.name: (np.empty(0, np.int32), np.empty(0, object))
        for f in layout.fields[1:]
        if f.kind == "str"
    }
    names = [f.name for f in layout.fields[1:]]
    empty = np.empty(0, np.int64)
    return Columns(cls, empty, FieldArrays(names, arrays, codes), empty)


# --- decoding -------------------------------------------------------------------------------


def decode_columns(
    raw: bytes, event_type: Any, max_rows: int = MAX_ROWS
) -> tuple[Columns, list[BadRow]]:
    """Decode and validate a columnar record; never raises.

    Returns the valid rows and, for each bad row, ``(row index, row as JSON, error)``; a record
    that cannot be read or whose schema is wrong is one bad "row" ``-1`` carrying the whole
    record. ``event_type`` is an event class or a union of them (the record's ``type``
    metadata picks one).
    """
    accepted = _accepted(event_type)
    cls = next(iter(accepted.values()))
    try:
        cls, batch = _read(raw, accepted, max_rows)
        return _validate(_layout(cls), batch)
    except EventDecodeError as exc:
        return _empty(cls), [(-1, raw, exc)]
    except Exception as exc:  # whatever else a hostile stream provokes: never past here
        error = EventDecodeError(f"field `$`: unreadable columnar record ({_first_line(exc)})", "$")
        return _empty(cls), [(-1, raw, error)]


def _read(raw: bytes, accepted: dict[str, type], max_rows: int) -> tuple[type, pa.RecordBatch]:
    """The record's rows as one batch, and their event class; the schema checked."""
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(raw))
        batches = list(reader)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise EventDecodeError(
            f"field `$`: not an Arrow IPC stream ({_first_line(exc)})", "$"
        ) from None
    metadata = reader.schema.metadata or {}
    tag = metadata.get(b"type", b"").decode(errors="replace")
    if tag not in accepted:
        expected = " or ".join(repr(t) for t in sorted(accepted))
        raise EventDecodeError(
            f"field `type`: schema metadata names {tag!r}, expected {expected}", "type"
        )
    version = metadata.get(b"v", b"").decode(errors="replace")
    if version != str(SCHEMA_VERSION):
        raise EventDecodeError(
            f"field `v`: unsupported schema version (this build reads {SCHEMA_VERSION}), "
            f"got {version!r}",
            "v",
        )
    rows = sum(b.num_rows for b in batches)
    if rows > max_rows:
        raise EventDecodeError(
            f"field `payload`: {rows} rows exceeds max_batch_rows={max_rows}", "payload"
        )
    if rows == 0:
        raise EventDecodeError("field `$`: empty batch, expected at least one row", "$")
    cls = accepted[tag]
    _check_schema(_layout(cls), reader.schema)
    if len(batches) == 1:
        return cls, batches[0]
    return cls, pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _check_schema(layout: _Layout, schema: pa.Schema) -> None:
    names = schema.names
    for name in names:
        if layout.get(name) is None:
            raise EventDecodeError(f"field `{name}`: not in the contract", name)
        if names.count(name) > 1:
            raise EventDecodeError(f"field `{name}`: {names.count(name)} columns", name)
    for f in layout.fields:
        if f.name not in names:
            if f.required:
                raise EventDecodeError(f"field `{f.name}`: missing", f.name)
            continue
        t = schema.field(f.name).type
        if not _fits(f.kind, t):
            raise EventDecodeError(
                f"field `{f.name}`: expected {_EXPECTED[f.kind]} column, got {t}", f.name
            )


_EXPECTED = {
    "time": "a timestamp-with-timezone",
    "str": "a string",
    "float": "a number",
    "int": "an integer",
    "bool": "a boolean",
}


def _fits(kind: str, t: pa.DataType) -> bool:
    if kind == "time":
        return pa.types.is_timestamp(t) and t.tz is not None
    if kind == "str":
        if pa.types.is_dictionary(t):
            return pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if kind == "float":
        return pa.types.is_floating(t) or pa.types.is_integer(t)
    if kind == "int":
        return pa.types.is_integer(t)
    return pa.types.is_boolean(t)


class _Rows:
    """Bad rows found column by column; a row's reason is the first problem found."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.reasons: dict[int, EventDecodeError] = {}

    def flag(self, mask: np.ndarray, reason: Callable[[int], str], name: str) -> None:
        """Rows in ``mask`` are bad; ``reason(row)`` says why (field ``name``)."""
        new = mask & ~self.bad
        if not new.any():
            return
        self.bad |= new
        for i in np.flatnonzero(new).tolist():
            self.reasons[i] = EventDecodeError(f"field `{name}`: {reason(i)}", name)


#: Per field, the value a row was sent with (computed for bad rows only).
_Sent = Callable[[int], Any]


def _validate(layout: _Layout, batch: pa.RecordBatch) -> tuple[Columns, list[BadRow]]:
    n = batch.num_rows
    rows = _Rows(n)
    repaired = _repair(layout, batch)
    sent: dict[str, _Sent] = {}
    arrays: dict[str, np.ndarray] = {}
    codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ts_us = np.empty(0, np.int64)
    for f in layout.fields:
        if f.name not in batch.schema.names:  # a field with a default, left out
            if f.kind == "str":
                codes[f.name] = (np.zeros(n, np.int32), np.array([f.default], dtype=object))
            else:
                arrays[f.name] = np.full(n, f.default, dtype=_DTYPES[f.kind])
            sent[f.name] = lambda i, d=f.default: d
            continue
        column, invalid_utf8 = repaired.get(f.name, (batch.column(f.name), None))
        if f.kind == "time":
            ts_us, sent["ts"] = _times(column, rows)
        elif f.kind == "str":
            c, cats, sent[f.name] = _strings(column, f, rows, invalid_utf8)
            codes[f.name] = (c, cats)
        else:
            arrays[f.name], sent[f.name] = _numbers(column, f, rows)
    names = [f.name for f in layout.fields[1:]]
    cols = Columns(layout.cls, ts_us, FieldArrays(names, arrays, codes), np.arange(n))
    if not rows.bad.any():
        return cols, []
    bad = [
        (i, _row_json(layout, sent, i), rows.reasons[i]) for i in np.flatnonzero(rows.bad).tolist()
    ]
    return cols.take(~rows.bad), bad


def _repair(layout: _Layout, batch: pa.RecordBatch) -> dict[str, tuple[pa.Array, np.ndarray]]:
    """Validate an untrusted batch fully (compute kernels trust their input).

    A string column whose only fault is invalid UTF-8 is repaired: returned per such column,
    the column with its text decoded leniently and the mask of invalid entries (of its
    dictionary, if it has one), so only the rows using them go bad. Any other damage makes
    the whole record bad.
    """
    try:
        batch.validate(full=True)
        return {}
    except pa.ArrowInvalid:
        pass
    repaired: dict[str, tuple[pa.Array, np.ndarray]] = {}
    for name in batch.schema.names:
        column = batch.column(name)
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid as exc:
            damage = _first_line(exc)
        f = layout.get(name)
        if f is not None and f.kind == "str":
            try:
                repaired[name] = _repair_utf8(column)
                continue
            except pa.ArrowException:
                pass
        raise EventDecodeError(f"field `{name}`: damaged column ({damage})", name)
    return repaired


def _repair_utf8(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    dictionary = column.dictionary if pa.types.is_dictionary(column.type) else column
    large = pa.types.is_large_string(dictionary.type)
    as_binary = dictionary.view(pa.large_binary() if large else pa.binary())
    as_binary.validate(full=True)  # offsets and lengths are sound: only the text is bad
    invalid = np.zeros(len(dictionary), dtype=bool)
    text: list[str | None] = []
    for i, value in enumerate(as_binary.to_pylist()):
        if value is None:
            text.append(None)
            continue
        try:
            text.append(value.decode())
        except UnicodeDecodeError:
            invalid[i] = True
            text.append(value.decode(errors="backslashreplace"))
    clean: pa.Array = pa.array(text, pa.string())
    if pa.types.is_dictionary(column.type):
        clean = pa.DictionaryArray.from_arrays(column.indices, clean)  # checks index bounds
    clean.validate(full=True)
    return clean, invalid


def _nulls(column: pa.Array) -> np.ndarray:
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    return np.asarray(column.is_null(), dtype=bool)


def _numpy(column: pa.Array, dtype: Any, fill: Any = 0) -> np.ndarray:
    """A column as a numpy array (zero-copy when it has no nulls); nulls become ``fill``."""
    if column.null_count:
        column = column.fill_null(fill)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


def _times(column: pa.Array, rows: _Rows) -> tuple[np.ndarray, _Sent]:
    """Event times in µs; nulls and times outside [EARLIEST_US, LATEST_US) are bad rows."""
    nulls = _nulls(column)
    rows.flag(nulls, lambda i: "null, expected a timestamp", "ts")
    values = _numpy(column.view(pa.int64()), np.int64)
    unit = column.type.unit
    per = _UNIT_US[unit]
    if per is None:  # ns: µs by floor division, which cannot overflow
        us = values // 1000
        in_range = (us >= EARLIEST_US) & (us < LATEST_US)
    else:
        # Compare in the column's own unit: scaling an absurd value first could overflow into
        # the valid range.
        in_range = (values >= -(-EARLIEST_US // per)) & (values < -(-LATEST_US // per))
        us = values * per if per != 1 else values
    if not in_range.all():
        rows.flag(
            ~in_range & ~nulls,
            lambda i: (
                f"expected a time in [{_iso_us(EARLIEST_US)}, {_iso_us(LATEST_US)}), "
                f"got {_time_text(int(values[i]), unit)}"
            ),
            "ts",
        )
        us = np.where(in_range, us, 0)

    def sent(i: int) -> str | None:
        return None if nulls[i] else _time_text(int(values[i]), unit)

    return us, sent


def _time_text(value: int, unit: str) -> str:
    """A time as ISO text, or as a count of its unit when no calendar date can hold it."""
    per = _UNIT_US[unit]
    try:
        return _iso_us(value // 1000 if per is None else value * per)
    except (OverflowError, ValueError):
        return f"{value} {unit} since 1970-01-01T00:00:00Z"


def _iso_us(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def _strings(
    column: pa.Array, f: _Field, rows: _Rows, invalid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, _Sent]:
    """Codes (int32) into the sorted distinct values (object array) of a string column.

    Values are checked once per distinct value, on the dictionary (the encoder's, or one
    built by hashing), so the per-row work is integer indexing.
    """
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    indices, dictionary = column.indices, column.dictionary
    values = np.asarray(dictionary.to_numpy(zero_copy_only=False), dtype=object)
    entry_null = _nulls(dictionary)
    values[entry_null] = ""
    entry = _numpy(indices, np.int32)
    # A foreign dictionary may repeat a value: a code must still mean one string.
    cats, inverse = np.unique(values, return_inverse=True)
    if len(cats) == len(values):
        cats, codes = values, entry
    else:
        codes = inverse.astype(np.int32)[entry]
    row_null = entry_null[entry] if entry_null.any() else np.zeros(len(entry), dtype=bool)
    if indices.null_count:
        row_null |= _nulls(indices)
    name = f.name
    if invalid is not None:
        rows.flag(invalid[entry] & ~row_null, lambda i: "invalid UTF-8", name)
    rows.flag(row_null, lambda i: "null, expected a string", name)
    lengths = _numpy(pc.utf8_length(dictionary), np.int64)
    for limit, beyond, text in ((f.min_length, np.less, ">="), (f.max_length, np.greater, "<=")):
        if limit is None:
            continue
        out_of_bounds = beyond(lengths, limit) & ~entry_null
        if out_of_bounds.any():
            rows.flag(
                out_of_bounds[entry],
                lambda i, t=text, n=limit: (
                    f"expected a string of length {t} {n}, got {_shown(values[entry[i]])!r}"
                ),
                name,
            )
    return codes, cats, lambda i: None if row_null[i] else values[entry[i]]


_COMPARE = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def _numbers(column: pa.Array, f: _Field, rows: _Rows) -> tuple[np.ndarray, _Sent]:
    nulls = _nulls(column)
    name = f.name
    rows.flag(nulls, lambda i: f"null, expected {_EXPECTED[f.kind]}", name)
    if f.kind == "bool":
        values = _numpy(column, np.bool_, False)
        return values, lambda i: None if nulls[i] else bool(values[i])
    values = _numpy(column, _DTYPES[f.kind])
    checked = nulls.copy()
    if f.kind == "float":
        finite = np.isfinite(values)
        rows.flag(
            ~finite & ~checked,
            lambda i: f"expected a finite number, got {values[i].item()!r}",
            name,
        )
        checked |= ~finite
    for op, bound in f.bounds:
        with np.errstate(invalid="ignore"):
            inside = _COMPARE[op](values, bound)
        rows.flag(
            ~inside & ~checked,
            lambda i, o=op, b=bound: f"expected a number {o} {b!r}, got {values[i].item()!r}",
            name,
        )
    return values, lambda i: None if nulls[i] else values[i].item()


def _shown(value: str) -> str:
    return value if len(value) <= 80 else value[:77] + "..."


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _row_json(layout: _Layout, sent: Mapping[str, _Sent], i: int) -> bytes:
    """A bad row as JSON: its values as sent (non-finite numbers as NaN/Infinity, as
    JavaScript and Python write them; a null as null)."""
    row: dict[str, Any] = {"type": layout.tag, "v": SCHEMA_VERSION}
    for f in layout.fields:
        row[f.name] = sent[f.name](i)
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode(
        errors="backslashreplace"
    )


# --- encoding -------------------------------------------------------------------------------


def encode_events(events: Sequence[Event]) -> bytes:
    """One columnar record of events of one type (e.g. one partition's share of a poll)."""
    if not events:
        raise ValueError("events: empty; a columnar record holds at least one row")
    cls = type(events[0])
    layout = _layout(cls)
    if any(type(event) is not cls for event in events):
        raise ValueError(f"events: not all {layout.tag!r}; a record holds one event type")
    ts_us = np.array([(e.ts - _EPOCH) // _MICROSECOND for e in events], dtype=np.int64)
    fields = {f.name: [getattr(e, f.name) for e in events] for f in layout.fields[1:]}
    return encode_columns(cls, ts_us, fields)


_MICROSECOND = timedelta(microseconds=1)


def encode_columns(event_type: type, ts_us: Any, fields: Mapping[str, Any]) -> bytes:
    """One columnar record from arrays: ``ts_us`` (int µs since the epoch) and, per field of
    ``event_type``, an array of values — or, for a string field, ``(codes, categories)``.
    Strings are written as dictionaries. Values are not validated here: consumers validate
    every record, whoever produced it."""
    layout = _layout(event_type)
    unknown = sorted(set(fields) - {f.name for f in layout.fields})
    if unknown:
        raise ValueError(f"field `{unknown[0]}`: not in the contract")
    arrays = [pa.array(np.asarray(ts_us, dtype=np.int64), pa.timestamp("us", "UTC"))]
    names = ["ts"]
    for f in layout.fields[1:]:
        if f.name not in fields:
            if f.required:
                raise ValueError(f"field `{f.name}`: missing")
            continue
        values = fields[f.name]
        if f.kind == "str":
            arrays.append(_dictionary(values))
        else:
            arrays.append(pa.array(np.asarray(values, dtype=_DTYPES[f.kind])))
        names.append(f.name)
    schema = pa.schema(
        [pa.field(name, a.type) for name, a in zip(names, arrays, strict=True)],
        metadata={"type": layout.tag, "v": str(SCHEMA_VERSION)},
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.record_batch(arrays, schema=schema))
    return sink.getvalue().to_pybytes()


def _dictionary(values: Any) -> pa.DictionaryArray:
    """Strings as a dictionary array with the smallest index type that fits."""
    if isinstance(values, tuple):
        codes, categories = np.asarray(values[0]), pa.array(values[1], pa.string())
    else:
        encoded = pc.dictionary_encode(pa.array(values, pa.string()))
        codes, categories = np.asarray(encoded.indices), encoded.dictionary
    size = len(categories)
    index = np.int8 if size <= 127 else np.int16 if size <= 32767 else np.int32
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(index)), categories)


def pack_columns(
    topic: str, columns: Columns, key: str, partitions: int, max_rows: int = 100_000
) -> list[OutRecord]:
    """Columnar records of ``columns``: each row in the partition its ``key`` field hashes to
    (as if sent alone), at most ``max_rows`` rows a record, row order kept per partition.

    The edge conversion for producers: rows grouped per partition in one vectorised pass.
    (A list of events goes the same way through
    ``bus.base.pack_by_partition(topic, events, key_of, partitions, encode_events)``.)
    """
    codes, categories = columns.codes[key]
    per_category = np.array(
        [partition_for(c.encode(), partitions) for c in categories.tolist()], dtype=np.int64
    )
    partition_of_row = per_category[codes]
    out: list[OutRecord] = []
    for partition in range(partitions):
        index = np.flatnonzero(partition_of_row == partition)
        for start in range(0, len(index), max_rows):
            chunk = columns.take(index[start : start + max_rows])
            fields = {name: chunk.codes.get(name, values) for name, values in chunk.fields.items()}
            value = encode_columns(columns.event_type, chunk.ts_us, fields)
            out.append(OutRecord(topic, chunk.fields[key][0].encode(), value, "", partition))
    return out
