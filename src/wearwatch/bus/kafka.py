"""The Kafka backend of the log (Kafka, Redpanda, tansu), on confluent-kafka.

``KafkaLog("kafka://host:port[,host:port...]")``. Partitioning is ours, not the client's: a record
goes to ``partition_for(key, partitions(topic))`` so the embedded and Kafka backends agree on
where a key lives. The producer's idempotency id travels in the ``wearwatch-rid`` header.

Rebalance protocol of :class:`KafkaGroupConsumer` (``cooperative-sticky`` by default):

* ``on_assign(tps)`` is called from inside :meth:`KafkaGroupConsumer.poll` with the partitions
  *newly* given to this member, before any of their records is returned. ``seek()`` calls made
  inside the callback set those partitions' start offsets (they are passed to ``assign``); a
  partition not sought starts at the group's committed offset (or the earliest retained record).
* ``on_revoke(tps)`` is called from inside ``poll``/``close`` with the partitions about to be
  taken away, while they are still owned: committing their positions there works.
* Partitions *lost* (this member was evicted, e.g. after a stall past the session timeout) go to
  ``on_lost`` if given, else to ``on_revoke`` with :attr:`KafkaGroupConsumer.lost` set to True;
  they already belong to someone else, so a commit then raises :class:`CommitFailedError`.

Honesty about the broker (see :class:`KafkaGroupConsumer`): ``settled`` tells whether the group
has given this member its partitions yet; ``outage`` reports a broker that stopped answering or
an input topic that disappeared (instead of an endless silent wait); a partition whose end moved
below what this member already read (topic re-created, broker restarted empty) raises
:class:`TruncatedLogError`. librdkafka's own log lines go through the
``wearwatch.bus.kafka.client`` logger at warning level at most, each repeated message once a
minute (:class:`ClientLog`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import (
    TopicPartition as KTopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from wearwatch.bus.base import (
    DEFAULT_PARTITIONS,
    DEFAULT_RETENTION_S,
    AssignCallback,
    LogError,
    Outage,
    OutRecord,
    Record,
    TopicPartition,
    check_retention_s,
    partition_for,
    retention_ms,
)

log = logging.getLogger(__name__)

RID_HEADER = "wearwatch-rid"
_METADATA_TIMEOUT_S = 10.0
_TOPIC_WAIT_S = 30.0
# Errors a consumer may see in passing; anything else that is not retriable is raised.
# (A group member tracks the unknown-topic ones as an outage: see KafkaGroupConsumer.)
_TOPIC_MISSING = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
}
_BENIGN = {KafkaError._PARTITION_EOF, *_TOPIC_MISSING}
# Client errors that describe why a broker cannot be reached (the detail of a broker outage).
_CONNECTION_ERRORS = {
    KafkaError._TRANSPORT,
    KafkaError._RESOLVE,
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError._TIMED_OUT,
}
#: librdkafka's syslog level for every client: warnings and errors only.
_CLIENT_LOG_LEVEL = 4
#: While an outage is suspected or under way, how often (and how long) to ask for metadata.
_PROBE_EVERY_S = 1.0
_PROBE_TIMEOUT_S = 1.0
#: How often a member compares its partitions' end offsets with what it has read.
_TRUNCATION_CHECK_EVERY_S = 1.0


class KafkaLogError(LogError):
    """A produce, metadata or consume error reported by the Kafka client or broker."""


class CommitFailedError(KafkaLogError):
    """A commit was rejected: the partitions were lost or the group is rebalancing."""


class TruncatedLogError(KafkaLogError):
    """A partition now ends below an offset already read: its history is gone (the topic was
    deleted and re-created, or the broker lost its data). Never transient: positions,
    checkpoints and outputs no longer match the log."""


class ClientLog(logging.LoggerAdapter):
    """The ``logger`` given to every confluent-kafka client: librdkafka's lines, one each.

    librdkafka logs a failing connection every few tens of milliseconds (about 200 lines in
    10 s for a closed port) and the same condition also reaches wearwatch through error
    callbacks, which it reports in its own words. So each line goes out at warning level at
    most (errors of the client are not errors of the program until wearwatch says so), and a
    message repeated with only its numbers changed is emitted once per ``quiet_s``; the next
    emission says how many were held back.
    """

    _THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]: ")
    _NUMBERS = re.compile(r"\d+")

    def __init__(
        self,
        logger: logging.Logger,
        quiet_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, {})
        self.quiet_s = quiet_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last emitted, held back since)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        # confluent-kafka calls log(level, "%s [%s] %s", facility, client name, text).
        if len(args) == 3 and msg == "%s [%s] %s":
            facility, _client, text = (str(a) for a in args)
            line = f"kafka {facility}: {self._THREAD_PREFIX.sub('', text)}"
        else:
            line = str(msg) % args if args else str(msg)
        level = min(level, logging.WARNING)
        if not self.logger.isEnabledFor(level):
            return
        key = self._NUMBERS.sub("#", line)
        now = self._clock()
        with self._lock:
            last, held = self._seen.get(key, (-self.quiet_s, 0))
            if now - last < self.quiet_s:
                self._seen[key] = (last, held + 1)
                return
            if len(self._seen) > 1000:  # forget old messages; a long run meets many
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.quiet_s}
            self._seen[key] = (now, 0)
        if held:
            line += f" ({held} more like this in the last {now - last:.0f} s)"
        self.logger.log(level, "%s", line)


#: Shared by every client of the process, so repeats are held back across clients too.
CLIENT_LOG = ClientLog(logging.getLogger(f"{__name__}.client"))


def _on_client_error(err: KafkaError) -> None:
    """``error_cb`` of clients that track nothing: without one, librdkafka logs every error
    as an ERROR line; the operations that fail report it themselves."""
    log.debug("kafka client: %s", err)


def bootstrap_servers(url: str) -> str:
    """``kafka://h1:9092,h2:9092`` → ``h1:9092,h2:9092``.

    >>> bootstrap_servers("kafka://127.0.0.1:9092")
    '127.0.0.1:9092'
    """
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise ValueError(f"{url!r}: expected kafka://host:port[,host:port...]")
    return parts.netloc


def _to_record(msg: Message) -> Record:
    rid = ""
    headers = msg.headers()
    if headers:
        for name, value in headers:
            if name == RID_HEADER and value is not None:
                rid = value.decode() if isinstance(value, bytes) else str(value)
    _ts_type, ts = msg.timestamp()
    value = msg.value()
    return Record(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        key=msg.key(),
        value=value if value is not None else b"",
        timestamp_ms=ts if ts is not None and ts >= 0 else 0,
        rid=rid,
    )


def _error_text(exc: KafkaException) -> str:
    """The client's message without the ``KafkaError{code=...}`` wrapping."""
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


