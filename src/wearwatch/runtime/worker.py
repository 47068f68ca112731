"""The worker: poll a batch, run the operator per event, checkpoint, repeat.

One worker owns the partitions of the operator's input topic that its consumer group gives it
(Kafka's group on Kafka; leases in the log's database on the embedded log). On assignment it
restores each partition's state from its checkpoint and seeks to the position that state
reflects; on revocation it checkpoints first; partitions lost to another member (a commit was
fenced) have their uncommitted outputs and state dropped. SIGINT/SIGTERM stop it after a final
checkpoint.

``exit_when_idle`` means caught up on a real assignment: not before the group has given this
worker its partitions (a Kafka member waits for its first rebalance; one given no partition —
more workers than partitions — is idle once it has been told so), and never during an outage.
An outage (broker unreachable, input topic gone: see :class:`~wearwatch.bus.base.Outage`) is
logged once as a warning when it begins and when it ends, counted in ``outages``, and stops the
worker with :class:`OutageError` once it has lasted ``max_outage_s``.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from wearwatch.bus.base import (
    Consumer,
    Log,
    LogError,
    Outage,
    PartitionsLostError,
    Record,
    TopicPartition,
)
from wearwatch.events import decode_batch, encode
from wearwatch.runtime.checkpoint import (
    CheckpointStore,
    checkpoint_store_for,
    resolve_checkpoint_key,
)
from wearwatch.runtime.operator import (
    DEAD_LETTER_TOPIC,
    Context,
    Emitted,
    KeyedOperator,
    PartitionState,
)

logger = logging.getLogger(__name__)


class OutageError(LogError):
    """The broker stayed unreachable, or the input topic stayed gone, for ``max_outage_s``."""


@dataclass(frozen=True)
class WorkerOptions:
    watermark_delay_s: float = 5.0
    checkpoint_interval_s: float = 1.0
    max_buffered_outputs: int = 20_000
    poll_max_records: int = 500
    poll_timeout_s: float = 0.2
    #: How often the worker applies the log's retention (the embedded log has no broker).
    retention_every_s: float = 60.0
    max_event_bytes: int = 65536
    exit_when_idle: bool = False
    #: Embedded log: how long a member's partitions stay its own without a renewal.
    lease_s: float = 10.0
    #: The configured checkpoint secret (``WEARWATCH_CHECKPOINT_KEY``); empty: the embedded
    #: log's key file, and on Kafka a refusal unless ``unsigned_checkpoints``.
    checkpoint_key: str = field(default="", repr=False)
    unsigned_checkpoints: bool = False
    #: How long a broker outage or a vanished input topic is waited out before giving up.
    max_outage_s: float = 60.0

    @classmethod
    def from_settings(cls, **overrides: object) -> WorkerOptions:
        from wearwatch.config import get_settings

        s = get_settings()
        values: dict[str, object] = {
            "watermark_delay_s": s.watermark_delay_s,
            "checkpoint_interval_s": s.checkpoint_interval_s,
            "poll_max_records": s.poll_max_records,
            "max_event_bytes": s.max_event_bytes,
            "lease_s": s.lease_s,
            "max_outage_s": s.max_outage_s,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


class Worker:
    """Runs one :class:`KeyedOperator` against a log with exactly-once results."""

    def __init__(
        self,
        log: Log,
        operator: KeyedOperator,
        group: str,
        options: WorkerOptions | None = None,
        on_progress: Callable[[Worker], None] | None = None,
    ) -> None:
        self.log = log
        self.operator = operator
        self.group = group
        self.options = options or WorkerOptions()
        self.on_progress = on_progress
        self.topic = operator.input_topic
        self.states: dict[int, PartitionState] = {}
        self.contexts: dict[int, Context] = {}
        self.outputs: list[Emitted] = []
        self.dirty: set[int] = set()
        self.checkpoints = 0
        #: The outage under way (None while healthy) and how many began in this run.
        self.outage: Outage | None = None
        self.outages = 0
        self._stop = False
        self._failed = False
        self._store: CheckpointStore | None = None
        self._consumer: Consumer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        self._stop = True

    def prepare_topics(self) -> None:
        self.log.create_topic(self.topic)
        self.log.create_topic(DEAD_LETTER_TOPIC)
        for topic in self.operator.outputs:
            self.log.create_topic(topic)

    def run(self, install_signals: bool = True) -> Counter[str]:
        """Process until stopped (or, with ``exit_when_idle``, until caught up)."""
        key = resolve_checkpoint_key(
            self.log.url, self.options.checkpoint_key, self.options.unsigned_checkpoints
        )
        self.prepare_topics()
        self._store = checkpoint_store_for(self.log, self.group, key)
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        kwargs = {}
        if self.log.url.startswith("sqlite:"):
            kwargs = {"lease_s": self.options.lease_s}
        self._consumer = self.log.consumer(
            self.group,
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            **kwargs,
        )
        opts = self.options
        last_checkpoint = last_retention = time.monotonic()
        try:
            while not self._stop:
                records = self._consumer.poll(opts.poll_max_records, opts.poll_timeout_s)
                for record in records:
                    self._process_record(record)
                now = time.monotonic()
                if (
                    now - last_checkpoint >= opts.checkpoint_interval_s
                    or len(self.outputs) >= opts.max_buffered_outputs
                ):
                    self.checkpoint()
                    last_checkpoint = now
                    if self.on_progress is not None:
                        self.on_progress(self)
                if now - last_retention >= opts.retention_every_s:
                    self.log.apply_retention()
                    last_retention = now
                self._watch_outage(now)
                if opts.exit_when_idle and not records and self._idle():
                    break
            self.checkpoint()
            totals = self.counters()
        except BaseException:
            # State may be half-way through a record: never checkpoint it (on_revoke drops
            # it instead); a restart resumes from the last good checkpoint.
            self._failed = True
            raise
        finally:
            self._consumer.close()
        return totals

    def counters(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for state in self.states.values():
            total.update(state.counters)
        if self.outages:
            total["outages"] += self.outages
        return total

    # -- processing --------------------------------------------------------------------------

    def _process_record(self, record: Record) -> None:
        partition = record.partition
        state = self.states[partition]
        ctx = self.contexts[partition]
        op = self.operator
        ctx.begin_record(f"{self.group}/{record.topic}/{partition}/{record.offset}", record.offset)
        events, bad = decode_batch(record.value, op.input_type, self.options.max_event_bytes)
        counters = state.counters
        counters["in"] += len(events) + len(bad)
        for raw, error in bad:
            ctx.dead_letter(
                record.topic,
                record.offset,
                raw,
                str(error),
                error.field,
                record.timestamp_ms / 1000.0,
            )
        # Watermarks are whole microseconds (event times are), so window arithmetic on
        # integers and timers on floats agree exactly.
        delay_us = round(self.options.watermark_delay_s * 1e6)
        timers = state.timers
        process = op.process
        key_of = op.key
        own_lateness = op.decides_lateness
        advance = op.watermark_candidate
        for event in events:
            ts = event.ts.timestamp()
            try:
                if ts < state.watermark and not own_lateness:
                    counters["late"] += 1
                    op.on_late(event, record.offset, ts, ctx)
                    continue
                if advance is None:
                    candidate = (round(ts * 1e6) - delay_us) / 1e6
                else:
                    candidate = advance(event, ts, delay_us, state)
                if candidate > state.watermark:
                    state.watermark = candidate
                    due = timers.next_due()
                    # A timer callback may set a timer that is already due: loop until none is.
                    while due is not None and due <= candidate:
                        for when, key in timers.pop_due(candidate):
                            op.on_timer(key, when, ctx)
                        due = timers.next_due()
                process(event, key_of(event), ts, ctx)
            except Exception as exc:  # a valid event the operator cannot handle
                counters["failed"] += 1
                ctx.dead_letter(
                    record.topic,
                    record.offset,
                    encode(event),
                    f"processing failed: {type(exc).__name__}: {exc}",
                    "",
                    ts,
                )
        if record.offset > state.position:
            # Retention deleted records this group had not read yet: visible, not silent.
            counters["skipped_by_retention"] += record.offset - state.position
        state.position = record.offset + 1
        self.dirty.add(partition)

    def checkpoint(self) -> None:
        """Outputs, state and positions of the partitions touched since the last one."""
        if self._store is None or self._consumer is None:
            return
        if not self.dirty and not self.outputs:
            return
        states = {(self.topic, p): self.states[p] for p in sorted(self.dirty)}
        try:
            self._store.commit(self.outputs, states, self._consumer)
        except PartitionsLostError as exc:
            # Nothing was written. The consumer revokes the lost partitions (dropping their
            # work) on its next poll or close; the others are committed next time.
            logger.warning("checkpoint refused: %s", exc)
            return
        self.outputs.clear()
        self.dirty.clear()
        self.checkpoints += 1

    def _watch_outage(self, now: float) -> None:
        """Warn when an outage begins and ends; give up when it has lasted too long."""
        outage: Outage | None = getattr(self._consumer, "outage", None)
        previous = self.outage
        if outage is not None and (previous is None or previous.since_s != outage.since_s):
            self.outages += 1
            logger.warning(
                "%s (%s); waiting up to %g s", outage.what, outage.detail, self.options.max_outage_s
            )
        elif outage is None and previous is not None:
            logger.warning("%s: over after %.0f s", previous.what, now - previous.since_s)
        self.outage = outage
        if outage is not None and now - outage.since_s >= self.options.max_outage_s:
            raise OutageError(f"{outage.what} for {now - outage.since_s:.0f} s ({outage.detail})")

    def _idle(self) -> bool:
        """Caught up on a real assignment, with no outage under way."""
        if self.outage is not None or not getattr(self._consumer, "settled", True):
            return False
        return self._caught_up()

    def _caught_up(self) -> bool:
        assert self._consumer is not None
        ends = self.log.end_offsets(self.topic)
        return all(
            self.states[p].position >= ends.get(p, 0)
            for (_, p) in self._consumer.assignment()
            if p in self.states
        )

    # -- partition ownership -----------------------------------------------------------------

    def _on_assign(self, tps: list[TopicPartition]) -> None:
        assert self._store is not None  # set by run() before the consumer exists
        partitions = [p for (topic, p) in tps if topic == self.topic]
        restored = self._store.load(self.topic, partitions)
        for partition in partitions:
            state = restored.get(partition, PartitionState())
            self.states[partition] = state
            self.contexts[partition] = Context(partition, state, self.outputs)
        # Both backends call this from inside poll(), where seeks set the start positions.
        assert self._consumer is not None
        for partition in partitions:
            self._consumer.seek((self.topic, partition), self.states[partition].position)

    def _on_revoke(self, tps: list[TopicPartition]) -> None:
        revoked = {p for (topic, p) in tps if topic == self.topic}
        if not (self._failed or getattr(self._consumer, "lost", False)):
            self.checkpoint()
        # Half-processed, already someone else's, or refused by the checkpoint's fencing:
        # whatever is left since the last checkpoint is dropped and recomputed from it.
        self.outputs[:] = [o for o in self.outputs if o.source_partition not in revoked]
        self.dirty -= revoked
        for partition in revoked:
            self.states.pop(partition, None)
            self.contexts.pop(partition, None)
