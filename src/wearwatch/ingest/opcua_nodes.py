"""The OPC UA nodes file: which server variables become which readings (TOML).

A plant's OPC UA server names its variables by NodeId (``ns=2;s=Pump7.Vibration``, ``i=2258``);
the event contract wants a ``machine_id``, a ``sensor``, a unit and a number. The nodes file
says how, with two kinds of entries::

    [[node]]                          # one variable
    node = "ns=2;s=Pump7.Vibration"   # its NodeId (OPC UA text form)
    machine_id = "pump-7"
    sensor = "vibration"
    unit = "mm/s"                     # optional; absent: the node's EngineeringUnits, else ""
    scale = 1.0                       # optional: value = raw * scale + offset
    offset = 0.0

    [[browse]]                        # every variable of every object under a folder
    folder = "ns=2;s=Plant"           # machine_id = the object's BrowseName,
    scale = 1.0                       # sensor = the variable's BrowseName
    offset = 0.0

A ``[[node]]`` entry wins over a browsed variable with the same NodeId. Every error names the
file, the entry and the key:

>>> nodes = parse_nodes('''
... [[node]]
... node = "ns=2;s=Pump7.Vibration"
... machine_id = "pump-7"
... sensor = "vibration"
... unit = "mm/s"
... ''', "plant.toml")
>>> entry = nodes.nodes[0]
>>> entry.node, entry.machine_id, entry.sensor, entry.unit, entry.scaled(2.5)
('ns=2;s=Pump7.Vibration', 'pump-7', 'vibration', 'mm/s', 2.5)
>>> bad = '[[node]]\\nnode = "ns=2;x=P7"\\nmachine_id = "p7"\\nsensor = "v"'
>>> try:
...     parse_nodes(bad, "plant.toml")
... except NodesFileError as exc:
...     print(exc)
plant.toml: node[0].node = 'ns=2;x=P7': not an OPC UA NodeId (e.g. ns=2;s=Pump7.Vibration or i=2258)
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import msgspec
from asyncua import ua

#: The contract's id limits (``events.Id``): 1 to 200 characters.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Factor = Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)]


class NodesFileError(ValueError):
    """A nodes file that cannot be used; the message names the file, the entry and the key."""


class NodeEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One mapped variable: its NodeId, the reading's machine and sensor, unit and scaling."""

    node: str
    machine_id: Name
    sensor: Name
    #: ``None``: read from the node's ``EngineeringUnits`` property (``""`` without one).
    unit: str | None = None
    scale: Factor = 1.0
    offset: Factor = 0.0

    def scaled(self, raw: float) -> float:
        """The reading's value: ``raw * scale + offset`` (may overflow to ±inf: the caller
        checks finiteness after scaling).

        >>> NodeEntry(node="i=1", machine_id="m", sensor="s", scale=0.1, offset=-5).scaled(700)
        65.0
        """
        return raw * self.scale + self.offset


class BrowseRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every variable of every object under ``folder``: machine = the object's BrowseName,
    sensor = the variable's BrowseName, unit from its EngineeringUnits."""

    folder: str
    scale: Factor = 1.0
    offset: Factor = 0.0

    def entry(self, node: str, machine_id: str, sensor: str) -> NodeEntry:
        """The entry of one browsed variable.

        >>> BrowseRule(folder="i=85", scale=2.0).entry("ns=2;s=P1.T", "P1", "T").scale
        2.0
        """
        return NodeEntry(
            node=node, machine_id=machine_id, sensor=sensor, scale=self.scale, offset=self.offset
        )


class NodesFile(msgspec.Struct, frozen=True):
    """A parsed nodes file: explicit entries and browse rules."""

    nodes: tuple[NodeEntry, ...] = ()
    browse: tuple[BrowseRule, ...] = ()


def parse_node_id(text: str) -> ua.NodeId:
    """A NodeId from its OPC UA text form (asyncua's parser); ``ValueError`` if it is not one.

    >>> parse_node_id("ns=2;s=Pump7.Vibration").to_string()
    'ns=2;s=Pump7.Vibration'
    >>> parse_node_id("i=2258").Identifier
    2258
    """
    try:
        node_id = ua.NodeId.from_string(text)
    except Exception:  # asyncua raises several kinds (UaStringParsingError, ValueError...)
        raise ValueError(text) from None
    if node_id.is_null():
        raise ValueError(text)
    return node_id


