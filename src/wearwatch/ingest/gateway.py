"""The plant gateway: readings from a plant protocol (MQTT, OPC UA) onto the log, exactly once.

A protocol adapter hands every message it receives to :meth:`IngestGateway.offer` (mapped
fields: machine, sensor, value, unit, time) or :meth:`IngestGateway.reject` (a payload it could
not map), each with the message's raw bytes, where it came from and a callback that
acknowledges it to the plant. The gateway

- **validates** each reading against the event contract; a bad one becomes a
  :class:`~wearwatch.events.DeadLetter` with the reason naming the field and value, the origin
  (``mqtt:plant/p7/vibration``, ``opcua:ns=2;s=Pump7.Vib``) and the original bytes;
- **batches** like a Kafka producer: a batch is written when it holds ``max_batch`` messages or
  its oldest message has waited ``linger_s``; the readings go out as columnar (Arrow) records,
  each row in the partition its ``machine_id`` hashes to (as if sent alone);
- **acknowledges after the write**: every message's callback runs only once the records holding
  it are durable (``Log.flush``), so a crash loses nothing the plant was told it delivered —
  an unacknowledged message is delivered again (MQTT QoS 1, an OPC UA re-read);
- **deduplicates** what comes again: a reading's id is ``(machine_id, sensor, ts)`` — one sensor
  has one value at one instant — and a dead letter's is ``(origin, sha256 of its bytes)``. The
  ids written recently are remembered (at most ``max_ids``), and on start they are read back
  from the tail of the log (the last ``recover_records`` records of every partition), so a
  message redelivered after a crash between the write and its acknowledgement is acknowledged
  and not written twice. Redeliveries are bounded by what was in flight at the crash (the
  adapter's receive window), far fewer than the tail read back.

The gateway is synchronous and single-threaded; the adapter decides when to call
:meth:`flush` (``due()`` says when a batch is full or has lingered long enough).

>>> from wearwatch.bus.memory import MemoryLog
>>> log = MemoryLog()
>>> gw = IngestGateway(log, GatewayOptions(max_batch=2))
>>> acks = []
>>> gw.offer({"machine_id": "p7", "sensor": "vib", "value": 1.5, "ts": 0.0}, b"1.5",
...          "mqtt:plant/p7/vib", lambda: acks.append(1))
'queued'
>>> gw.offer({"machine_id": "p7", "sensor": "vib", "value": "x", "ts": 1.0}, b"x",
...          "mqtt:plant/p7/vib", lambda: acks.append(2))
'rejected'
>>> gw.due(), acks
(True, [])
>>> gw.flush(), acks
(2, [1, 2])
>>> gw.offer({"machine_id": "p7", "sensor": "vib", "value": 1.5, "ts": 0.0}, b"1.5",
...          "mqtt:plant/p7/vib", lambda: acks.append(3))
'duplicate'
>>> acks, gw.counts["written"], gw.counts["dead_letters"]
([1, 2, 3], 1, 1)
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from wearwatch import topics
from wearwatch.bus.base import Log, OutRecord, pack_by_partition
from wearwatch.columnar import decode_columns, encode_events, is_columnar
from wearwatch.events import (
    DeadLetter,
    EventDecodeError,
    Reading,
    decode_event,
    decode_record,
    encode,
    utc,
)

Ack = Callable[[], None]
Outcome = Literal["queued", "rejected", "duplicate"]
#: A reading's id: one sensor of one machine has one value at one instant (µs).
ReadingId = tuple[str, str, int]
#: A dead letter's id: where it came from and the SHA-256 of its bytes.
LetterId = tuple[str, str]

_ENCODE = msgspec.json.Encoder()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class GatewayOptions:
    """How the gateway batches and remembers (defaults suit a gateway of ~10⁴ messages/s)."""

    #: Messages (readings and dead letters) per write, like Kafka's ``batch.size``.
    max_batch: int = 5000
    #: Longest a message waits for its batch, seconds (Kafka's ``linger.ms``).
    linger_s: float = 0.05
    #: Ids remembered for deduplication (the oldest are forgotten first).
    max_ids: int = 1_000_000
    #: Records read back from the end of every partition on start to recover the ids written.
    recover_records: int = 64

    def __post_init__(self) -> None:
        for name, value, low in (
            ("max_batch", self.max_batch, 1),
            ("max_ids", self.max_ids, 1),
            ("recover_records", self.recover_records, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}={value!r}: expected an integer ≥ {low}")
        if not 0 <= self.linger_s <= 3600:  # nan fails too
            raise ValueError(f"linger_s={self.linger_s!r}: expected seconds in [0, 3600]")


class _Remembered:
    """A bounded set of ids: membership, and the oldest forgotten once it is full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[Any, None] = OrderedDict()

    def __contains__(self, item: Any) -> bool:
        return item in self._ids

    def add(self, item: Any) -> None:
        self._ids[item] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


