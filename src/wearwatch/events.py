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
does not cap a pipeline; :func:`decode_record` salvages the valid events of a batch and reports
each bad one with its own raw bytes. Input is untrusted: decoding also refuses what msgspec
accepts or chokes on (nesting deeper than :data:`MAX_NESTING`, invalid UTF-8, event times
outside [:data:`EARLIEST`, :data:`LATEST`), duplicate keys, an empty batch), and never raises.
"""

from __future__ import annotations

import json
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


#: Anomaly and alarm severities, in rising order.
Severity = Literal["normal", "watch", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("normal", "watch", "medium", "high", "critical")


class Trigger(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One piece of evidence behind an anomaly score: which detector fired on what, by how much.

    ``category`` tells a machine fault (the equipment) from a sensor fault (the measurement:
    stuck, dropping out, spiking), so a dead sensor raises a sensor alarm, not a bearing alarm.
    """

    #: ``hard_limit``, ``zscore``, ``persistence``, ``pca``, ``hst``, ``stuck``, ``dropout``,
    #: ``spike``, ``drift``...
    detector: Id
    #: The feature (``<sensor>.<aggregate>``) or sensor it fired on; ``""``: multivariate.
    feature: str = ""
    value: Finite
    threshold: Finite
    #: The detector's own strength, comparable across detectors: 1.0 at its threshold.
    score: Finite
    severity: Severity
    category: Literal["machine", "sensor"] = "machine"


class AnomalyScore(Event, tag="anomaly_score", kw_only=True):
    """A machine's window scored by the anomaly detectors; ``ts`` is the window's end.

    ``reason`` names the strongest trigger; ``triggers`` lists every one that fired.
    """

    machine_id: Id
    window_s: Finite
    severity: Severity
    #: The strongest trigger's score (0.0 when none fired).
    score: Finite
    category: Literal["none", "machine", "sensor"] = "none"
    reason: str = ""
    triggers: list[Trigger] = []
    #: The detector model's version (``anomaly@v0003``); ``""``: untrained defaults.
    model_version: str = ""


class MachineHealth(Event, tag="machine_health", kw_only=True):
    """A machine's failure risk, health score and time to maintenance, with their inputs."""

    machine_id: Id
    #: Probability of failing within the risk model's horizon.
    risk: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    risk_level: Literal["low", "medium", "high"]
    #: 0 (failed) … 100 (as new).
    health: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]
    #: Hours of machine time until maintenance is due; ``None``: no trend towards a limit.
    time_to_maintenance_h: Finite | None = None
    #: What went into the scores (input name → value), so an operator can see why.
    explanation: dict[str, Finite] = {}
    model_version: str = ""


class ModelScore(Event, tag="model_score", kw_only=True):
    """One model version's prediction on a machine's health window while a rollout runs.

    Both the current version and the candidate score every window (``served``: the one whose
    value went to ``fleet.health``), so their live metrics are computed on the same events.
    """

    machine_id: Id
    family: Id
    #: ``risk@v0004``, as in ``MachineHealth.model_version``.
    version: Id
    value: Finite
    served: bool
    rollout: Literal["shadow", "canary"]
    #: For a risk model: the horizon its probability is about ("fails within H").
    horizon_s: Positive | None = None


class Alarm(Event, tag="alarm", kw_only=True):
    """An alarm's state after a transition (raised, escalated, cleared, acknowledged...).

    One alarm per (machine, alarm type) while it is active: a repeat refreshes it. ``alarm_id``
    is deterministic (``<machine>/<type>/<n>``), so a replay yields the same ids.
    """

    alarm_id: Id
    machine_id: Id
    #: ``machine`` (an equipment fault) or ``sensor:<sensor>`` (a measurement fault)...
    alarm_type: Id
    severity: Severity
    status: Literal["active", "recovering", "cleared"]
    acknowledged: bool = False
    transition: Literal[
        "raised",
        "escalated",
        "deescalated",
        "recovering",
        "reactivated",
        "cleared",
        "reraised",
        "acknowledged",
        "silenced",
        "unsilenced",
    ]
    reason: str = ""
    triggers: list[Trigger] = []
    #: Event time the alarm was (re-)raised.
    raised_at: Timestamp
    ack_by: str = ""
    ack_at: Timestamp | None = None
    #: Scores that refreshed it while active.
    refreshes: int = 0