def parse_nodes(text: str, name: str = "nodes file") -> NodesFile:
    """Parse and check a nodes file's TOML text; ``name`` names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NodesFileError(f"{name}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - {"node", "browse"})
    if unknown:
        raise NodesFileError(f"{name}: unknown table {unknown[0]!r}; expected node or browse")
    nodes = tuple(_entries(doc, "node", NodeEntry, name))
    rules = tuple(_entries(doc, "browse", BrowseRule, name))
    if not nodes and not rules:
        raise NodesFileError(f"{name}: no [[node]] or [[browse]] entry; nothing to subscribe to")
    check_unique(nodes, name)
    return NodesFile(nodes=nodes, browse=rules)


def load_nodes(path: Path) -> NodesFile:
    """Read and check a nodes file (errors name the file, the entry and the key)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise NodesFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise NodesFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_nodes(text, Path(path).name)


def check_unique(entries: Iterable[NodeEntry], name: str) -> None:
    """Refuse two entries for one NodeId, or two nodes feeding one (machine, sensor): one
    sensor has one value at one instant, so their readings would overwrite each other.

    >>> a = NodeEntry(node="i=1", machine_id="m", sensor="s")
    >>> check_unique([a, NodeEntry(node="i=2", machine_id="m", sensor="s")], "f.toml")
    Traceback (most recent call last):
    ...
    wearwatch.ingest.opcua_nodes.NodesFileError: f.toml: node[1]: machine_id 'm', sensor 's' \
is already node[0] (i=1)
    """
    by_node: dict[str, int] = {}
    by_reading: dict[tuple[str, str], int] = {}
    items = list(entries)
    for i, entry in enumerate(items):
        key = parse_node_id(entry.node).to_string()
        if key in by_node:
            raise NodesFileError(
                f"{name}: node[{i}].node = {entry.node!r}: already node[{by_node[key]}]"
            )
        by_node[key] = i
        reading = (entry.machine_id, entry.sensor)
        if reading in by_reading:
            j = by_reading[reading]
            raise NodesFileError(
                f"{name}: node[{i}]: machine_id {entry.machine_id!r}, sensor {entry.sensor!r} "
                f"is already node[{j}] ({items[j].node})"
            )
        by_reading[reading] = i


def _entries(doc: dict[str, Any], table: str, kind: type, name: str) -> Iterable[Any]:
    items = doc.get(table, [])
    if not isinstance(items, list):
        raise NodesFileError(f"{name}: {table}: expected an array of tables ([[{table}]])")
    for i, item in enumerate(items):
        where = f"{table}[{i}]"
        if not isinstance(item, dict):
            raise NodesFileError(f"{name}: {where}: expected a table")
        for key in ("scale", "offset"):  # TOML has nan and inf; say so plainly
            value = item.get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise NodesFileError(f"{name}: {where}.{key} = {value!r}: expected a finite number")
        try:
            entry = msgspec.convert(item, kind)
        except msgspec.ValidationError as exc:
            raise NodesFileError(f"{name}: {where}{_located(exc, item)}") from None
        key = "node" if table == "node" else "folder"
        try:
            parse_node_id(getattr(entry, key))
        except ValueError:
            raise NodesFileError(
                f"{name}: {where}.{key} = {item[key]!r}: not an OPC UA NodeId "
                "(e.g. ns=2;s=Pump7.Vibration or i=2258)"
            ) from None
        yield entry


def _located(exc: msgspec.ValidationError, item: dict[str, Any]) -> str:
    """``.key = value: message`` from msgspec's ``message - at `$.key```."""
    message, _, path = str(exc).partition(" - at `$")
    key = path.rstrip("`").lstrip(".")
    if message.startswith("Object contains unknown field"):
        return f": unknown key {message.rsplit(' ', 1)[-1].strip('`')!r}"
    if message.startswith("Object missing required field"):
        return f": missing key {message.rsplit(' ', 1)[-1].strip('`')!r}"
    if key in item:
        return f".{key} = {item[key]!r}: {message[0].lower()}{message[1:]}"
    return f": {message}"
