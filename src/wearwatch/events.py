"""The event contract: one msgspec Struct per event type, strictly decoded.

Twins, plants and pipelines meet only here and in the log. Every event carries ``type`` (its
tag), ``v`` (the schema version) and ``ts`` (event time, timezone-aware). Decoding rejects
unknown fields, missing fields, wrong types, non-finite numbers and naive timestamps, and its
errors name the field and the offending value:

>>> raw = b'{"type":"reading","v":1,"ts":"2026-01-01T00:00:00","machine_id":"p1",'
>>> raw += b'"sensor":"vib","value":1.0}'
>>> try:
...     decode_event(raw, Reading)
... except EventDecodeError as exc:
...     print(exc.field, "|", exc)
ts | field `ts`: expected a timestamp with a timezone, got '2026-01-01T00:00:00'

A log record may carry a batch of events (a JSON array) so the per-record cost of the log
does not cap a pipeline; :func:`decode_batch` salvages the valid events of a batch and reports
each bad one with its own raw bytes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec

SCHEMA_VERSION = 1

Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
Finite = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
Positive = Annotated[float, msgspec.Meta(gt=0.0, le=1e300)]
PassNo = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Event(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """Base of every event: a schema version and an event timestamp."""

    ts: Timestamp
    v: Literal[1] = SCHEMA_VERSION


# --- hot strip mill -------------------------------------------------------------------------


class PassRequest(Event, tag="pass_request", kw_only=True):
    """Event A: what the Level-2 system knows before a pass, with its physics baseline."""

    slab_id: Id
    pass_no: PassNo
    line: Id
    width_mm: Positive
    h_in_mm: Positive
    h_out_mm: Positive
    temp_c: Finite
    speed_mps: Positive
    roll_radius_mm: Positive
    baseline_force_kn: Positive
    rating_force_kn: Positive
    grade: str = ""
    carbon_pct: Finite = 0.0

    def __post_init__(self) -> None:
        if self.h_out_mm >= self.h_in_mm:
            raise ValueError(
                f"field `h_out_mm`: {self.h_out_mm} must be below h_in_mm={self.h_in_mm}"
            )


class PassActual(Event, tag="pass_actual", kw_only=True):
    """Event B: the load cell's measured force after the pass."""

    slab_id: Id
    pass_no: PassNo
    force_kn: Positive


class Setpoint(Event, tag="setpoint", kw_only=True):
    """The router's decision for one pass: what force was served, from where, and why."""

    slab_id: Id
    pass_no: int
    line: Id
    served_force_kn: Finite
    source: str = "physics"
    reason: str = ""
    baseline_force_kn: Finite
    model_force_kn: Finite | None = None


class PassOutcome(Event, tag="pass_outcome", kw_only=True):
    """A joined pass scored: APE (%) of physics, of every learner and of the served value."""

    slab_id: Id
    pass_no: int
    line: Id
    actual_force_kn: Finite
    baseline_force_kn: Finite
    served_force_kn: Finite
    source: str = "physics"
    physics_ape: Finite
    served_ape: Finite
    model_ape: dict[str, Finite] = {}
    router_state: str = ""


class JoinedPass(Event, tag="joined_pass", kw_only=True):
    """Both halves of one pass, joined on (slab_id, pass_no): what the mill's join hands to
    its per-line stage. ``ts`` is the later of the two halves' times."""

    request: PassRequest
    actual: PassActual

    @property
    def line(self) -> str:
        return self.request.line


class DriftDetected(Event, tag="drift_detected", kw_only=True):
    """A learner's drift detector fired (the learner re-adapts; the router keeps watching)."""

    line: Id
    learner: Id
    detections: int


class TwinTelemetry(Event, tag="twin_telemetry", kw_only=True):
    """Ground truth from a twin (e.g. true roll wear); never a pipeline feature."""

    asset_id: Id
    name: str
    value: Finite


# --- machine fleet --------------------------------------------------------------------------


class Reading(Event, tag="reading", kw_only=True):
    """One sensor sample."""

    machine_id: Id
    sensor: Id
    value: Finite
    unit: str = ""