class AlarmCommand(Event, tag="alarm_command", kw_only=True):
    """An operator's action on a machine's alarms (from the API or the dashboard).

    It travels on the log, on the same topic as the scores the alarm stage acts on
    (``fleet.alarm_input``), so the stage applies scores and commands in the one order the log
    holds: a replay of the log gives the same alarms, acknowledgements included. ``ts`` is
    *event* time — the sender stamps the latest event time it has seen for the machine — so a
    command never moves a watermark past the data.
    """

    machine_id: Id
    action: Literal["acknowledge", "clear", "silence", "unsilence"]
    #: The alarm acted on (``acknowledge``, ``clear``); empty for ``silence``/``unsilence``.
    alarm_id: str = ""
    #: Who acts (required for ``acknowledge`` and ``clear``).
    by: str = ""
    #: ``silence``: the end of the silence, in event time.
    until: Timestamp | None = None
    note: str = ""


class MaintenanceEvent(Event, tag="maintenance", kw_only=True):
    """Ground truth or work orders: failures, repairs, fault onsets, maintenance resets.

    ``mode`` is the degradation mode (``bearing_wear``...) or sensor fault (``stuck``...);
    ``sensor`` the sensor a sensor fault is on.
    """

    asset_id: Id
    kind: Literal[
        "failure",
        "repair",
        "fault_onset",
        "maintenance",
        "sensor_fault",
        "sensor_fault_end",
    ]
    detail: str = ""
    mode: str = ""
    sensor: str = ""


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
    AnomalyScore,
    MachineHealth,
    ModelScore,
    Alarm,
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
    | AnomalyScore
    | MachineHealth
    | ModelScore
    | Alarm
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


#: Deepest nesting of arrays/objects a record may have (a batch counts one level). Deeper input
#: is refused before anything recursive touches it: msgspec's decoder, skipper and untyped
#: decode all recurse, and a 10,000-deep record raises RecursionError from any of them.
MAX_NESTING = 64
#: Event times (in UTC) must fall in [EARLIEST, LATEST): every such time converts to and from an
#: epoch float on every platform; years outside datetime's range cannot even be compared.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_EARLIEST_S = EARLIEST.timestamp()
_LATEST_S = LATEST.timestamp()

_encoder = msgspec.json.Encoder()
_PATH = re.compile(r"at `\$((?:\[\d+\]|\.[A-Za-z_][A-Za-z0-9_]*)*)`")
_STEP = re.compile(r"\[(\d+)\]|\.([A-Za-z_][A-Za-z0-9_]*)")
#: A JSON string literal (linear time: no nested quantifier can backtrack).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_COLON = re.compile(rb"\s*:")
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_OBJECTS = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])


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
    except (msgspec.DecodeError, UnicodeDecodeError):
        # Out-of-range numbers (or bad UTF-8 further on) fail even untyped decoding; the
        # caller shows the literal.
        return _UNPARSABLE
    for idx, name in steps:
        try:
            node = node[int(idx)] if idx else node[name]
        except (KeyError, IndexError, TypeError):
            return None
    return _short(node)


def _short(value: Any) -> Any:
    if isinstance(value, str | bytes) and len(value) > 80:
        return value[:77] + ("..." if isinstance(value, str) else b"...")
    if isinstance(value, list | dict | _Pairs):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return value


# --- refusing what msgspec accepts, or chokes on -----------------------------------------


def _nesting(raw: bytes) -> int:
    """How deeply arrays/objects nest in ``raw`` (brackets inside strings do not count).

    An upper bound that is exact whenever it exceeds :data:`MAX_NESTING`: counting brackets
    (C speed) settles almost every record; only bracket-rich ones are scanned.
    """
    openers = raw.count(b"[") + raw.count(b"{")
    if openers <= MAX_NESTING:
        return openers
    depth = deepest = 0
    for char in _STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS):
        if char == 40:  # "("
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def _too_deep(depth: int) -> EventDecodeError:
    return EventDecodeError(
        f"field `$`: nesting deeper than {MAX_NESTING} levels, got {depth}", "$"
    )


