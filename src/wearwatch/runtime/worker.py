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
import math
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from wearwatch.bus.base import (
    Consumer,
    Log,
    LogError,
    Outage,
    PartitionsLostError,
    Record,
    TopicPartition,
)
from wearwatch.columnar import decode_columns, is_columnar
from wearwatch.events import LATEST, Rejected, decode_record, utc
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


#: The µs watermark of a partition that has none yet (-inf seconds).
NO_WATERMARK_US = -(2**63)


def row_watermarks(ts_us: np.ndarray, watermark: float, delay_us: int) -> np.ndarray:
    """The partition watermark as the per-event loop shows it while each row of a batch is
    processed, in whole µs: the largest of the starting watermark and ``ts - delay`` of every
    row so far, that row's own included (the loop advances it before processing an event). A
    row is late exactly when its time is below its entry (a late row cannot move it).

    The per-event loop keeps the watermark on the µs grid (``(ts_us - delay_us) / 1e6``), so
    integers here decide exactly as its floats do. No watermark yet (-inf) is
    :data:`NO_WATERMARK_US`.

    >>> row_watermarks(np.array([10_000_000, 12_000_000, 9_000_000]), 5.0, 1_000_000).tolist()
    [9000000, 11000000, 11000000]
    >>> row_watermarks(np.array([3]), float("-inf"), 5).tolist()
    [-2]
    """
    start = round(watermark * 1e6) if math.isfinite(watermark) else NO_WATERMARK_US
    return np.maximum.accumulate(np.maximum(ts_us - delay_us, start))


class OutageError(LogError):
    """The broker stayed unreachable, or the input topic stayed gone, for ``max_outage_s``."""


