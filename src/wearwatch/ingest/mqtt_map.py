"""How MQTT messages become readings: topic filters, and the mapping file's routes.

A plant's gateways publish on topics they chose (``plant/p7/vibration/reading``) with payloads
they chose (``{"v": 2.31, "t": 1767225600.5}``, or just ``2.31``). A mapping file (TOML) says,
per topic filter, where each field of a :class:`~wearwatch.events.Reading` comes from::

    [[route]]
    topic = "plant/+/+/reading"   # an MQTT topic filter (+ one level, # the rest)
    machine_id = "{1}"            # topic level 1 (0-based): "p7"
    sensor = "{2}"                # levels and fixed text mix: "{2}_rms", "line-{0}"
    payload = "json"              # "json", or "number" (the payload is one plain number)
    value = "$.v"                 # a field of the JSON payload ($ is the whole document)
    ts = "$.t"                    # a field of the payload, or "received" (the gateway's clock)
    ts_unit = "s"                 # s | ms | us | ns (epoch numbers) | iso (ISO-8601 text)
    unit = "mm/s"                 # fixed text, "{N}", or a payload field "$.u"

Routes are tried in file order and the first whose filter matches the topic wins; a topic no
route matches, like a payload a route cannot read, is an error naming the field
(:class:`PayloadError`) that the adapter turns into a dead letter. A bad file is refused
whole, naming the file, the route (1-based, in file order) and the key (:class:`MapFileError`).

A time stamped on receipt (``ts = "received"``) is not the device's: a message the broker
delivers again after a crash gets a new time and so a new reading id, and cannot be recognised
as a duplicate. Use it only for devices that send no time of their own.

>>> topic_map = TopicMap.parse('''
... [[route]]
... topic = "plant/+/+/reading"
... machine_id = "{1}"
... sensor = "{2}"
... payload = "json"
... value = "$.v"
... ts = "$.t"
... unit = "mm/s"
... ''', "map.toml")
>>> fields = topic_map.map("plant/p7/vib/reading", b'{"v": 2.5, "t": 1767225600}', 0.0)
>>> fields["machine_id"], fields["sensor"], fields["value"], fields["unit"]
('p7', 'vib', 2.5, 'mm/s')
>>> fields["ts"].isoformat()
'2026-01-01T00:00:00+00:00'
>>> try:
...     topic_map.map("plant/p7/vib/status", b"{}", 0.0)
... except PayloadError as exc:
...     print(exc.field, "|", exc)
topic | no route matches topic 'plant/p7/vib/status'
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import msgspec

PayloadKind = Literal["json", "number"]
TsUnit = Literal["s", "ms", "us", "ns", "iso"]
PAYLOADS: tuple[str, ...] = ("json", "number")
TS_UNITS: tuple[str, ...] = ("s", "ms", "us", "ns", "iso")
#: Per unit: how many of them make one microsecond, as (numerator, denominator) of µs/unit.
_MICROS_PER: dict[str, tuple[int, int]] = {
    "s": (1_000_000, 1),
    "ms": (1_000, 1),
    "us": (1, 1),
    "ns": (1, 1_000),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Longest topic (and filter) MQTT can carry: a UTF-8 string with a 16-bit length.
MAX_TOPIC_BYTES = 65_535
_LEVEL_REF = re.compile(r"\{(\d+)\}")
_PATH = re.compile(r"\$((?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])*)")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")
_KEYS = frozenset(("topic", "machine_id", "sensor", "payload", "value", "ts", "ts_unit", "unit"))
_NUMBER = msgspec.json.Decoder(float)


class MapFileError(ValueError):
    """The mapping file is unusable; the message names the file, route and key."""


class PayloadError(ValueError):
    """A message no route can turn into a reading; ``field`` names what was wrong."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


# -- topic filters (MQTT 3.1.1 / 5.0 §4.7) --------------------------------------------------------