def _bad_utf8(raw: bytes) -> EventDecodeError:
    """Name the field whose string holds invalid UTF-8, and show that string's bytes."""
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        position = exc.start
    else:  # pragma: no cover - only called after a UnicodeDecodeError
        return EventDecodeError("malformed JSON: invalid UTF-8", "$")
    field, literal, key = "$", raw[position : position + 40], "$"
    for match in _STRING.finditer(raw):
        is_key = _COLON.match(raw, match.end()) is not None
        if match.end() <= position:
            if is_key:
                key = match.group()[1:-1].decode(errors="replace")
            continue
        if match.start() <= position:
            literal = match.group()
            field = literal[1:-1].decode(errors="replace") if is_key else key
        break
    return EventDecodeError(f"field `{field}`: invalid UTF-8, got {_short(literal)!r}", field)


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, duplicates kept."""


class _Duplicate(Exception):
    """Raised from the JSON parser's hook at the first object with a repeated key."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    unique = dict(pairs)
    if len(unique) != len(pairs):
        raise _Duplicate
    return unique


def _keys_may_repeat(raw: bytes, batch: bool) -> bool:
    """False only if ``raw`` (which decoded as events) cannot hold a duplicate key.

    A key is a string followed by a colon, so ``"`` + ``:`` once whitespace is removed counts
    every key (plus strings that merely start with a colon): at least as many as there are.
    msgspec's dicts count the distinct keys of each event object. More keys than distinct ones
    is necessary for a duplicate (or a nested object, which is then checked exactly).
    """
    keys = raw.translate(None, b" \t\r\n").count(b'":')
    distinct = sum(map(len, _OBJECTS.decode(raw))) if batch else len(_OBJECT.decode(raw))
    return keys > distinct


def _duplicate(raw: bytes) -> EventDecodeError | None:
    """The first duplicate key in ``raw`` (nested objects included), or None.

    Exact, and slow next to msgspec: callers only ask when ``raw`` differs from the canonical
    encoding of what it decoded to and :func:`_keys_may_repeat`. The stdlib parser checks each
    object at C speed; only a record that has a duplicate is parsed again to name its path.
    """
    try:
        json.loads(raw, object_pairs_hook=_unique)
        return None
    except _Duplicate:
        return _first_duplicate(json.loads(raw, object_pairs_hook=_Pairs), "")
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        return EventDecodeError(f"field `$`: cannot check for duplicate keys: {exc}", "$")


def _first_duplicate(node: Any, path: str) -> EventDecodeError | None:
    if isinstance(node, _Pairs):
        seen: dict[str, Any] = {}
        for key, value in node:
            here = f"{path}.{key}" if path else key
            if key in seen:
                return EventDecodeError(
                    f"field `{here}`: duplicate key, got {_short(seen[key])!r} and "
                    f"{_short(value)!r}",
                    here,
                )
            seen[key] = value
        children: Any = ((f"{path}.{key}" if path else key, value) for key, value in node)
    elif isinstance(node, list):
        children = ((f"{path}[{index}]", value) for index, value in enumerate(node))
    else:
        return None
    for here, value in children:
        found = _first_duplicate(value, here)
        if found is not None:
            return found
    return None


def _out_of_range(value: datetime, field: str) -> EventDecodeError:
    return EventDecodeError(
        f"field `{field}`: expected a time in [{_iso(EARLIEST)}, {_iso(LATEST)}), "
        f"got {_iso(value)!r}",
        field,
    )


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class _Kind:
    """What decoding needs to know about one input type, computed once."""

    def __init__(self, kind: Any) -> None:
        info = msgspec.inspect.type_info(kind)
        self.one = msgspec.json.Decoder(kind)
        self.many = msgspec.json.Decoder(list[kind])  # type: ignore[valid-type]
        #: Deepest nesting a *valid* value can have; None when unbounded (``Any``, Raw,
        #: recursion). When bounded, a successful typed decode proves the record is shallow.
        self.depth = _type_depth(info, frozenset())
        structs = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
        #: Per event class, its timestamp fields besides ``ts`` (checked on the slow path).
        self.other_times = {
            t.cls: tuple(f.name for f in t.fields if f.name != "ts" and _is_time(f.type))
            for t in structs
            if isinstance(t, msgspec.inspect.StructType)
        }
        self.only_ts = not any(self.other_times.values())

    def event_time(self, event: Any) -> float:
        """``event.ts`` in epoch seconds, once every timestamp field is checked for range."""
        ts = _epoch(event.ts)
        if ts is None:
            raise _out_of_range(event.ts, "ts")
        for name in self.other_times.get(type(event), ()):
            value = getattr(event, name)
            if value is not None and _epoch(value) is None:
                raise _out_of_range(value, name)
        return ts