class FeatureVector(Event, tag="feature_vector", kw_only=True):
    """Window features of one machine (count, mean, std, min, max, slope, latest per sensor)."""

    machine_id: Id
    window_s: Finite
    features: dict[str, Finite] = {}


class Alert(Event, tag="alert", kw_only=True):
    """An alert's state change: open, escalate, clear, acknowledge."""

    alert_id: Id
    machine_id: Id
    severity: Literal["normal", "watch", "medium", "high", "critical"]
    state: Literal["open", "escalated", "cleared", "acknowledged"]
    reason: str = ""
    triggers: list[str] = []


class MaintenanceEvent(Event, tag="maintenance", kw_only=True):
    """Ground truth or work orders: failures, repairs, fault onsets, maintenance resets."""

    asset_id: Id
    kind: Literal["failure", "repair", "fault_onset", "maintenance", "sensor_fault"]
    detail: str = ""


class TwinCommand(Event, tag="twin_command", kw_only=True):
    """A live control command for a twin (set wear, shock, gradual, maintenance...)."""

    command: Id
    args: dict[str, Any] = {}


class ReadingTotals(Event, tag="reading_totals", kw_only=True):
    """Per-key count and sum of readings, emitted when a key goes idle (TTL in event time)."""

    key: Id
    first_ts: Timestamp | None = None
    count: int
    total: float


class WindowResult(Event, tag="window_result", kw_only=True):
    """The aggregates of one key's event-time window, ``[start, end)``; ``ts`` is ``end``.

    ``kind`` names the window definition (e.g. ``tumbling(5s)``); ``series`` maps each series
    (e.g. a sensor) to its aggregates (count, sum, mean, std, min, max, slope, latest).
    """

    key: str
    kind: str
    start: Timestamp
    end: Timestamp
    series: dict[str, dict[str, float]] = {}


class DeadLetter(Event, tag="dead_letter", kw_only=True):
    """An input that could not be processed, with the reason and its raw bytes."""

    source_topic: str = ""
    partition: int = -1
    offset: int = -1
    reason: str = ""
    field: str = ""
    raw: bytes = b""


EVENT_TYPES: tuple[type[Event], ...] = (
    PassRequest,
    PassActual,
    Setpoint,
    PassOutcome,
    JoinedPass,
    DriftDetected,
    TwinTelemetry,
    Reading,
    FeatureVector,
    Alert,
    MaintenanceEvent,
    TwinCommand,
    ReadingTotals,
    WindowResult,
    DeadLetter,
)

AnyEvent = (
    PassRequest
    | PassActual
    | Setpoint
    | PassOutcome
    | JoinedPass
    | DriftDetected
    | TwinTelemetry
    | Reading
    | FeatureVector
    | Alert
    | MaintenanceEvent
    | TwinCommand
    | ReadingTotals
    | WindowResult
    | DeadLetter
)


E = TypeVar("E", bound=Event)


class EventDecodeError(ValueError):
    """A record that does not fit the contract; ``field`` names the offending field."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


_encoder = msgspec.json.Encoder()
_PATH = re.compile(r"at `\$((?:\[\d+\]|\.[A-Za-z_][A-Za-z0-9_]*)*)`")
_STEP = re.compile(r"\[(\d+)\]|\.([A-Za-z_][A-Za-z0-9_]*)")


def encode(event: Event | list[Any]) -> bytes:
    """JSON bytes of one event or a batch (list) of events."""
    return _encoder.encode(event)


def utc(ts: float) -> datetime:
    """A timezone-aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(ts, tz=UTC)


