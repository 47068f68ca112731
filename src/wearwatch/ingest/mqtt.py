"""The MQTT subscriber: a broker's QoS 1 messages onto the log through the gateway, exactly once.

Nothing the broker delivered is lost when this process dies, because the broker still holds it:

- **persistent session**: MQTT 5 with ``clean_start=False``, a session expiry and a stable
  client id, so the broker keeps the subscriptions and queues QoS 1 messages while the ingest
  is down, and delivers again (same packet ids) whatever was unacknowledged when it went;
- **manual acknowledgement**: a message's PUBACK is sent only by the gateway's callback, after
  the batch holding it is durable in the log (paho-mqtt's ``manual_ack``; aiomqtt 2 does not
  expose it yet, see https://github.com/empicano/aiomqtt/issues/345, so it is set on the paho
  client aiomqtt wraps);
- **receive maximum** = the batch size: the broker sends at most that many unacknowledged
  messages, so a batch can fill (mosquitto's default window of 20 would keep every batch at 20
  and make each wait the linger time), and what a crash can leave in flight is bounded — the
  gateway recognises those redeliveries by reading id and writes them once.

A connection that drops writes its pending batch (the readings are valid), acknowledges
nothing on the dead connection, and reconnects with capped exponential backoff; the broker
redelivers the unacknowledged messages and the gateway acknowledges them as duplicates.
A stop request (SIGTERM, Ctrl-C) writes the batch, acknowledges it, and disconnects cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from wearwatch.ingest.gateway import Ack, IngestGateway
from wearwatch.ingest.mqtt_map import PayloadError, TopicMap, check_filter

#: Largest Receive Maximum MQTT 5 can carry (a two-byte integer).
MAX_RECEIVE = 65_535
SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}


@dataclass(frozen=True)
class Broker:
    """Where the broker listens: ``mqtt://host[:port]`` (1883) or ``mqtts://`` (TLS, 8883).

    >>> Broker.parse("mqtt://plant-gw:1884")
    Broker(host='plant-gw', port=1884, tls=False)
    >>> Broker.parse("mqtts://broker.plant.example").port
    8883
    >>> Broker.parse("tcp://x")
    Traceback (most recent call last):
    ...
    ValueError: --broker 'tcp://x': expected mqtt://host[:port] or mqtts://host[:port]
    """

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Broker:
        expected = f"--broker {url!r}: expected mqtt://host[:port] or mqtts://host[:port]"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:  # a port that is not a number in 0..65535
            raise ValueError(f"{expected} ({exc})") from None
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValueError(expected)
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{expected} (no path, query or user: see --username)")
        default_port, tls = SCHEMES[parts.scheme]
        return cls(parts.hostname, port or default_port, tls)


def default_client_id(broker: Broker, filters: tuple[str, ...]) -> str:
    """A client id that is the same on every start for the same broker and topics, so a
    restart resumes the broker's session (a random one would orphan the queued messages).
    22 characters: MQTT only promises 23 to every client.

    >>> default_client_id(Broker("h", 1883, False), ("plant/+/+/reading",))
    'wearwatch-e6649fadaaf6'
    """
    key = "\n".join((broker.host, str(broker.port), *filters))
    return "wearwatch-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SubscriberOptions:
    """How to reach the broker and hold the session."""

    broker: Broker
    #: Topic filters to subscribe to (QoS 1).
    filters: tuple[str, ...]
    client_id: str
    #: Messages the broker may send before their acknowledgement (MQTT 5 Receive Maximum).
    receive_maximum: int = 5000
    #: How long the broker keeps the session (and queues messages) after a disconnect.
    session_expiry_s: int = 7 * 24 * 3600
    username: str | None = None
    password: str | None = None
    #: CA certificates that sign the broker's (mqtts://); None: the system's.
    tls_ca: Path | None = None
    keepalive_s: int = 30
    #: First wait before reconnecting; doubles up to ``backoff_max_s``.
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    #: Seconds between status lines (0: none).
    status_every_s: float = 10.0

    def __post_init__(self) -> None:
        for topic_filter in self.filters:
            check_filter(topic_filter)
        if not self.filters:
            raise ValueError("--topic: expected at least one topic filter")
        if not 1 <= self.receive_maximum <= MAX_RECEIVE:
            raise ValueError(f"receive_maximum={self.receive_maximum}: expected 1..{MAX_RECEIVE}")
        if not self.client_id or len(self.client_id.encode()) > 65_535:
            raise ValueError(f"--client-id {self.client_id!r}: expected 1..65535 bytes")
        if not 0 <= self.session_expiry_s <= 0xFFFFFFFF:
            raise ValueError(f"--session-expiry-s {self.session_expiry_s}: expected 0..4294967295")
        if self.tls_ca is not None and not self.broker.tls:
            raise ValueError("--tls-ca: the broker URL must be mqtts:// to use TLS")
        if not 0 < self.backoff_s <= self.backoff_max_s or not math.isfinite(self.backoff_max_s):
            raise ValueError(
                f"backoff {self.backoff_s}..{self.backoff_max_s}: expected 0 < first <= max"
            )


@dataclass
class _Connection:
    """One connection's identity: acknowledgements only go back on the connection that
    received the message (packet ids belong to it). ``inbox`` is the client's message queue,
    drained without a wait per message once one has arrived."""

    client: aiomqtt.Client
    inbox: asyncio.Queue[aiomqtt.Message]
    alive: bool = True


@dataclass
class SubscriberCounts:
    """What the subscriber has seen (the gateway counts readings, letters and duplicates)."""

    connects: int = 0
    disconnects: int = 0
    messages: int = 0
    acked: int = 0
    unacked_on_drop: int = 0


class MqttSubscriber:
    """Subscribe, map, hand to the gateway, write by size and linger, acknowledge after the
    write (module doc). ``status`` receives a one-line summary every ``status_every_s``."""

    def __init__(
        self,
        gateway: IngestGateway,
        topic_map: TopicMap,
        options: SubscriberOptions,
        *,
        status: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = gateway
        self.topic_map = topic_map
        self.options = options
        self.counts = SubscriberCounts()
        self._status = status
        self._clock = clock
        self._connection: _Connection | None = None
        self._next_status = time.monotonic() + options.status_every_s

    async def run(self, stop: asyncio.Event) -> None:
        """Receive until ``stop`` is set; reconnect with backoff when the broker goes away
        (the backoff starts over once a connection has been made)."""
        backoff = self.options.backoff_s
        while not stop.is_set():
            connects = self.counts.connects
            try:
                await self._session(stop)
                return
            except aiomqtt.MqttError as exc:
                self._drop()
                if self.counts.connects > connects:
                    backoff = self.options.backoff_s
                self._report(f"broker {self._where()}: {exc}; retrying in {backoff:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, self.options.backoff_max_s)

    async def _session(self, stop: asyncio.Event) -> None:
        inboxes: list[asyncio.Queue[aiomqtt.Message]] = []
        client = self._client(inboxes.append)
        # Before connecting: a resumed session's queued messages arrive right after CONNACK.
        client._client.manual_ack_set(True)  # aiomqtt#345: paho underneath
        async with client:
            connection = _Connection(client, inboxes[0])
            self._connection = connection
            self.counts.connects += 1
            options = SubscribeOptions(qos=1, retainHandling=1)  # retained: on first only
            granted = await client.subscribe([(f, options) for f in self.options.filters])
            for warning in check_granted(self.options.filters, granted):
                self._report(warning)
            self._report(f"subscribed to {', '.join(self.options.filters)} at {self._where()}")
            await self._receive(connection, stop)
            self.gateway.flush()  # stopping: write and acknowledge before disconnecting
            self._connection = None
            connection.alive = False

    async def _receive(self, connection: _Connection, stop: asyncio.Event) -> None:
        messages = connection.client.messages
        stopping = asyncio.ensure_future(stop.wait())
        incoming: asyncio.Future[aiomqtt.Message] = asyncio.ensure_future(anext(messages))
        try:
            while True:
                timeout = self.gateway.time_to_due()
                if self.options.status_every_s:
                    until_status = max(0.0, self._next_status - time.monotonic())
                    timeout = until_status if timeout is None else min(timeout, until_status)
                done, _ = await asyncio.wait(
                    (incoming, stopping), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if incoming in done:
                    self._handle(connection, incoming.result())  # raises MqttError on drop
                    self._drain(connection)
                    incoming = asyncio.ensure_future(anext(messages))
                if self.gateway.due():
                    self.gateway.flush()
                self._maybe_status()
                if stopping in done:
                    return
        finally:
            for task in (incoming, stopping):
                task.cancel()

    def _drain(self, connection: _Connection) -> None:
        """Handle the messages already received, until the batch is due."""
        while not self.gateway.due():
            try:
                message = connection.inbox.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._handle(connection, message)

    def _handle(self, connection: _Connection, message: aiomqtt.Message) -> None:
        self.counts.messages += 1
        topic = message.topic.value
        payload = message.payload
        raw = payload if isinstance(payload, bytes) else str(payload).encode()
        origin = f"mqtt:{topic}"
        ack = self._acker(connection, message.mid) if message.qos > 0 else None
        try:
            fields = self.topic_map.map(topic, raw, self._clock())
        except PayloadError as exc:
            self.gateway.reject(raw, origin, str(exc), exc.field, ack)
        else:
            self.gateway.offer(fields, raw, origin, ack)

    def _acker(self, connection: _Connection, mid: int) -> Ack:
        def ack() -> None:
            if connection.alive:
                connection.client._client.ack(mid, 1)  # aiomqtt#345: paho underneath
                self.counts.acked += 1
            else:
                self.counts.unacked_on_drop += 1

        return ack

    def _drop(self) -> None:
        """The connection is gone: nothing more can be acknowledged on it; write what it
        delivered (the broker sends it again, and the gateway acknowledges the duplicates)."""
        if self._connection is not None:
            self._connection.alive = False
            self._connection = None
            self.counts.disconnects += 1
        self.gateway.flush()

    def _client(
        self, keep_inbox: Callable[[asyncio.Queue[aiomqtt.Message]], None]
    ) -> aiomqtt.Client:
        """A client for the options; ``keep_inbox`` receives the queue it delivers into."""
        options = self.options

        def inbox(maxsize: int = 0) -> asyncio.Queue[aiomqtt.Message]:
            queue: asyncio.Queue[aiomqtt.Message] = asyncio.Queue(maxsize)
            keep_inbox(queue)
            return queue

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = options.session_expiry_s
        properties.ReceiveMaximum = options.receive_maximum
        tls_context = None
        if options.broker.tls:
            tls_context = ssl.create_default_context(
                cafile=str(options.tls_ca) if options.tls_ca else None
            )
        return aiomqtt.Client(
            options.broker.host,
            options.broker.port,
            identifier=options.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            username=options.username,
            password=options.password,
            tls_context=tls_context,
            keepalive=options.keepalive_s,
            timeout=10.0,
            queue_type=inbox,  # type: ignore[arg-type]  # a factory: aiomqtt calls it once
        )

    def _where(self) -> str:
        broker = self.options.broker
        return f"{'mqtts' if broker.tls else 'mqtt'}://{broker.host}:{broker.port}"

    def status_line(self) -> str:
        """One line: connection, messages, what the gateway wrote, deduplicated and holds."""
        gw = self.gateway.counts
        state = "connected" if self._connection is not None else "disconnected"
        return (
            f"mqtt {state} · messages {self.counts.messages:,} · readings {gw['written']:,} · "
            f"dead letters {gw['dead_letters']:,} · duplicates {gw['duplicates']:,} · "
            f"batches {gw['batches']:,} · pending {self.gateway.pending:,} · "
            f"reconnects {max(0, self.counts.connects - 1):,}"
        )

    def _maybe_status(self) -> None:
        if not self.options.status_every_s or time.monotonic() < self._next_status:
            return
        self._next_status = time.monotonic() + self.options.status_every_s
        self._report(self.status_line())

    def _report(self, line: str) -> None:
        if self._status is not None:
            self._status(line)


def check_granted(filters: tuple[str, ...], granted: Any) -> list[str]:
    """Raise if the broker refused a subscription (SUBACK reason ≥ 0x80: not authorised, a
    bad filter...) — the ingest would wait forever for nothing; return a warning per filter
    granted only QoS 0 (its messages are neither acknowledged nor redelivered).

    >>> from paho.mqtt.reasoncodes import ReasonCode
    >>> check_granted(("a/#",), [ReasonCode(PacketTypes.SUBACK, identifier=0)])
    ["broker granted 'a/#' only QoS 0: its messages can be lost"]
    >>> check_granted(("a/#",), [ReasonCode(PacketTypes.SUBACK, identifier=0x87)])
    Traceback (most recent call last):
    ...
    ValueError: --topic 'a/#': the broker refused the subscription: Not authorized
    """
    warnings = []
    for topic_filter, code in zip(filters, granted, strict=True):
        value = getattr(code, "value", code)
        if value >= 0x80:
            raise ValueError(
                f"--topic {topic_filter!r}: the broker refused the subscription: {code}"
            )
        if value == 0:
            warnings.append(f"broker granted {topic_filter!r} only QoS 0: its messages can be lost")
    return warnings