def _epoch(value: datetime) -> float | None:
    """Epoch seconds of ``value``, or None outside [EARLIEST, LATEST) (years 0 and 10000 in
    UTC, which datetime cannot even convert, included)."""
    try:
        seconds = value.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
    return seconds if _EARLIEST_S <= seconds < _LATEST_S else None


def _is_time(t: Any) -> bool:
    mi = msgspec.inspect
    if isinstance(t, mi.UnionType):
        return any(_is_time(item) for item in t.types)
    if isinstance(t, mi.Metadata):
        return _is_time(t.type)
    return isinstance(t, mi.DateTimeType)


def _type_depth(t: Any, seen: frozenset[type]) -> int | None:
    mi = msgspec.inspect
    if isinstance(t, mi.StructType | mi.DataclassType | mi.TypedDictType | mi.NamedTupleType):
        if t.cls in seen:
            return None
        inner = [_type_depth(f.type, seen | {t.cls}) for f in t.fields]
        return None if None in inner else 1 + max(inner, default=0)  # type: ignore[type-var]
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        inner_depth = _type_depth(t.item_type, seen)
        return None if inner_depth is None else 1 + inner_depth
    if isinstance(t, mi.TupleType):
        inner = [_type_depth(item, seen) for item in t.item_types]
        return None if None in inner else 1 + max(inner, default=0)  # type: ignore[type-var]
    if isinstance(t, mi.DictType):
        inner_depth = _type_depth(t.value_type, seen)
        return None if inner_depth is None else 1 + inner_depth
    if isinstance(t, mi.UnionType):
        inner = [_type_depth(item, seen) for item in t.types]
        return None if None in inner else max(inner, default=0)  # type: ignore[type-var]
    if isinstance(t, mi.Metadata):
        return _type_depth(t.type, seen)
    if isinstance(t, mi.AnyType | mi.RawType | mi.CustomType | mi.ExtType):
        return None
    return 0


_KINDS: dict[Any, _Kind] = {}


def _kind(kind: Any) -> _Kind:
    found = _KINDS.get(kind)
    if found is None:
        found = _KINDS[kind] = _Kind(kind)
    return found


def _refusal(raw: bytes, exc: Exception) -> EventDecodeError:
    """Why msgspec refused ``raw`` (or choked on it), naming the field and the value."""
    depth = _nesting(raw)
    if depth > MAX_NESTING:
        return _too_deep(depth)
    if isinstance(exc, UnicodeDecodeError):
        return _bad_utf8(raw)
    if isinstance(exc, msgspec.DecodeError):
        return _explain(exc, raw)
    return EventDecodeError(f"undecodable: {type(exc).__name__}: {exc}", "$")


def _decode_item(raw: bytes, kind: _Kind, max_event_bytes: int | None) -> tuple[Any, float]:
    """One event, fully checked, and its time in epoch seconds; raises
    :class:`EventDecodeError` and nothing else."""
    if max_event_bytes is not None and len(raw) > max_event_bytes:
        raise _oversize(len(raw), max_event_bytes)
    try:
        event = kind.one.decode(raw)
    except Exception as exc:  # DecodeError, UnicodeDecodeError, RecursionError, ...
        raise _refusal(raw, exc) from None
    if kind.depth is None:
        depth = _nesting(raw)
        if depth > MAX_NESTING:
            raise _too_deep(depth)
    ts = kind.event_time(event)
    if _encoder.encode(event) != raw and _keys_may_repeat(raw, batch=False):
        error = _duplicate(raw)
        if error is not None:
            raise error
    return event, ts


def decode_event(raw: bytes, kind: type[E]) -> E:
    """Strictly decode one event of type ``kind``; raise :class:`EventDecodeError`."""
    try:
        return _decode_item(raw, _kind(kind), None)[0]  # type: ignore[no-any-return]
    except EventDecodeError:
        raise
    except Exception as exc:  # whatever is left: still a refusal, never a crash
        raise EventDecodeError(f"undecodable: {type(exc).__name__}: {exc}", "$") from None


Rejected = tuple[bytes, EventDecodeError]