def check_filter(topic_filter: str) -> str:
    """``topic_filter`` if it is a valid MQTT topic filter, else a ValueError saying why.

    ``+`` stands alone in its level, ``#`` alone in the last level; no NUL; at most 65,535
    bytes of UTF-8; not empty.

    >>> check_filter("plant/+/#")
    'plant/+/#'
    >>> check_filter("plant/p+/x")
    Traceback (most recent call last):
    ...
    ValueError: topic filter 'plant/p+/x': '+' must stand alone in a level
    """
    _check_string("topic filter", topic_filter)
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {topic_filter!r}: '+' must stand alone in a level")
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(
                f"topic filter {topic_filter!r}: '#' must stand alone in the last level"
            )
    return topic_filter


def check_topic(topic: str) -> str:
    """``topic`` if it is a valid MQTT topic name (no wildcards), else a ValueError."""
    _check_string("topic", topic)
    if "+" in topic or "#" in topic:
        raise ValueError(f"topic {topic!r}: a topic name cannot hold the wildcards + or #")
    return topic


def _check_string(what: str, text: str) -> None:
    if not text:
        raise ValueError(f"{what} {text!r}: must not be empty")
    if "\x00" in text:
        raise ValueError(f"{what} {text!r}: must not hold the NUL character")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise ValueError(f"{what} of {len(text)} characters: longer than {MAX_TOPIC_BYTES} bytes")


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` (a topic name) matches ``topic_filter`` (both valid), by MQTT's
    rules: ``+`` matches exactly one level (empty ones too), ``#`` the parent level and any
    number of levels below it, and a topic starting with ``$`` matches no filter that starts
    with a wildcard.

    >>> matches("sport/tennis/+", "sport/tennis/player1"), matches("sport/+", "sport/a/b")
    (True, False)
    >>> matches("sport/#", "sport"), matches("+/+", "/finance"), matches("#", "$SYS/uptime")
    (True, True, False)
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted = topic_filter.split("/")
    levels = topic.split("/")
    for index, want in enumerate(wanted):
        if want == "#":
            return True
        if index >= len(levels) or (want != "+" and want != levels[index]):
            return False
    return len(levels) == len(wanted)


# -- the mapping file ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """Text made of fixed parts and topic levels: ``"line-{0}"`` → ``"line-" + levels[0]``."""

    parts: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Split ``text`` at its ``{N}`` references; any other brace is an error."""
        parts: list[str | int] = []
        position = 0
        for match in _LEVEL_REF.finditer(text):
            parts += [text[position : match.start()], int(match.group(1))]
            position = match.end()
        parts.append(text[position:])
        literal = "".join(part for part in parts if isinstance(part, str))
        if "{" in literal or "}" in literal:
            raise ValueError(f"{text!r}: braces only as {{N}}, a topic level by 0-based index")
        return cls(tuple(part for part in parts if part != ""))

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(part for part in self.parts if isinstance(part, int))

    def render(self, levels: list[str]) -> str:
        """The text for a topic split into ``levels``; a missing level is a PayloadError."""
        out = []
        for part in self.parts:
            if isinstance(part, int):
                if part >= len(levels):
                    raise PayloadError(
                        f"topic has {len(levels)} levels, the route names level {{{part}}}",
                        "topic",
                    )
                out.append(levels[part])
            else:
                out.append(part)
        return "".join(out)


@dataclass(frozen=True)
class JsonPath:
    """A field of a JSON payload: ``$`` (the document), ``$.a.b``, ``$.samples[0].v``."""

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        match = _PATH.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r}: expected a JSON path like $.v, $.data.t or $.s[0]")
        steps = tuple(name if name else int(index) for name, index in _STEP.findall(match.group(1)))
        return cls(text, steps)

    def find(self, document: Any) -> Any:
        """The value at this path in ``document``; a missing one is a PayloadError."""
        node = document
        for step in self.steps:
            found = (isinstance(node, dict) and step in node) or (
                isinstance(node, list) and isinstance(step, int) and step < len(node)
            )
            if found:
                node = node[step]
            else:
                raise PayloadError(f"field `{self.text}`: missing from the payload", self.text)
        return node


#: Where a text field comes from: topic levels and fixed text, or a payload field.
Source = Template | JsonPath


@dataclass(frozen=True)
class Route:
    """One ``[[route]]``: a topic filter and where each field of the reading comes from."""

    topic: str
    machine_id: Source
    sensor: Source
    payload: PayloadKind
    value: JsonPath
    ts: JsonPath | None  # None: the gateway's clock on receipt
    ts_unit: TsUnit
    unit: Source

    def map(self, levels: list[str], payload: bytes, received: float) -> dict[str, Any]:
        """The reading's fields from a message on this route (PayloadError if it cannot)."""
        document = _json(payload) if self.payload == "json" else _number(payload)
        value = self.value.find(document)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadError(
                f"field `{self.value.text}`: expected a number, got {_short(value)!r}",
                self.value.text,
            )
        if self.ts is None:
            ts: Any = received
        else:
            ts = _time(self.ts.find(document), self.ts.text, self.ts_unit)
        return {
            "machine_id": _text(self.machine_id, levels, document, "machine_id"),
            "sensor": _text(self.sensor, levels, document, "sensor"),
            "value": value,
            "unit": _text(self.unit, levels, document, "unit"),
            "ts": ts,
        }


@dataclass(frozen=True)
class TopicMap:
    """The routes of a mapping file, tried in order (module doc)."""

    routes: tuple[Route, ...]
    source: str = "<map>"

    @classmethod
    def load(cls, path: Path | str) -> TopicMap:
        """Read and check a mapping file (MapFileError naming file, route and key)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MapFileError(f"--map {path}: cannot read it: {exc}") from exc
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "<map>") -> TopicMap:
        """Check the TOML text of a mapping file; ``source`` names it in errors."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MapFileError(f"--map {source}: not valid TOML: {exc}") from exc
        extra = sorted(set(document) - {"route"})
        if extra:
            raise MapFileError(f"--map {source}: unknown table {extra[0]!r}: expected [[route]]")
        tables = document.get("route")
        if not isinstance(tables, list) or not tables:
            raise MapFileError(f"--map {source}: no [[route]] tables: expected at least one")
        routes = []
        for number, table in enumerate(tables, start=1):
            try:
                routes.append(_route(table))
            except _KeyError as exc:
                raise MapFileError(f"--map {source}: route {number}: {exc}") from None
        return cls(tuple(routes), source)

    @property
    def filters(self) -> tuple[str, ...]:
        """The routes' topic filters, each once, in file order (what to subscribe to)."""
        return tuple(dict.fromkeys(route.topic for route in self.routes))

    def route(self, topic: str) -> Route | None:
        """The first route whose filter matches ``topic``."""
        for route in self.routes:
            if matches(route.topic, topic):
                return route
        return None

    def map(self, topic: str, payload: bytes, received: float) -> dict[str, Any]:
        """The reading's fields (for :meth:`IngestGateway.offer`) from one message;
        ``received`` is the gateway's clock (epoch seconds), used by ``ts = "received"``."""
        route = self.route(topic)
        if route is None:
            raise PayloadError(f"no route matches topic {topic!r}", "topic")
        return route.map(topic.split("/"), payload, received)


class _KeyError(Exception):
    """A bad key in one route table (the caller adds the file and route)."""


def _route(table: Any) -> Route:
    if not isinstance(table, dict):
        raise _KeyError("expected a table of keys")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise _KeyError(f"unknown key {unknown[0]!r}: expected one of {', '.join(sorted(_KEYS))}")
    for key in ("topic", "machine_id", "sensor", "ts"):
        if key not in table:
            raise _KeyError(f"{key}: missing")
    for key, value in table.items():
        if not isinstance(value, str):
            raise _KeyError(f"{key}={value!r}: expected text")
    topic = _checked("topic", table["topic"], check_filter)
    payload = table.get("payload", "json")
    if payload not in PAYLOADS:
        raise _KeyError(f"payload={payload!r}: expected {'|'.join(PAYLOADS)}")
    ts_unit = table.get("ts_unit", "s")
    if ts_unit not in TS_UNITS:
        raise _KeyError(f"ts_unit={ts_unit!r}: expected {'|'.join(TS_UNITS)}")
    fixed = "#" not in topic
    depth = len(topic.split("/"))

    def source(key: str, default: str = "") -> Source:
        text = table.get(key, default)
        if text.startswith("$"):
            if payload == "number":
                raise _KeyError(f"{key}={text!r}: a number payload has no fields")
            return _checked(key, text, JsonPath.parse)
        template = _checked(key, text, Template.parse)
        far = [level for level in template.levels if level >= depth]
        if fixed and far:
            raise _KeyError(
                f"{key}={text!r}: level {{{far[0]}}} is past the filter's last level "
                f"{{{depth - 1}}} (levels count from 0)"
            )
        return template

    if payload == "number":
        if table.get("value", "$") != "$":
            raise _KeyError(f"value={table['value']!r}: a number payload is the value: use '$'")
        if table["ts"] != "received":
            raise _KeyError(f"ts={table['ts']!r}: a number payload carries no time: use 'received'")
    if "value" not in table and payload == "json":
        raise _KeyError("value: missing (a JSON path like $.v)")
    value = _checked("value", table.get("value", "$"), JsonPath.parse)
    ts = None if table["ts"] == "received" else _checked("ts", table["ts"], JsonPath.parse)
    return Route(
        topic=topic,
        machine_id=source("machine_id"),
        sensor=source("sensor"),
        payload=payload,
        value=value,
        ts=ts,
        ts_unit=ts_unit,
        unit=source("unit"),
    )


def _checked(key: str, text: str, parse: Any) -> Any:
    try:
        return parse(text)
    except ValueError as exc:
        message = re.sub(r"^[a-z ]+ '.*?': ", "", str(exc), count=1)  # the key says what
        if not message.startswith(repr(text)):
            message = f"{text!r}: {message}"
        raise _KeyError(f"{key}={message}") from None


# -- reading a payload ---------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return document


def _utf8(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = payload[exc.start : exc.start + 8]
        raise PayloadError(
            f"payload: invalid UTF-8 at byte {exc.start}, got {bad!r}", "payload"
        ) from None


def _json(payload: bytes) -> Any:
    """The payload as a JSON document: strict UTF-8, no NaN/Infinity, no duplicate keys."""
    text = _utf8(payload)
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise PayloadError("payload: JSON nested too deeply", "payload") from None
    except ValueError as exc:  # JSONDecodeError too
        raise PayloadError(f"payload: not JSON: {exc}", "payload") from None


def _number(payload: bytes) -> float:
    """A plain-text number (JSON's number syntax, surrounding whitespace allowed)."""
    _utf8(payload)
    try:
        return _NUMBER.decode(payload)
    except msgspec.DecodeError:
        raise PayloadError(
            f"payload: expected a plain number, got {_short(payload)!r}", "payload"
        ) from None


def _text(source: Source, levels: list[str], document: Any, name: str) -> str:
    if isinstance(source, Template):
        return source.render(levels)
    found = source.find(document)
    if not isinstance(found, str):
        raise PayloadError(
            f"field `{source.text}`: expected text for {name}, got {_short(found)!r}",
            source.text,
        )
    return found


def _time(found: Any, path: str, unit: str) -> Any:
    """The reading's time from a payload field: a datetime (epoch numbers, converted exactly
    for integers) or ISO text (the contract's decoder checks it has a timezone)."""
    if unit == "iso":
        if not isinstance(found, str):
            raise PayloadError(
                f"field `{path}`: expected ISO-8601 text (ts_unit='iso'), got {_short(found)!r}",
                path,
            )
        return found
    if isinstance(found, bool) or not isinstance(found, int | float):
        raise PayloadError(
            f"field `{path}`: expected epoch {unit} (a number), got {_short(found)!r}", path
        )
    numerator, denominator = _MICROS_PER[unit]
    try:
        if isinstance(found, int):
            micros = found * numerator // denominator
        else:
            micros = round(found * numerator / denominator)
        return _EPOCH + timedelta(microseconds=micros)
    except (OverflowError, ValueError):
        raise PayloadError(
            f"field `{path}`: epoch {unit} out of range, got {_short(found)!r}", path
        ) from None


def _short(value: Any) -> Any:
    text = repr(value)
    if len(text) <= 60:
        return value
    return value[:50] if isinstance(value, str | bytes) else text[:50] + "..."
