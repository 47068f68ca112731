"""OPC UA ingest: subscribe to a server's variables and hand every data change to the gateway.

:class:`OpcuaIngest` connects with asyncua, resolves the nodes file (explicit ``[[node]]``
entries, ``[[browse]]`` folders, units from ``EngineeringUnits``), creates one subscription
(publishing interval ``interval_ms``) with a monitored item per variable on its Value attribute
(queue ``queue_size``, oldest discarded; trigger *status, value or timestamp*, so a sensor that
repeats a value at a new instant is still a new reading), and passes every data change to
:class:`~wearwatch.ingest.gateway.IngestGateway` with origin ``opcua:<NodeId>``:

- the reading's time is the DataValue's **SourceTimestamp** (when the device measured it);
  without one, the ServerTimestamp (counted in ``server_ts_fallback``); without either, a dead
  letter;
- a status that is not Good (Bad or Uncertain), a value that is not a number (a string, an
  array, a Boolean) or is NaN/±inf after scaling is a **dead letter** whose reason names the
  status (``BadSensorFailure``) or the value;
- the dead letter's (and the dedup's) raw bytes are a canonical JSON of the DataValue, keys
  sorted, no spaces (:func:`canonical_bytes`)::

    {"node":"ns=2;s=P1.T","status":"Good","ts":"2026-01-01T00:00:00.010000+00:00",
     "ts_from":"source","type":"Double","value":61.5}

  (``value`` NaN/±inf as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; ``ts`` the
  timestamp used, so one sample read twice has the same bytes);
- when the server goes away (socket closed, or asyncua's watchdog finds it silent) the client
  reconnects with capped exponential backoff (``backoff_s`` doubling up to ``backoff_max_s``),
  re-creates the subscription and **reads every node's current value once**, so no node stays
  missing; the gateway deduplicates by ``(machine_id, sensor, source ts)``, so a value read
  again (or re-sent as a new subscription's first notification) is not written twice.

**What is guaranteed.** OPC UA has no per-message acknowledgement: the server's monitored-item
queue is not durable and is gone with the client's session. So:

- every data change the server delivers while the client is connected is written exactly
  once (by reading id) once the gateway flushes (``max_batch`` or ``linger_s``);
- after any restart or reconnect, the current value of every node is written (once);
- values that changed *and changed again* while the client was down (crash, network, server
  restart) are lost — only the latest survives — and so is a data change received but not yet
  flushed when the process is killed (its successor or the re-read covers the node's current
  value);
- **with** ``history`` (the server historizes the nodes): after every (re)connect each node's
  values after its latest reading in the log are read back (HistoryRead) and written, so
  nothing is lost and nothing written twice — ``IngestGateway.latest`` knows that time for every
  sensor written since start or found in the tail it read back on start; a node with no
  reading there gets only its current value. A Bad value re-read from history is deduplicated
  by its dead-letter id (origin, bytes) like any other;
- the server's queue overflowing (changes faster than ``queue_size`` per publishing interval)
  drops the oldest; the OPC UA Overflow bit is counted in ``overflows``.

SIGTERM or Ctrl-C: the pending batch is written, the subscription deleted and the session
closed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from asyncua import Client, Node, ua

from wearwatch.ingest.gateway import IngestGateway
from wearwatch.ingest.opcua_nodes import (
    NodeEntry,
    NodesFile,
    NodesFileError,
    check_unique,
    parse_node_id,
)

log = logging.getLogger(__name__)

#: The security modes ``--security`` accepts.
SECURITY_MODES = ("None", "Basic256Sha256,Sign", "Basic256Sha256,SignAndEncrypt")
#: The OPC UA Overflow info bit (InfoType DataValue | Overflow): the server's queue dropped values.
_OVERFLOW_BITS = 0x0480
#: How long the server keeps a session the client went silent on, milliseconds.
SESSION_TIMEOUT_MS = 60_000
_ENCODE = msgspec.json.Encoder(order="sorted")
_NUMBERS = (int, float)


@dataclass(frozen=True)
class OpcuaOptions:
    """How the client connects and subscribes."""

    endpoint: str
    #: Publishing interval of the subscription, milliseconds.
    interval_ms: float = 100.0
    #: Values the server queues per node between publishes (oldest discarded when full).
    queue_size: int = 1000
    #: First reconnect delay and its cap, seconds (doubling in between).
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    #: Request timeout and the watchdog's probe interval, seconds.
    timeout_s: float = 4.0
    watchdog_s: float = 1.0
    username: str | None = None
    password: str | None = None
    #: One of :data:`SECURITY_MODES`; Sign/SignAndEncrypt need ``cert`` and ``key``.
    security: str = "None"
    cert: Path | None = None
    key: Path | None = None
    #: After every (re)connect, read each node's history after its latest reading in the log
    #: (OPC UA HistoryRead), so what changed while the client was down is written too.
    history: bool = False

    def __post_init__(self) -> None:
        if not self.endpoint.startswith("opc.tcp://"):
            raise ValueError(f"--endpoint {self.endpoint!r}: expected opc.tcp://host:port")
        if not (math.isfinite(self.interval_ms) and 0 <= self.interval_ms <= 3_600_000):
            raise ValueError(f"--interval-ms {self.interval_ms!r}: expected 0 to 3600000 ms")
        if not 1 <= self.queue_size <= 1_000_000:
            raise ValueError(f"--queue-size {self.queue_size!r}: expected 1 to 1000000")
        if not 0 < self.backoff_s <= self.backoff_max_s:
            raise ValueError(
                f"backoff {self.backoff_s!r}..{self.backoff_max_s!r}: expected 0 < first ≤ cap"
            )
        if self.security not in SECURITY_MODES:
            raise ValueError(
                f"--security {self.security!r}: expected one of {', '.join(SECURITY_MODES)}"
            )
        if self.security != "None" and (self.cert is None or self.key is None):
            raise ValueError(f"--security {self.security}: needs --cert and --key")
        if self.password is not None and self.username is None:
            raise ValueError("--password-file: needs --username")


def canonical_bytes(node: str, value: ua.DataValue) -> bytes:
    """The bytes a data change is identified by (and kept as, in a dead letter): its node,
    status, timestamp used, variant type and value as sorted JSON (module doc).

    >>> dv = ua.DataValue(ua.Variant(float("nan"), ua.VariantType.Double),
    ...                   SourceTimestamp=datetime(2026, 1, 1, tzinfo=UTC))
    >>> canonical_bytes("ns=2;s=P1.T", dv).decode()
    '{"node":"ns=2;s=P1.T","status":"Good","ts":"2026-01-01T00:00:00+00:00",\
"ts_from":"source","type":"Double","value":"NaN"}'
    """
    ts, ts_from = _timestamp(value)
    variant = value.Value
    return _ENCODE.encode(
        {
            "node": node,
            "status": _status_name(value.StatusCode),
            "ts": ts.isoformat() if ts is not None else None,
            "ts_from": ts_from,
            "type": variant.VariantType.name if variant is not None else None,
            "value": _jsonable(variant.Value if variant is not None else None),
        }
    )


@dataclass
class MappedNode:
    """The resolved mapping of one subscribed node (its unit read from the server if unset)."""

    entry: NodeEntry
    origin: str
    unit: str


@dataclass
class OpcuaIngest:
    """One OPC UA client feeding one gateway, reconnecting until :meth:`stop` (module doc)."""

    gateway: IngestGateway
    nodes: NodesFile
    options: OpcuaOptions
    #: ``connects``, ``reconnect_waits``, ``data_changes``, ``reads``, ``server_ts_fallback``,
    #: ``bad_status``, ``not_numeric``, ``not_finite``, ``no_timestamp``, ``overflows``,
    #: ``missing_nodes``, ``history_values``, ``history_errors``.
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "connects",
                "reconnect_waits",
                "data_changes",
                "reads",
                "server_ts_fallback",
                "bad_status",
                "not_numeric",
                "not_finite",
                "no_timestamp",
                "overflows",
                "missing_nodes",
                "history_values",
                "history_errors",
            ),
            0,
        )
    )
    #: Called after every (re)connection once the subscription exists and the current values
    #: are read, with the number of nodes subscribed (the CLI logs it; tests wait for it).
    on_subscribed: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        #: The nodes of the current session, by NodeId (resolved at every connect).
        self.mapped: dict[ua.NodeId, MappedNode] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """End :meth:`run`: the pending batch is written, the session closed."""
        self._stop.set()
        self._wake.set()

    async def run(self, install_signals: bool = True) -> None:
        """Connect, subscribe and ingest until :meth:`stop` (or SIGTERM/SIGINT), reconnecting
        with capped exponential backoff; a failing log write ends it with the exception."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        flusher = asyncio.create_task(self._flush_loop())
        try:
            delay = self.options.backoff_s
            while not self._stop.is_set():
                connected = False
                try:
                    connected = await self._session()
                except (OSError, TimeoutError, ua.UaError, ConnectionError) as exc:
                    log.warning("opcua %s: %s", self.options.endpoint, _describe(exc))
                if flusher.done():
                    break
                if self._stop.is_set():
                    break
                if connected:
                    delay = self.options.backoff_s
                self.counts["reconnect_waits"] += 1
                log.info("opcua: reconnecting in %.1f s", delay)
                await _wait(self._stop, delay)
                delay = min(delay * 2, self.options.backoff_max_s)
        finally:
            self._stop.set()
            self._wake.set()
            await flusher  # raises a log write's failure
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        self.gateway.flush()

    # -- one connection --------------------------------------------------------------------

    async def _session(self) -> bool:
        """One connection: subscribe, read current values, wait until it is lost or stopped.
        Returns whether it got as far as a subscription (to reset the backoff)."""
        client = Client(
            self.options.endpoint,
            timeout=self.options.timeout_s,
            watchdog_intervall=self.options.watchdog_s,
        )
        # Each connection opens a new session (none is resumed), so a session the server keeps
        # after a crash only queues for nobody: let it expire after a minute, not an hour.
        client.session_timeout = SESSION_TIMEOUT_MS
        await self._secure(client)
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            log.warning("opcua %s: connection lost (%s)", self.options.endpoint, _describe(exc))
            lost.set()

        client.connection_lost_callback = on_lost
        await client.connect()
        subscription = None
        try:
            self.counts["connects"] += 1
            self.mapped = await self._resolve(client)
            # Where each node's history starts: taken before the subscription exists, since
            # its first notifications (the current values) may be flushed during the read.
            starts = {
                node_id: self.gateway.latest(m.entry.machine_id, m.entry.sensor)
                for node_id, m in self.mapped.items()
            }
            subscription = await client.create_subscription(self.options.interval_ms, self)
            await self._monitor(subscription)
            if self.options.history:
                await self._read_history(client, starts)
            await self._read_current(client)
            if self.on_subscribed is not None:
                self.on_subscribed(len(self.mapped))
            await _first(lost, self._stop)
            return True
        finally:
            await self._close(client, subscription, clean=not lost.is_set())

    async def _close(self, client: Client, subscription: Any, clean: bool) -> None:
        try:
            async with asyncio.timeout(self.options.timeout_s):
                if clean and subscription is not None:
                    await subscription.delete()
                await client.disconnect()
        except Exception as exc:  # the server is gone: nothing left to close cleanly
            log.debug("opcua: disconnect: %s", _describe(exc))
            client.disconnect_socket()

    async def _secure(self, client: Client) -> None:
        if self.options.username is not None:
            client.set_user(self.options.username)
        if self.options.password is not None:
            client.set_password(self.options.password)
        if self.options.security != "None":
            await client.set_security_string(
                f"{self.options.security},{self.options.cert},{self.options.key}"
            )

    async def _resolve(self, client: Client) -> dict[ua.NodeId, MappedNode]:
        """The nodes to subscribe: the explicit entries, then every browsed variable not
        already mapped; units from EngineeringUnits where the entry has none."""
        entries = list(self.nodes.nodes)
        explicit = {parse_node_id(e.node) for e in entries}
        for rule in self.nodes.browse:
            entries += [
                e for e in await _browse(client, rule) if parse_node_id(e.node) not in explicit
            ]
        try:
            check_unique(entries, "nodes file (after browsing)")
        except NodesFileError as exc:
            raise ValueError(str(exc)) from None
        mapped: dict[ua.NodeId, MappedNode] = {}
        for entry in entries:
            node_id = parse_node_id(entry.node)
            unit = entry.unit
            if unit is None:
                unit = await _engineering_units(client.get_node(node_id))
            mapped[node_id] = MappedNode(entry, f"opcua:{node_id.to_string()}", unit)
        return mapped

    async def _monitor(self, subscription: Any) -> None:
        """One monitored item per node: trigger on status, value or timestamp, deep queue."""
        requests = []
        trigger = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        for handle, node_id in enumerate(self.mapped, start=1):
            params = ua.MonitoringParameters(
                ClientHandle=handle,
                SamplingInterval=0.0,
                QueueSize=self.options.queue_size,
                DiscardOldest=True,
                Filter=trigger,
            )
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=params,
                )
            )
        results = await subscription.create_monitored_items(requests)
        for node_id, result in zip(list(self.mapped), results, strict=True):
            if isinstance(result, ua.StatusCode):  # a failure: the node is not there (yet)
                self.counts["missing_nodes"] += 1
                log.error("opcua: cannot subscribe %s: %s", node_id.to_string(), result.name)

    async def _read_history(self, client: Client, starts: dict[ua.NodeId, datetime | None]) -> None:
        """Every node's values after the latest reading of it in the log (HistoryRead), in
        time order. A node with no reading in the log (or in the tail the gateway read back)
        gets no history read: only its current value, since its start is not known."""
        for node_id, latest in starts.items():
            if latest is None:
                continue
            start = latest + timedelta(microseconds=1)
            try:
                values = await client.get_node(node_id).read_raw_history(start, return_bounds=False)
            except ua.UaStatusCodeError as exc:
                self.counts["history_errors"] += 1
                log.warning("opcua: no history of %s: %s", node_id.to_string(), _describe(exc))
                continue
            for value in values:
                self.counts["history_values"] += 1
                self.offer(node_id, value)

    async def _read_current(self, client: Client) -> None:
        """Every node's current value, once: nothing stays missing after a (re)connect."""
        ids = list(self.mapped)
        params = ua.ReadParameters(
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for n in ids],
        )
        for node_id, value in zip(ids, await client.uaclient.read(params), strict=True):
            self.counts["reads"] += 1
            self.offer(node_id, value)

    # -- data changes ----------------------------------------------------------------------

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        """asyncua's subscription callback: one data change."""
        self.counts["data_changes"] += 1
        self.offer(node.nodeid, data.monitored_item.Value)

    def status_change_notification(self, status: Any) -> None:
        """asyncua's subscription status callback (the subscription ended server-side)."""
        log.warning("opcua: subscription status %s", status)

    def offer(self, node_id: ua.NodeId, value: ua.DataValue) -> str:
        """Map one DataValue to a reading (or a dead letter) and hand it to the gateway."""
        mapping = self.mapped.get(node_id)
        if mapping is None:  # a notification of a node no longer mapped (a stale subscription)
            return "ignored"
        self._wake.set()
        raw = canonical_bytes(node_id.to_string(), value)
        status = value.StatusCode or ua.StatusCode()
        if status.value & _OVERFLOW_BITS == _OVERFLOW_BITS:
            self.counts["overflows"] += 1
        if not status.is_good():
            self.counts["bad_status"] += 1
            reason = f"status {_status_name(status)} (0x{status.value:08X}) is not Good"
            return self.gateway.reject(raw, mapping.origin, reason, "status")
        ts, ts_from = _timestamp(value)
        if ts is None:
            self.counts["no_timestamp"] += 1
            reason = "no SourceTimestamp and no ServerTimestamp"
            return self.gateway.reject(raw, mapping.origin, reason, "ts")
        if ts_from == "server":
            self.counts["server_ts_fallback"] += 1
        variant = value.Value
        number = variant.Value if variant is not None else None
        if isinstance(number, bool) or not isinstance(number, _NUMBERS):
            self.counts["not_numeric"] += 1
            kind = variant.VariantType.name if variant is not None else "no value"
            reason = f"value {_short(number)} of type {kind} is not a number"
            return self.gateway.reject(raw, mapping.origin, reason, "value")
        scaled = mapping.entry.scaled(float(number))
        if not math.isfinite(scaled):
            self.counts["not_finite"] += 1
            reason = f"value {number!r} (scaled: {scaled!r}) is not finite"
            return self.gateway.reject(raw, mapping.origin, reason, "value")
        fields = {
            "machine_id": mapping.entry.machine_id,
            "sensor": mapping.entry.sensor,
            "value": scaled,
            "unit": mapping.unit,
            "ts": ts,
        }
        return self.gateway.offer(fields, raw, mapping.origin)

    async def _flush_loop(self) -> None:
        """Write the gateway's batch when it is due (full, or lingered), until stopped; a
        failing write stops the client (the exception ends :meth:`run`)."""
        try:
            await self._flush_until_stopped()
        except BaseException:
            self._stop.set()
            raise

    async def _flush_until_stopped(self) -> None:
        while True:
            if self.gateway.due():
                self.gateway.flush()
            if self._stop.is_set():
                return
            delay = self.gateway.time_to_due()
            self._wake.clear()
            if delay is None:
                await self._wake.wait()
            else:
                await _wait(self._wake, max(delay, 0.001))