def new_client(kind: type[Any], conf: dict[str, Any]) -> Any:
    """``kind(conf)`` (an admin client, producer or consumer); librdkafka's refusal of the
    configuration — an invalid value, a conflict, a missing CA file, in settings passed through
    as ``client_config`` — as a :class:`KafkaLogError` with librdkafka's own words, which name
    the property.

    >>> try:
    ...     new_client(Producer, {"security.protocol": "bogus"})
    ... except KafkaLogError as exc:
    ...     print(exc)
    Kafka client configuration refused: Invalid value "bogus" for configuration property \
"security.protocol"
    """
    try:
        return kind(conf)
    except KafkaException as exc:
        raise KafkaLogError(f"Kafka client configuration refused: {_error_text(exc)}") from None


def _raise_if_real(err: KafkaError, what: str) -> None:
    """Raise ``err`` unless it is end-of-partition, unknown-topic, or transient."""
    if err.code() in _BENIGN:
        return
    if err.fatal() or not err.retriable():
        raise KafkaLogError(f"{what}: {err}")
    log.warning("%s (transient): %s", what, err)


class KafkaLog:
    """A :class:`~wearwatch.bus.base.Log` on a Kafka-protocol cluster."""

    def __init__(
        self,
        url: str,
        *,
        default_partitions: int = DEFAULT_PARTITIONS,
        retention_s: float = DEFAULT_RETENTION_S,
        client_config: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self._bootstrap = bootstrap_servers(url)
        try:
            check_retention_s(retention_s)
        except ValueError as exc:
            raise ValueError(f"{url}: {exc}") from None
        if default_partitions < 1:
            raise ValueError(f"{url}: default_partitions={default_partitions}: must be at least 1")
        #: Partitions and retention of the topics this log creates (``create_topic``).
        self.default_partitions = default_partitions
        self.retention_s = retention_s
        # Extra librdkafka properties for every client (security settings and such).
        self._extra = dict(client_config or {})
        self._admin = new_client(AdminClient, self._config({"allow.auto.create.topics": False}))
        self._producer: Producer | None = None
        self._delivery_errors: list[str] = []
        self._partitions: dict[str, int] = {}
        self._reader: Consumer | None = None
        self._lock = threading.RLock()
        self._reader_lock = threading.Lock()

    # -- configuration ---------------------------------------------------------------------------

    def _config(self, conf: dict[str, Any]) -> dict[str, Any]:
        return {
            "bootstrap.servers": self._bootstrap,
            "logger": CLIENT_LOG,
            "log_level": _CLIENT_LOG_LEVEL,
            "error_cb": _on_client_error,
            **conf,
            **self._extra,
        }

    # -- topics ----------------------------------------------------------------------------------

    def _metadata(self) -> Any:
        try:
            return self._admin.list_topics(timeout=_METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise KafkaLogError(
                f"bus={self.url!r}: no answer from the broker within {_METADATA_TIMEOUT_S:.0f} s"
                f" ({_error_text(exc)})"
            ) from None
        finally:
            # The admin client's log lines and errors wait in a queue served by poll(): let
            # them out now (before the error above, if any), so the queue never grows.
            self._admin.poll(0)

    def _topic_partitions(self, topic: str) -> int | None:
        """Partition count from fresh metadata, or None if the topic does not exist."""
        md = self._metadata()
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return None
        if any(p.leader < 0 for p in meta.partitions.values()):
            return None
        return len(meta.partitions)

    def create_topic(
        self, name: str, partitions: int | None = None, *, compact: bool = False
    ) -> None:
        """Create ``name`` if missing (idempotent); an existing topic keeps its partitions.

        New topics get ``default_partitions`` unless ``partitions`` is given, and
        ``retention.ms`` from ``retention_s`` (``0``: ``-1``, kept forever; ``compact``: log
        compaction instead, so only the latest record per key is kept); returns once metadata
        shows the topic with a leader for every partition.
        """
        if name in self._partitions:
            return
        existing = self._topic_partitions(name)
        if existing is not None:
            self._partitions[name] = existing
            return
        count = partitions if partitions is not None else self.default_partitions
        config = (
            {"cleanup.policy": "compact"}
            if compact
            else {"retention.ms": str(retention_ms(self.retention_s))}
        )
        for replication in (-1, 1):  # -1: the broker's default; old brokers need a number
            future = self._admin.create_topics(
                [NewTopic(name, count, replication_factor=replication, config=config)],
                operation_timeout=_METADATA_TIMEOUT_S,
                request_timeout=_METADATA_TIMEOUT_S,
            )[name]
            try:
                future.result()
                break
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    break
                if replication == -1 and err.code() in (
                    KafkaError.INVALID_REPLICATION_FACTOR,
                    KafkaError.INVALID_REQUEST,
                    KafkaError.UNSUPPORTED_VERSION,
                    KafkaError.INVALID_CONFIG,
                ):
                    continue
                raise KafkaLogError(f"create topic {name!r}: {err}") from exc
        deadline = time.monotonic() + _TOPIC_WAIT_S
        while True:
            found = self._topic_partitions(name)
            if found is not None:
                self._partitions[name] = found
                return
            if time.monotonic() > deadline:
                raise KafkaLogError(f"topic {name!r} not visible in metadata after creation")
            time.sleep(0.05)

    def topics(self) -> dict[str, int]:
        """Every (non-internal) topic and its partition count."""
        md = self._metadata()
        return {
            name: len(meta.partitions)
            for name, meta in md.topics.items()
            if meta.error is None and not name.startswith("__")
        }

    def partitions(self, topic: str) -> int:
        """The topic's partition count (cached); KeyError if the topic does not exist."""
        count = self._partitions.get(topic)
        if count is None:
            found = self._topic_partitions(topic)
            if found is None:
                raise KeyError(f"no such topic: {topic!r}")
            count = self._partitions[topic] = found
        return count

    # -- producing -------------------------------------------------------------------------------

    def _get_producer(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = new_client(
                    Producer,
                    self._config(
                        {
                            "acks": "all",
                            "enable.idempotence": True,
                            "linger.ms": 5,
                            "batch.num.messages": 10000,
                            "compression.type": "none",
                            "message.timeout.ms": 60000,
                        }
                    ),
                )
            return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._delivery_errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def produce(self, records: Iterable[OutRecord]) -> None:
        """Queue records for sending; they are durable (acks=all) once :meth:`flush` returns."""
        producer = self._get_producer()
        for rec in records:
            partition = (
                rec.partition
                if rec.partition is not None
                else partition_for(rec.key, self.partitions(rec.topic))
            )
            headers = [(RID_HEADER, rec.rid.encode())] if rec.rid else None
            while True:
                try:
                    producer.produce(
                        rec.topic,
                        value=rec.value,
                        key=rec.key,
                        partition=partition,
                        headers=headers,
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.05)
                except KafkaException as exc:  # e.g. a partition the topic does not have
                    raise KafkaLogError(
                        f"produce to {rec.topic}[{partition}]: {exc.args[0]}"
                    ) from exc
        producer.poll(0)

    def flush(self) -> None:
        """Wait until every queued record is acknowledged; raise if any delivery failed."""
        if self._producer is None:
            return
        remaining = self._producer.flush(120.0)
        with self._lock:
            errors, self._delivery_errors = self._delivery_errors, []
        if errors:
            more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
            raise KafkaLogError(f"{len(errors)} records not delivered: {errors[:5]}{more}")
        if remaining:
            raise KafkaLogError(f"{remaining} records still undelivered after flush timeout")

    # -- consuming -------------------------------------------------------------------------------

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        on_assign: AssignCallback | None = None,
        on_revoke: AssignCallback | None = None,
        on_lost: AssignCallback | None = None,
        config: dict[str, Any] | None = None,
    ) -> KafkaGroupConsumer:
        return KafkaGroupConsumer(
            self._config(dict(config or {})),
            group,
            topics,
            on_assign=on_assign,
            on_revoke=on_revoke,
            on_lost=on_lost,
        )

    def _get_reader(self) -> Consumer:
        if self._reader is None:
            self._reader = new_client(
                Consumer,
                self._config(
                    {
                        # never joins nor commits: used with assign() only
                        "group.id": f"wearwatch-reader-{uuid.uuid4().hex}",
                        "enable.auto.commit": False,
                        "enable.auto.offset.store": False,
                        "auto.offset.reset": "earliest",
                        "enable.partition.eof": True,
                        # short fetch waits: a re-assign waits for the in-flight fetch
                        "fetch.wait.max.ms": 20,
                    }
                ),
            )
        return self._reader

    def _end_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """True high watermarks, taken from fetch responses.

        ListOffsets(latest) is not trusted: tansu answers it with the base offset of the last
        record batch + 1. Fetching from the end and waiting for end-of-partition gives the
        high watermark on every broker (one short fetch per partition).
        """
        if not partitions:
            return {}
        reader = self._get_reader()
        reader.assign([KTopicPartition(topic, p, OFFSET_END) for p in partitions])
        ends: dict[int, int] = {}
        try:
            deadline = time.monotonic() + _METADATA_TIMEOUT_S
            while len(ends) < len(partitions):
                if time.monotonic() > deadline:
                    missing = sorted(set(partitions) - set(ends))
                    raise KafkaLogError(f"end offsets of {topic} {missing}: timed out")
                for msg in reader.consume(10000, 0.02):
                    if msg.topic() != topic or msg.partition() in ends:
                        continue
                    err = msg.error()
                    if err is not None and err.code() == KafkaError._PARTITION_EOF:
                        ends[msg.partition()] = msg.offset()
                    elif err is not None:
                        _raise_if_real(err, f"end offsets of {topic}[{msg.partition()}]")
                    else:  # got data past the reported end: the fetch told us the watermark
                        _low, high = reader.get_watermark_offsets(
                            KTopicPartition(topic, msg.partition()), cached=True
                        )
                        if high > msg.offset():
                            ends[msg.partition()] = int(high)
        finally:
            reader.unassign()
        return ends

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next appended record will get (high watermark)."""
        count = self.partitions(topic)
        with self._reader_lock:
            return dict(sorted(self._end_offsets(topic, range(count)).items()))

    def read(self, topic: str, partition: int, start: int, max_records: int) -> list[Record]:
        """Up to ``max_records`` records of one partition from ``start`` on, without a group.

        Starts at the earliest retained record if ``start`` was deleted by retention.
        """
        if max_records <= 0:
            return []
        with self._reader_lock:
            high = self._end_offsets(topic, [partition])[partition]
            if start >= high:
                return []
            reader = self._get_reader()
            out: list[Record] = []
            reader.assign([KTopicPartition(topic, partition, max(start, 0))])
            try:
                deadline = time.monotonic() + 30.0
                done = False
                while not done and len(out) < max_records:
                    if time.monotonic() > deadline:
                        raise KafkaLogError(
                            f"read {topic}[{partition}] from {start}: timed out "
                            f"with {len(out)} records (high watermark {high})"
                        )
                    for msg in reader.consume(min(max_records - len(out), 10000), 0.02):
                        if msg.topic() != topic or msg.partition() != partition:
                            continue  # stale, from an earlier assignment
                        err = msg.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                done = True
                                break
                            _raise_if_real(err, f"read {topic}[{partition}]")
                            continue
                        offset = msg.offset()
                        if offset < start or (out and offset <= out[-1].offset):
                            continue
                        out.append(_to_record(msg))
                        if offset >= high - 1 or len(out) >= max_records:
                            done = True
                            break
            finally:
                reader.unassign()
            return out

    def apply_retention(self) -> int:
        """Kafka enforces ``retention.ms`` itself (set at topic creation): nothing to do."""
        return 0

    def close(self) -> None:
        try:
            if self._producer is not None:
                self.flush()
        finally:
            self._producer = None
            if self._reader is not None:
                self._reader.close()
                self._reader = None


class KafkaGroupConsumer:
    """A consumer-group member; see the module docstring for the rebalance protocol.

    Besides records, :meth:`poll` keeps three facts current:

    * :attr:`settled`: the group has given this member its partitions (its first rebalance
      completed, possibly with no partition) and no rebalance has taken any away since.
    * :attr:`outage`: librdkafka reports all brokers down → confirmed by a metadata request
      that gets no answer → ``Outage("broker", ...)``; an input topic reported unknown →
      ``Outage("topic", ...)``. While one is suspected or under way, metadata is asked for
      once a second; an answer (or a record) ends it. Nothing is probed while healthy.
    * the end of each assigned partition (as the last fetch saw it) is not below the highest
      offset this member has read from it; otherwise :meth:`poll` raises
      :class:`TruncatedLogError`.
    """

    def __init__(
        self,
        base_config: dict[str, Any],
        group: str,
        topics: Sequence[str],
        *,
        on_assign: AssignCallback | None = None,
        on_revoke: AssignCallback | None = None,
        on_lost: AssignCallback | None = None,
    ) -> None:
        conf = {
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "max.poll.interval.ms": 600000,
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.wait.max.ms": 100,
        }
        conf.update(base_config)
        conf["error_cb"] = self._on_error
        self._cooperative = conf["partition.assignment.strategy"] == "cooperative-sticky"
        self.group = group
        self.topics = list(topics)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_lost = on_lost
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._pending_seeks: dict[TopicPartition, int] | None = None
        self._fatal: KafkaError | None = None
        self._callback_error: BaseException | None = None
        self._closed = False
        #: True while ``on_revoke`` is called for *lost* partitions (commits will fail).
        self.lost = False
        #: True once a rebalance has given this member its partitions (possibly none); False
        #: again while a rebalance has taken some away and not yet completed.
        self.settled = False
        #: The broker outage or vanished input topic under way, if any.
        self.outage: Outage | None = None
        self._url = f"kafka://{conf['bootstrap.servers']}"
        self._connection_error = ""  # the client's last word on why a broker is unreachable
        self._brokers_down_since: float | None = None  # librdkafka said so; a probe confirms
        self._down_since: float | None = None
        self._missing: dict[str, tuple[float, str]] = {}  # topic -> (since, detail)
        self._next_probe_s = 0.0
        self._reached: dict[TopicPartition, int] = {}  # highest offset read + 1, ever
        self._next_truncation_check_s = 0.0
        self._consumer = new_client(Consumer, conf)
        self._consumer.subscribe(
            self.topics,
            on_assign=self._handle_assign,
            on_revoke=self._handle_revoke,
            on_lost=self._handle_lost,
        )

    # -- rebalance callbacks (run inside consume()) ---------------------------------------------

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            return
        log.debug("kafka consumer %s: %s", self.group, err)
        if err.code() in _CONNECTION_ERRORS:
            self._connection_error = err.str()
        elif err.code() == KafkaError._ALL_BROKERS_DOWN and self._brokers_down_since is None:
            self._brokers_down_since = time.monotonic()
            self._next_probe_s = 0.0  # confirm (or clear) at once

    def _handle_assign(self, consumer: Consumer, partitions: list[KTopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._pending_seeks = {}
        try:
            if self._on_assign is not None and tps:
                self._on_assign(tps)
        except BaseException as exc:  # re-raised from poll(), after the assign below
            self._callback_error = exc
        finally:
            seeks, self._pending_seeks = self._pending_seeks, None
        for p in partitions:
            start = seeks.get((p.topic, p.partition))
            if start is not None:
                p.offset = start
                self._positions[(p.topic, p.partition)] = start
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
            self._assigned.clear()
        self._assigned.update(tps)
        self.settled = True

    def _handle_revoke(self, consumer: Consumer, partitions: list[KTopicPartition]) -> None:
        self._revoke(consumer, partitions, lost=False)

    def _handle_lost(self, consumer: Consumer, partitions: list[KTopicPartition]) -> None:
        self._revoke(consumer, partitions, lost=True)

    def _revoke(self, consumer: Consumer, partitions: list[KTopicPartition], *, lost: bool) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        callback = self._on_lost if lost and self._on_lost is not None else self._on_revoke
        self.lost = lost
        if tps:
            self.settled = False  # until the rebalance under way assigns (maybe nothing)
        try:
            if callback is not None and tps:
                callback(tps)
        except BaseException as exc:
            if self._callback_error is None:
                self._callback_error = exc
        finally:
            self.lost = False
            if self._cooperative:
                consumer.incremental_unassign(partitions)
            else:
                consumer.unassign()
            self._assigned.difference_update(tps)
            for tp in tps:
                self._positions.pop(tp, None)

    # -- Consumer protocol -----------------------------------------------------------------------

    def _raise_pending(self) -> None:
        if self._fatal is not None:
            raise KafkaLogError(f"consumer {self.group}: fatal error {self._fatal}")
        if self._callback_error is not None:
            exc, self._callback_error = self._callback_error, None
            raise exc

    def poll(self, max_records: int = 500, timeout_s: float = 0.2) -> list[Record]:
        """Up to ``max_records`` records, in offset order within each partition.

        Rebalance callbacks run in here; an exception raised by one is re-raised here.
        """
        # consume(n, t) waits for all n records or the whole timeout: wait for the first one
        # only, then take whatever else is already fetched.
        limit = max(1, max_records)
        msgs = self._consumer.consume(num_messages=1, timeout=timeout_s)
        self._raise_pending()
        if msgs and limit > 1:
            msgs.extend(self._consumer.consume(num_messages=limit - 1, timeout=0))
            self._raise_pending()
        out: list[Record] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() in _TOPIC_MISSING and msg.topic() in self.topics:
                    # e.g. "Subscribed topic not available": reported once by librdkafka
                    self._missing.setdefault(msg.topic(), (time.monotonic(), err.str()))
                    continue
                _raise_if_real(err, f"consumer {self.group}")
                continue
            rec = _to_record(msg)
            self._positions[(rec.topic, rec.partition)] = rec.offset + 1
            out.append(rec)
        if out:  # records are proof of a reachable broker and an existing topic
            self._broker_answered()
            for rec in out:
                self._missing.pop(rec.topic, None)
                tp = (rec.topic, rec.partition)
                if rec.offset >= self._reached.get(tp, 0):
                    self._reached[tp] = rec.offset + 1
        self._watch()
        return out

    # -- outages and truncation -----------------------------------------------------------------

    def _watch(self) -> None:
        now = time.monotonic()
        suspect = self._brokers_down_since is not None or bool(self._missing)
        if suspect and now >= self._next_probe_s:
            self._next_probe_s = now + _PROBE_EVERY_S
            self._probe(now)
        if self._down_since is not None:
            detail = self._connection_error or "all brokers down"
            self.outage = Outage(
                "broker", f"broker {self._url} unreachable", detail, self._down_since
            )
        elif self._missing:
            topic, (since, detail) = min(self._missing.items(), key=lambda kv: kv[1][0])
            self.outage = Outage("topic", f"input topic {topic!r} disappeared", detail, since)
        else:
            self.outage = None
        if now >= self._next_truncation_check_s:
            self._next_truncation_check_s = now + _TRUNCATION_CHECK_EVERY_S
            self._check_truncation()

    def _probe(self, now: float) -> None:
        """Ask for the subscribed topics' metadata: no answer confirms a broker outage; an
        answer ends it and tells which topics exist."""
        for topic in self.topics:
            try:
                meta = self._consumer.list_topics(topic, timeout=_PROBE_TIMEOUT_S).topics.get(topic)
            except KafkaException as exc:
                if self._down_since is None:
                    self._down_since = self._brokers_down_since or now
                if not self._connection_error:
                    self._connection_error = _error_text(exc)
                return
            self._broker_answered()
            if meta is not None and meta.error is None and meta.partitions:
                self._missing.pop(topic, None)
            elif topic not in self._missing:
                error = meta.error if meta is not None else None
                reason = error.str() if isinstance(error, KafkaError) else "not in metadata"
                self._missing[topic] = (now, reason)

    def _broker_answered(self) -> None:
        self._brokers_down_since = self._down_since = None
        self._connection_error = ""

    def _check_truncation(self) -> None:
        """Raise if an assigned partition now ends below what this member already read.

        The end is the high watermark of the last fetch response (no request is made). It
        only grows on a healthy log, so a smaller one means the history was lost.
        """
        for tp in sorted(self._assigned):
            reached = self._reached.get(tp)
            if reached is None:
                continue
            try:
                _low, high = self._consumer.get_watermark_offsets(KTopicPartition(*tp), cached=True)
            except KafkaException:
                continue
            if 0 <= high < reached:
                topic, partition = tp
                raise TruncatedLogError(
                    f"{topic}[{partition}] on {self._url} now ends at offset {high}, below "
                    f"offset {reached} already read: the topic was deleted and re-created or "
                    "the broker lost its data (restarted empty?); restore the broker's data, "
                    "or start over with a new consumer group and an empty sink"
                )

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` on.

        Inside ``on_assign`` this sets the start offset of a partition being assigned;
        elsewhere ``tp`` must be assigned (KeyError otherwise).
        """
        if offset < 0:
            raise ValueError(f"seek {tp}: negative offset {offset}")
        if self._pending_seeks is not None:
            self._pending_seeks[tp] = offset
            return
        if tp not in self._assigned:
            raise KeyError(f"seek {tp}: partition not assigned to this consumer")
        self._positions[tp] = offset
        target = KTopicPartition(tp[0], tp[1], offset)
        try:
            self._consumer.seek(target)
        except KafkaException as exc:
            # Not fetching yet (just assigned): re-assign the partition at the offset instead.
            if exc.args[0].code() != KafkaError._STATE or not self._cooperative:
                raise KafkaLogError(f"seek {tp} to {offset}: {exc.args[0]}") from exc
            self._consumer.incremental_unassign([KTopicPartition(tp[0], tp[1])])
            self._consumer.incremental_assign([target])

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record :meth:`poll` returns for ``tp`` (as far as known:
        after a seek or a record; else the committed offset, 0 if none)."""
        if tp in self._positions:
            return self._positions[tp]
        return self.committed([tp])[tp]

    def commit(self, positions: dict[TopicPartition, int] | None = None) -> None:
        """Synchronously commit, per partition, the offset of the next record to read
        (default: the positions reached by :meth:`poll`/:meth:`seek`)."""
        if positions is None:
            positions = {tp: o for tp, o in self._positions.items() if tp in self._assigned}
        if not positions:
            return
        offsets = [KTopicPartition(t, p, o) for (t, p), o in sorted(positions.items())]
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise CommitFailedError(f"commit {self.group}: {exc.args[0]}") from exc
        failed = [f"{r.topic}[{r.partition}]: {r.error}" for r in result or [] if r.error]
        if failed:
            raise CommitFailedError(f"commit {self.group}: {failed}")

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets (0 for a partition without a commit)."""
        if not tps:
            return {}
        result = self._consumer.committed(
            [KTopicPartition(t, p) for t, p in tps], timeout=_METADATA_TIMEOUT_S
        )
        out: dict[TopicPartition, int] = {}
        for r in result:
            if r.error:
                raise KafkaLogError(f"committed {r.topic}[{r.partition}]: {r.error}")
            out[(r.topic, r.partition)] = r.offset if r.offset >= 0 else 0
        return out

    def close(self) -> None:
        """Leave the group (``on_revoke`` runs for the owned partitions) and free the client."""
        if self._closed:
            return
        self._closed = True
        self._consumer.close()
        self._assigned.clear()


__all__ = [
    "CLIENT_LOG",
    "ClientLog",
    "CommitFailedError",
    "KafkaGroupConsumer",
    "KafkaLog",
    "KafkaLogError",
    "TruncatedLogError",
    "bootstrap_servers",
]