class DecodedRecord:
    """One log record decoded: its valid events in order with their times (epoch seconds),
    each refused item with its own bytes and the reason, and (on demand) each valid event's
    own bytes."""

    __slots__ = ("_raws", "_record", "events", "rejected", "times")

    def __init__(
        self,
        events: list[Any],
        times: list[float],
        rejected: list[Rejected],
        record: bytes,
        raws: list[bytes] | None,
    ) -> None:
        self.events = events
        self.times = times
        self.rejected = rejected
        self._record = record
        self._raws = raws

    def raw_event(self, index: int) -> bytes:
        """The bytes event ``index`` arrived as (a batch is split only when asked)."""
        raws = self._raws
        if raws is None:
            if self._record[:1] != b"[":
                return self._record
            raws = self._raws = [bytes(item) for item in _RAW_ITEMS.decode(self._record)]
        return raws[index]


def decode_record(raw: bytes, kind: Any, max_event_bytes: int = 65536) -> DecodedRecord:
    """Decode a record holding one event or a JSON array of events; never raises.

    The fast path decodes the whole record at once and checks what msgspec does not (event
    time range; duplicate keys, only when the bytes are not the canonical encoding). A batch
    with a bad or oversize event is taken apart item by item; what cannot be taken apart (or
    fails in any unforeseen way) is refused whole, with the record's bytes.
    """
    try:
        if raw[:1] == b"[":
            return _decode_batch(raw, _kind(kind), max_event_bytes)
        event, ts = _decode_item(raw, _kind(kind), max_event_bytes)
        return DecodedRecord([event], [ts], [], raw, None)
    except EventDecodeError as exc:
        return DecodedRecord([], [], [(raw, exc)], raw, [])
    except Exception as exc:  # input must never stop a worker
        error = EventDecodeError(f"undecodable record: {type(exc).__name__}: {exc}", "$")
        return DecodedRecord([], [], [(raw, error)], raw, [])


def decode_batch(
    raw: bytes, kind: type[E], max_event_bytes: int = 65536
) -> tuple[list[E], list[Rejected]]:
    """The valid events of a record and, for each bad one, its raw bytes and the error."""
    decoded = decode_record(raw, kind, max_event_bytes)
    return decoded.events, decoded.rejected


def _decode_batch(raw: bytes, kind: _Kind, max_event_bytes: int) -> DecodedRecord:
    try:
        events: list[Any] | None = kind.many.decode(raw)
    except Exception:  # taken apart below, where each item gets its own reason
        events = None
    if events is not None and kind.depth is None and _nesting(raw) > MAX_NESTING:
        events = None
    if events is not None:
        if not events:
            raise EventDecodeError("field `$`: empty batch, expected at least one event", "$")
        # Every event is valid to msgspec; only what it cannot see remains to check.
        items: list[bytes] | None = None
        suspect = False
        if len(raw) > max_event_bytes:
            items = [bytes(item) for item in _RAW_ITEMS.decode(raw)]
            suspect = any(len(item) > max_event_bytes for item in items)
        times: list[float] = []
        if not suspect:
            try:
                times = [event.ts.timestamp() for event in events]
            except (OverflowError, ValueError, OSError):  # a UTC year 0 or 10000
                suspect = True
            else:
                suspect = min(times) < _EARLIEST_S or max(times) >= _LATEST_S
                if not suspect and not kind.only_ts:
                    try:
                        for event in events:
                            kind.event_time(event)
                    except EventDecodeError:
                        suspect = True
        if not suspect and _encoder.encode(events) != raw and _keys_may_repeat(raw, batch=True):
            suspect = _duplicate(raw) is not None
        if not suspect:
            return DecodedRecord(events, times, [], raw, items)
        if items is None:
            items = [bytes(item) for item in _RAW_ITEMS.decode(raw)]
    elif (depth := _nesting(raw)) > MAX_NESTING:
        # Neither msgspec nor any other parser can take it apart without recursing into it.
        raise _too_deep(depth)
    else:
        try:
            items = [bytes(item) for item in _RAW_ITEMS.decode(raw)]
        except Exception as exc:  # no trustworthy item boundaries: refuse the record whole
            raise _refusal(raw, exc) from None
    good: list[Any] = []
    good_times: list[float] = []
    raws: list[bytes] = []
    bad: list[Rejected] = []
    for item in items:
        try:
            event, ts = _decode_item(item, kind, max_event_bytes)
        except EventDecodeError as exc:
            bad.append((item, exc))
            continue
        good.append(event)
        good_times.append(ts)
        raws.append(item)
    return DecodedRecord(good, good_times, bad, raw, raws)


def _oversize(size: int, limit: int) -> EventDecodeError:
    return EventDecodeError(
        f"field `payload`: {size} bytes exceeds max_event_bytes={limit}", "payload"
    )