# -- helpers -------------------------------------------------------------------------------


async def _browse(client: Client, rule: Any) -> list[NodeEntry]:
    """Every variable of every object under the rule's folder, as entries."""
    folder = client.get_node(parse_node_id(rule.folder))
    entries = []
    for machine in await folder.get_children(nodeclassmask=ua.NodeClass.Object):
        machine_name = (await machine.read_browse_name()).Name
        for variable in await machine.get_children(nodeclassmask=ua.NodeClass.Variable):
            sensor = (await variable.read_browse_name()).Name
            entries.append(rule.entry(variable.nodeid.to_string(), machine_name, sensor))
    return entries


async def _engineering_units(node: Node) -> str:
    """The display name of the node's EngineeringUnits property, ``""`` without one."""
    try:
        prop = await node.get_child("0:EngineeringUnits")
        info = await prop.read_value()
    except ua.UaError:
        return ""
    name = getattr(info, "DisplayName", None)
    return str(getattr(name, "Text", "") or "")


def _timestamp(value: ua.DataValue) -> tuple[datetime | None, str | None]:
    """The time a value is filed under: its source timestamp, else the server's."""
    for ts, kind in ((value.SourceTimestamp, "source"), (value.ServerTimestamp, "server")):
        if ts is not None:
            return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)), kind
    return None, None


def _status_name(status: ua.StatusCode | None) -> str:
    """The status code's name without its info bits (``Good``, ``BadSensorFailure``).

    >>> _status_name(ua.StatusCode(ua.StatusCodes.BadSensorFailure | 0x480))
    'BadSensorFailure'
    """
    code = (status or ua.StatusCode()).value & 0xFFFF0000
    try:
        return ua.StatusCode(code).name
    except Exception:  # a code asyncua does not know
        return f"0x{code:08X}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