_NEVER = float("inf")
_LATEST_S = LATEST.timestamp()


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs; the app builds these from its settings
    (:func:`wearwatch.wiring.worker_options`), the runtime never reads settings itself."""

    watermark_delay_s: float = 5.0
    checkpoint_interval_s: float = 1.0
    max_buffered_outputs: int = 20_000
    poll_max_records: int = 500
    poll_timeout_s: float = 0.2
    #: How often the worker applies the log's retention (the embedded log has no broker).
    retention_every_s: float = 60.0
    max_event_bytes: int = 65536
    #: Rows a columnar (Arrow) record may hold; a larger record is dead-lettered whole.
    max_batch_rows: int = 1_000_000
    #: An event whose time is further than this ahead of its record's log append time is
    #: dead-lettered as ``future`` (see :meth:`Worker._process_record`).
    max_future_s: float = 86400.0
    exit_when_idle: bool = False
    #: Embedded log: how long a member's partitions stay its own without a renewal.
    lease_s: float = 10.0
    #: The configured checkpoint secret (``WEARWATCH_CHECKPOINT_KEY``); empty: the embedded
    #: log's key file, and on Kafka a refusal unless ``unsigned_checkpoints``.
    checkpoint_key: str = field(default="", repr=False)
    unsigned_checkpoints: bool = False
    #: How long a broker outage or a vanished input topic is waited out before giving up.
    max_outage_s: float = 60.0


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
        #: How long the latest checkpoint's commit took (ms; None before the first).
        self.last_checkpoint_ms: float | None = None
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
            if self.on_progress is not None:
                self.on_progress(self)  # the final figures, after the final checkpoint
        except BaseException:
            # State may be half-way through a record: never checkpoint it (on_revoke drops
            # it instead); a restart resumes from the last good checkpoint.
            self._failed = True
            raise
        finally:
            self._consumer.close()
        return totals

    def event_time(self) -> float | None:
        """The latest event time processed (epoch s; None before any): the highest partition
        watermark plus its delay (a stage behind a repartition topic: the watermark its
        upstreams give it). Costs nothing per event."""
        marks = [s.watermark for s in self.states.values() if math.isfinite(s.watermark)]
        if not marks:
            return None
        delay = self.options.watermark_delay_s if self.operator.watermark_candidate is None else 0
        return max(marks) + delay

    def lag(self) -> int:
        """Records behind the end of the input topic, over the partitions this worker holds."""
        ends = self.log.end_offsets(self.topic)
        return sum(max(0, ends.get(p, 0) - s.position) for p, s in self.states.items())

    def counters(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for state in self.states.values():
            total.update(state.counters)
        if self.outages:
            total["outages"] += self.outages
        return total

    # -- processing --------------------------------------------------------------------------

    def _process_record(self, record: Record) -> None:
        """Decode a record and run its events; nothing in the input can make this raise.

        Every input item ends in exactly one of the counters ``processed``, ``invalid``
        (refused by decoding), ``future``, ``late`` or ``failed`` (the operator raised), so
        ``in`` is their sum; ``dead_lettered`` counts every dead letter written, whatever
        the reason.

        The event-time guard: an event more than ``max_future_s`` ahead of its record's log
        append time is dead-lettered as ``future`` before it can move the watermark (one such
        event would otherwise make every later event of the partition late). The append time
        is stored in the log, so a replay decides the same; replays of old history and twins
        in accelerated virtual time stay behind it. A record without a usable append time (0,
        or beyond the years event times may have) is not judged.

        A columnar (Arrow) record takes :meth:`_process_columnar`; the same rows sent as JSON
        give the same outputs and counters.
        """
        partition = record.partition
        state = self.states[partition]
        ctx = self.contexts[partition]
        ctx.begin_record(f"{self.group}/{record.topic}/{partition}/{record.offset}", record.offset)
        appended_s = record.timestamp_ms / 1000.0
        if not 0.0 < appended_s < _LATEST_S:
            # No usable log time (none, or a producer-set one datetime cannot even hold).
            appended_s = 0.0
        if is_columnar(record.value):
            self._process_columnar(record, state, ctx, appended_s)
        else:
            decoded = decode_record(
                record.value, self.operator.input_type, self.options.max_event_bytes
            )
            self._refuse(record, state, ctx, decoded.rejected, appended_s)
            self._process_events(
                record, decoded.events, decoded.times, decoded.raw_event, state, ctx, appended_s
            )
        if record.offset > state.position:
            # Retention deleted records this group had not read yet: visible, not silent.
            state.counters["skipped_by_retention"] += record.offset - state.position
        state.position = record.offset + 1
        self.dirty.add(partition)

    def _refuse(
        self,
        record: Record,
        state: PartitionState,
        ctx: Context,
        rejected: list[Rejected],
        appended_s: float,
    ) -> None:
        """Items decoding refused: counted ``in`` and ``invalid``, each a dead letter."""
        if not rejected:
            return
        state.counters["in"] += len(rejected)
        state.counters["invalid"] += len(rejected)
        for raw, error in rejected:
            ctx.dead_letter(record.topic, record.offset, raw, str(error), error.field, appended_s)

    def _future(
        self, record: Record, ctx: Context, raw: bytes, ts: datetime, appended_s: float
    ) -> None:
        ctx.dead_letter(
            record.topic,
            record.offset,
            raw,
            f"future: event time {ts.isoformat()} is more than "
            f"{self.options.max_future_s:g} s ahead of the record's log time "
            f"{utc(appended_s).isoformat()}",
            "ts",
            appended_s,
        )

    def _process_events(
        self,
        record: Record,
        events: list[Any],
        times: list[float],
        raw_event: Callable[[int], bytes],
        state: PartitionState,
        ctx: Context,
        appended_s: float,
    ) -> None:
        """The per-event loop: the watermark advances, and due timers fire, before each event
        (``times``: the events' epoch seconds; ``raw_event(i)``: event i's bytes as sent)."""
        op = self.operator
        counters = state.counters
        counters["in"] += len(events)
        horizon = appended_s + self.options.max_future_s if appended_s else _NEVER
        # Watermarks are whole microseconds (event times are), so window arithmetic on
        # integers and timers on floats agree exactly.
        delay_us = round(self.options.watermark_delay_s * 1e6)
        timers = state.timers
        process = op.process
        key_of = op.key
        own_lateness = op.decides_lateness
        advance = op.watermark_candidate
        late_before = counters["late"]
        late = future = failed = 0
        for index, event in enumerate(events):
            ts = times[index]
            if ts > horizon:
                future += 1
                self._future(record, ctx, raw_event(index), event.ts, appended_s)
                continue
            try:
                if ts < state.watermark and not own_lateness:
                    op.on_late(event, raw_event(index), record.offset, ts, ctx)
                    late += 1
                    continue
                if advance is None:
                    candidate = (round(ts * 1e6) - delay_us) / 1e6
                else:
                    candidate = advance(event, ts, delay_us, state)
                if candidate > state.watermark:
                    state.watermark = candidate
                    due = timers.next_due()
                    if due is not None and due <= candidate:
                        self._fire_timers(state, ctx)
                process(event, key_of(event), ts, ctx)
            except Exception as exc:  # a valid event the operator cannot handle (or refuses)
                failed += 1
                field = getattr(exc, "field", "")  # an error naming the event field at fault
                ctx.dead_letter(
                    record.topic,
                    record.offset,
                    raw_event(index),
                    f"processing failed: {type(exc).__name__}: {exc}",
                    field if isinstance(field, str) else "",
                    ts,
                )
        # An operator that decides lateness itself (windows, by their grace) counts it.
        late_by_operator = counters["late"] - late_before
        processed = len(events) - late - late_by_operator - future - failed
        self._count(counters, processed, late, future, failed)

    @staticmethod
    def _count(counters: Counter[str], processed: int, late: int, future: int, failed: int) -> None:
        if processed:
            counters["processed"] += processed
        if late:
            counters["late"] += late
        if future:
            counters["future"] += future
        if failed:
            counters["failed"] += failed

    def _fire_timers(self, state: PartitionState, ctx: Context) -> None:
        """Fire the timers the watermark has passed, in (time, key) order."""
        timers = state.timers
        watermark = state.watermark
        due = timers.next_due()
        # A timer callback may set a timer that is already due: loop until none is.
        while due is not None and due <= watermark:
            for when, key in timers.pop_due(watermark):
                self.operator.on_timer(key, when, ctx)
            due = timers.next_due()

    def _process_columnar(
        self, record: Record, state: PartitionState, ctx: Context, appended_s: float
    ) -> None:
        """An Arrow record: validated as a whole, each bad row dead-lettered on its own (a
        record that is bad as a whole is one dead letter). An operator with
        ``process_columns(cols, watermarks_us, ctx)`` then gets every remaining row in one call,
        ``watermarks_us[i]`` being the watermark the per-event loop would show while row i is
        processed (row i is late exactly when its time is below it: the operator handles it
        as ``on_late`` would), and due timers fire after the batch; any other operator gets
        the rows one by one through the per-event loop. Outputs and counters are those of the
        same rows sent as JSON."""
        op = self.operator
        counters = state.counters
        cols, bad = decode_columns(record.value, op.input_type, self.options.max_batch_rows)
        self._refuse(record, state, ctx, [(raw, error) for _, raw, error in bad], appended_s)
        if not len(cols):
            return
        process_columns = getattr(op, "process_columns", None)
        if process_columns is None or op.watermark_candidate is not None:
            times = (cols.ts_us / 1e6).tolist()
            self._process_events(
                record, cols.events(), times, cols.row_bytes, state, ctx, appended_s
            )
            return
        counters["in"] += len(cols)
        future = 0
        if appended_s:
            ahead = cols.ts_us / 1e6 > appended_s + self.options.max_future_s
            future = int(np.count_nonzero(ahead))
            for i in np.flatnonzero(ahead).tolist():
                ts = utc(cols.ts_us[i] / 1e6)
                self._future(record, ctx, cols.row_bytes(i), ts, appended_s)
            if future:
                cols = cols.take(~ahead)
                if not len(cols):
                    self._count(counters, 0, 0, future, 0)
                    return
        delay_us = round(self.options.watermark_delay_s * 1e6)
        marks = row_watermarks(cols.ts_us, state.watermark, delay_us)
        late_before = counters["late"]
        late = 0 if op.decides_lateness else int(np.count_nonzero(cols.ts_us < marks))
        failed = 0
        try:
            process_columns(cols, marks, ctx)
        except Exception as exc:  # no single row to blame: every row of the call failed
            failed = len(cols)
            late = 0
            reason = f"processing failed: {type(exc).__name__}: {exc}"
            for i in range(len(cols)):
                ts = cols.ts_us[i] / 1e6
                ctx.dead_letter(record.topic, record.offset, cols.row_bytes(i), reason, "", ts)
        late_by_operator = 0 if failed else counters["late"] - late_before
        processed = len(cols) - late - late_by_operator - failed
        self._count(counters, processed, late, future, failed)
        state.watermark = max(state.watermark, int(marks[-1]) / 1e6)
        self._fire_timers(state, ctx)

    def checkpoint(self) -> None:
        """Outputs, state and positions of the partitions touched since the last one."""
        if self._store is None or self._consumer is None:
            return
        if not self.dirty and not self.outputs:
            return
        states = {(self.topic, p): self.states[p] for p in sorted(self.dirty)}
        started = time.perf_counter()
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
        self.last_checkpoint_ms = (time.perf_counter() - started) * 1000.0

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