def reading_id(reading: Reading) -> ReadingId:
    """The id a reading is deduplicated by: ``(machine_id, sensor, ts in µs)``."""
    return (reading.machine_id, reading.sensor, _micros(reading.ts))


def letter_id(origin: str, raw: bytes) -> LetterId:
    """The id a dead letter is deduplicated by: ``(origin, sha256(raw))``."""
    return (origin, hashlib.sha256(raw).hexdigest())


def _micros(ts: datetime) -> int:
    return round(ts.timestamp() * 1_000_000)


def _event_time(value: Any) -> Any:
    """A time for the contract's JSON: epoch seconds (int/float) become ISO text; text and
    datetimes pass through (the contract's decoder validates them)."""
    if isinstance(value, bool):
        return value  # refused by the decoder, naming the field
    if isinstance(value, int | float):
        try:
            return utc(float(value)).isoformat()
        except (OverflowError, OSError, ValueError):
            return value  # out of range: the decoder names it
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class IngestGateway:
    """Validate, batch, write, then acknowledge; deduplicate what comes again (module doc)."""

    def __init__(
        self,
        log: Log,
        options: GatewayOptions | None = None,
        *,
        topic: str = topics.READINGS.name,
        dead_letter_topic: str = topics.DEAD_LETTERS.name,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.options = options or GatewayOptions()
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self._clock = clock
        for name in (topic, dead_letter_topic):
            known = topics.TOPICS.get(name)
            if known is not None:
                known.create(log)  # with the partition count the contract pins
            else:
                log.create_topic(name)
        self._partitions = log.partitions(topic)
        self._written_readings = _Remembered(self.options.max_ids)
        #: The latest time (µs) written per (machine_id, sensor), from the recovered tail on.
        self._latest: dict[tuple[str, str], int] = {}
        self._written_letters = _Remembered(self.options.max_ids)
        self._readings: list[Reading] = []
        self._reading_ids: set[ReadingId] = set()
        self._letters: list[DeadLetter] = []
        self._letter_ids: set[LetterId] = set()
        self._acks: list[Ack] = []
        self._messages = 0
        self._oldest: float | None = None
        #: ``received``, ``written`` (readings), ``dead_letters``, ``duplicates``, ``batches``.
        self.counts = dict.fromkeys(
            ("received", "written", "dead_letters", "duplicates", "batches"), 0
        )
        self.recovered = self._recover()

    # -- what an adapter calls -----------------------------------------------------------------

    def offer(
        self, fields: Mapping[str, Any], raw: bytes, origin: str, ack: Ack | None = None
    ) -> Outcome:
        """A mapped message: ``machine_id``, ``sensor``, ``value``, optional ``unit`` and ``ts``
        (epoch seconds, ISO text or a datetime). Invalid fields make it a dead letter naming
        the field and value."""
        event = {"type": "reading", **fields}
        if "ts" in event:
            event["ts"] = _event_time(event["ts"])
        try:
            reading = decode_event(_ENCODE.encode(event), Reading)
        except (EventDecodeError, TypeError) as exc:  # TypeError: a value JSON cannot hold
            field = exc.field if isinstance(exc, EventDecodeError) else ""
            return self.reject(raw, origin, str(exc), field, ack)
        self.counts["received"] += 1
        rid = reading_id(reading)
        if rid in self._written_readings:
            return self._duplicate(ack)
        if rid in self._reading_ids:
            self._queue_ack(ack)
            self.counts["duplicates"] += 1
            return "duplicate"
        self._reading_ids.add(rid)
        self._readings.append(reading)
        self._queue_ack(ack)
        return "queued"

    def reject(
        self, raw: bytes, origin: str, reason: str, field: str = "", ack: Ack | None = None
    ) -> Outcome:
        """A message that cannot become a reading: a dead letter with ``reason`` and ``raw``."""
        self.counts["received"] += 1
        lid = letter_id(origin, raw)
        if lid in self._written_letters:
            return self._duplicate(ack)
        if lid in self._letter_ids:
            self._queue_ack(ack)
            self.counts["duplicates"] += 1
            return "rejected"
        self._letter_ids.add(lid)
        self._letters.append(
            DeadLetter(
                ts=utc(time.time()),
                source_topic=origin,
                reason=reason,
                field=field,
                raw=bytes(raw),
            )
        )
        self._queue_ack(ack)
        return "rejected"

    def due(self) -> bool:
        """Whether the batch should be written now: full, or its oldest message has waited
        ``linger_s``."""
        if not self._messages:
            return False
        if self._messages >= self.options.max_batch:
            return True
        assert self._oldest is not None
        return self._clock() - self._oldest >= self.options.linger_s

    def time_to_due(self) -> float | None:
        """Seconds until :meth:`due` turns true by lingering (``None``: nothing pending)."""
        if self._oldest is None:
            return None
        return max(0.0, self.options.linger_s - (self._clock() - self._oldest))

    @property
    def pending(self) -> int:
        """Messages received and not yet acknowledged."""
        return self._messages

    def flush(self) -> int:
        """Write the batch (readings as columnar records, dead letters as JSON), make it
        durable, then acknowledge every message in it in arrival order; returns how many
        messages were acknowledged. A write that fails raises and acknowledges nothing: the
        plant delivers those messages again."""
        if not self._messages:
            return 0
        records: list[OutRecord] = []
        if self._readings:
            records += pack_by_partition(
                self.topic,
                self._readings,
                lambda r: r.machine_id,  # type: ignore[attr-defined]
                self._partitions,
                encode_events,  # type: ignore[arg-type]
                max_batch=self.options.max_batch,
            )
        for letter in self._letters:
            records.append(
                OutRecord(self.dead_letter_topic, letter.source_topic.encode(), encode(letter))
            )
        self.log.produce(records)
        self.log.flush()
        for rid in self._reading_ids:
            self._remember_reading(rid)
        for lid in self._letter_ids:
            self._written_letters.add(lid)
        self.counts["written"] += len(self._readings)
        self.counts["dead_letters"] += len(self._letters)
        self.counts["batches"] += 1
        acks, done = self._acks, self._messages
        self._readings, self._letters, self._acks = [], [], []
        self._reading_ids, self._letter_ids = set(), set()
        self._messages, self._oldest = 0, None
        for ack in acks:
            ack()
        return done

    def latest(self, machine_id: str, sensor: str) -> datetime | None:
        """The latest time of a reading of ``(machine_id, sensor)`` known to be in the log
        (written since start, or in the tail read back on start); ``None``: none known. An
        adapter whose source keeps history (OPC UA HistoryRead) reads back what came after
        it, so nothing after it is missing and nothing before it is written twice.

        >>> from wearwatch.bus.memory import MemoryLog
        >>> gw = IngestGateway(MemoryLog())
        >>> _ = gw.offer({"machine_id": "p7", "sensor": "vib", "value": 1.0, "ts": 2.5}, b"", "o")
        >>> gw.latest("p7", "vib"), gw.flush(), gw.latest("p7", "vib").timestamp()
        (None, 1, 2.5)
        """
        micros = self._latest.get((machine_id, sensor))
        return None if micros is None else _EPOCH + timedelta(microseconds=micros)

    # -- internals -----------------------------------------------------------------------------

    def _remember_reading(self, rid: ReadingId) -> None:
        self._written_readings.add(rid)
        key = (rid[0], rid[1])
        if rid[2] > self._latest.get(key, -(2**63)):
            self._latest[key] = rid[2]

    def _queue_ack(self, ack: Ack | None) -> None:
        if self._oldest is None:
            self._oldest = self._clock()
        self._messages += 1
        if ack is not None:
            self._acks.append(ack)

    def _duplicate(self, ack: Ack | None) -> Outcome:
        """Already durable: acknowledge at once, write nothing."""
        self.counts["duplicates"] += 1
        if ack is not None:
            ack()
        return "duplicate"

    def _recover(self) -> int:
        """Read back the tail of every partition of both topics and remember the ids in it;
        returns how many ids were recovered."""
        n = self.options.recover_records
        if n == 0:
            return 0
        found = 0
        for topic, remember in (
            (self.topic, self._remember_readings),
            (self.dead_letter_topic, self._remember_letters),
        ):
            for partition, end in self.log.end_offsets(topic).items():
                start = max(0, end - n)
                if end > start:
                    found += remember(self.log.read(topic, partition, start, end - start))
        return found

    def _remember_readings(self, records: list[Any]) -> int:
        found = 0
        for record in records:
            if is_columnar(record.value):
                columns, _ = decode_columns(record.value, Reading)
                ids = zip(
                    columns.fields["machine_id"].tolist(),
                    columns.fields["sensor"].tolist(),
                    columns.ts_us.tolist(),
                    strict=True,
                )
                for rid in ids:
                    self._remember_reading(rid)
                    found += 1
            else:
                for reading in decode_record(record.value, Reading).events:
                    self._remember_reading(reading_id(reading))
                    found += 1
        return found

    def _remember_letters(self, records: list[Any]) -> int:
        found = 0
        for record in records:
            for letter in decode_record(record.value, DeadLetter).events:
                self._written_letters.add(letter_id(letter.source_topic, letter.raw))
                found += 1
        return found