def _explain(exc: msgspec.DecodeError, raw: bytes) -> EventDecodeError:
    """Turn msgspec's message into one that names the field and the offending value."""
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        match = _PATH.search(text)
        missing = re.search(r"missing required field `([^`]+)`", text)
        unknown = re.search(r"unknown field `([^`]+)`", text)
        if missing:
            return EventDecodeError(f"field `{missing.group(1)}`: missing", missing.group(1))
        if unknown:
            return EventDecodeError(
                f"field `{unknown.group(1)}`: not in the contract", unknown.group(1)
            )
        named = re.match(r"field `([^`]+)`", text)
        if named:
            return EventDecodeError(text, named.group(1))
        if match:
            steps = _STEP.findall(match.group(1))
            field = ".".join(name or f"[{idx}]" for idx, name in steps) or "$"
            value: Any = _lookup(raw, steps)
            if value is _UNPARSABLE:
                value = _literal(raw, steps[-1][1] if steps else "")
            what = text[: match.start()].strip().rstrip("-").strip()
            if "timezone" in what:
                what = "expected a timestamp with a timezone"
            elif what == "Number out of range":
                what = "expected a finite number"
            what = re.sub(r", got `[^`]+`", "", what)
            if field == "v":
                what = f"unsupported schema version (this build reads {SCHEMA_VERSION})"
            return EventDecodeError(f"field `{field}`: {_lower(what)}, got {value!r}", field)
        return EventDecodeError(_lower(text), "$")
    return EventDecodeError(
        f"malformed JSON: {_lower(text.removeprefix('JSON is malformed: '))}", "$"
    )


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


_UNPARSABLE = object()


def _literal(raw: bytes, name: str) -> str:
    """The raw literal after ``"name":`` (for values that do not even parse untyped)."""
    match = re.search(rb'"' + re.escape(name.encode()) + rb'"\s*:\s*([^,}\]]{1,40})', raw)
    return match.group(1).decode(errors="replace").strip() if match else "?"


def _lookup(raw: bytes, steps: list[tuple[str, str]]) -> Any:
    """Best-effort: the raw value at a path, for the error message."""
    try:
        node: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        # Out-of-range numbers fail even untyped decoding; the caller shows the literal.
        return _UNPARSABLE
    for idx, name in steps:
        try:
            node = node[int(idx)] if idx else node[name]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(node, str) and len(node) > 80:
        return node[:77] + "..."
    return node


def decode_event(raw: bytes, kind: type[E]) -> E:
    """Strictly decode one event of type ``kind``; raise :class:`EventDecodeError`."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:
        raise _explain(exc, raw) from None


def decode_batch(
    raw: bytes, kind: type[E], max_event_bytes: int = 65536
) -> tuple[list[E], list[tuple[bytes, EventDecodeError]]]:
    """Decode a record holding one event or a JSON array of events.

    Returns the valid events in order and, for each bad one, its raw bytes and the error.
    The fast path decodes the whole batch at once; only a batch with a bad or oversize
    event is taken apart item by item.
    """
    if raw[:1] != b"[":
        if len(raw) > max_event_bytes:
            return [], [(raw, _oversize(len(raw), max_event_bytes))]
        try:
            return [msgspec.json.decode(raw, type=kind)], []
        except msgspec.DecodeError as exc:
            return [], [(raw, _explain(exc, raw))]
    items: list[msgspec.Raw] | None = None
    if len(raw) > max_event_bytes:
        try:
            items = msgspec.json.decode(raw, type=list[msgspec.Raw])
        except msgspec.DecodeError as exc:
            return [], [(raw, _explain(exc, raw))]
    if items is None or all(len(item) <= max_event_bytes for item in items):
        try:
            return msgspec.json.decode(raw, type=list[kind]), []  # type: ignore[valid-type]
        except msgspec.DecodeError:
            pass
    if items is None:
        try:
            items = msgspec.json.decode(raw, type=list[msgspec.Raw])
        except msgspec.DecodeError as exc:
            return [], [(raw, _explain(exc, raw))]
    good: list[E] = []
    bad: list[tuple[bytes, EventDecodeError]] = []
    for item in items:
        item_bytes = bytes(item)
        if len(item_bytes) > max_event_bytes:
            bad.append((item_bytes, _oversize(len(item_bytes), max_event_bytes)))
            continue
        try:
            good.append(msgspec.json.decode(item_bytes, type=kind))
        except msgspec.DecodeError as exc:
            bad.append((item_bytes, _explain(exc, item_bytes)))
    return good, bad


def _oversize(size: int, limit: int) -> EventDecodeError:
    return EventDecodeError(
        f"field `payload`: {size} bytes exceeds max_event_bytes={limit}", "payload"
    )
