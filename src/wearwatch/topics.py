"""Every topic of the platform, in one place: its name, its event type, and its key contract.

Twins, plants, pipelines, the CLI and the API import topic names from here and nowhere else,
so a producer and its consumers cannot drift apart. ``partitioned_by`` is the topic's
contract with its producers: the event field they key records by (so every event with the
same value lands on the same partition, in order). A producer keys by that field and knows
nothing else about partitions or about who reads the topic; a pipeline that needs another key
re-keys inside itself (``key_by``), never by asking the producer.

``partitions`` pins a topic's partition count where order across keys matters (``None``: the
log's default). This module depends on :mod:`wearwatch.events` only, so every layer may import
it.

>>> MILL_PASSES.name, MILL_PASSES.partitioned_by, MILL_PASSES.partitions
('mill.passes', 'slab_id', 1)
>>> from wearwatch.events import PassActual, utc
>>> MILL_PASSES.key_of(PassActual(ts=utc(0.0), slab_id="S7-000001", pass_no=1, force_kn=1.0))
'S7-000001'
>>> TOPICS["mill.decisions"] is MILL_DECISIONS
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wearwatch.events import (
    Alarm,
    AlarmCommand,
    AnomalyScore,
    DeadLetter,
    DriftDetected,
    FeatureVector,
    MachineHealth,
    MaintenanceEvent,
    ModelScore,
    PassActual,
    PassOutcome,
    PassRequest,
    Reading,
    ReadingTotals,
    Setpoint,
    TwinCommand,
    TwinTelemetry,
)


@dataclass(frozen=True)
class Topic:
    """A topic's name, the event type(s) it carries and the field its producers key by."""

    name: str
    #: An event class, or a union of them (``PassRequest | PassActual``).
    event_type: Any
    #: The event field producers key records by; ``None``: no key contract (one partition).
    partitioned_by: str | None
    #: A fixed partition count, or ``None`` for the log's default.
    partitions: int | None = None

    def __post_init__(self) -> None:
        if self.partitioned_by is None and self.partitions != 1:
            raise ValueError(
                f"topic {self.name!r}: partitioned_by=None needs partitions=1 "
                f"(got {self.partitions!r}): without a key, order holds only in one partition"
            )

    def key_of(self, event: Any) -> str:
        """The record key a producer gives ``event`` on this topic."""
        if self.partitioned_by is None:
            return self.name
        return str(getattr(event, self.partitioned_by))

    def create(self, log: Any) -> None:
        """Create the topic on ``log`` (a :class:`~wearwatch.bus.base.Log`) if missing, with
        the partition count it declares; an existing topic keeps its partitions."""
        log.create_topic(self.name, self.partitions)

    def __str__(self) -> str:
        return self.name


# --- hot strip mill -------------------------------------------------------------------------

#: Both halves of the join (A: request before the pass, B: measured force after it), in the
#: order the plant emitted them. Keyed by ``slab_id``, the one key both halves carry. ONE
#: partition: a mill rolls about one pass every few seconds, far below what one partition
#: carries, and a single partition makes the log's order the plant's order for every product
#: line — the mill pipeline re-keys by line, and its learners must see one order on every run.
MILL_PASSES = Topic("mill.passes", PassRequest | PassActual, partitioned_by="slab_id", partitions=1)
#: The router's decision per pass (served force, source, reason), keyed by product line.
MILL_DECISIONS = Topic("mill.decisions", Setpoint, partitioned_by="line")
#: A joined pass scored (physics, served and per-learner APE), keyed by product line.
MILL_OUTCOMES = Topic("mill.outcomes", PassOutcome, partitioned_by="line")
#: A learner's drift detector fired, keyed by product line.
MILL_DRIFT = Topic("mill.drift", DriftDetected, partitioned_by="line")
#: The twin's ground truth (roll wear) and maintenance events: evaluation only, never features.
MILL_TWIN = Topic("mill.twin", TwinTelemetry | MaintenanceEvent, partitioned_by="asset_id")
#: Live commands to a running twin, applied in the order sent.
MILL_CONTROL = Topic("mill.control", TwinCommand, partitioned_by=None, partitions=1)

# --- machine fleet --------------------------------------------------------------------------

#: One sensor sample per event (or an Arrow batch of them), keyed by machine.
READINGS = Topic("fleet.readings", Reading, partitioned_by="machine_id")
#: Per-key count and sum of readings (the reference pipeline's output).
READING_TOTALS = Topic("fleet.reading_totals", ReadingTotals, partitioned_by="key")
#: Window features per machine (``<sensor>.<aggregate>``), one vector per machine and window.
FEATURES = Topic("fleet.features", FeatureVector, partitioned_by="machine_id")
#: Every scored window: severity, strongest trigger, every trigger (keyed by machine).
SCORES = Topic("fleet.scores", AnomalyScore, partitioned_by="machine_id")
#: Failure risk, health score and time to maintenance per machine.
HEALTH = Topic("fleet.health", MachineHealth, partitioned_by="machine_id")
#: While a model rollout runs: every version's prediction on every health window (served or
#: not), for comparing them live on the same events.
MODEL_SCORES = Topic("fleet.model_scores", ModelScore, partitioned_by="machine_id")
#: Every alarm transition (raised, escalated, cleared, acknowledged...).
ALARMS = Topic("fleet.alarms", Alarm, partitioned_by="machine_id")
#: What the alarm stage acts on, in the order it must: the alarm window's anomaly scores
#: (written by the fleet flow when run with ``alarm_input=true``) and operators' commands
#: (written by the API). One topic, so acknowledgements replay in order with the scores.
ALARM_INPUT = Topic("fleet.alarm_input", AnomalyScore | AlarmCommand, partitioned_by="machine_id")
#: The fleet twin's ground truth (fault onsets, failures, repairs, sensor faults): labels for
#: training and evaluation, never features.
MAINTENANCE = Topic("fleet.maintenance", MaintenanceEvent, partitioned_by="asset_id")
#: Live commands to a running fleet twin (inject a fault, repair), applied in the order sent.
FLEET_CONTROL = Topic("fleet.control", TwinCommand, partitioned_by=None, partitions=1)

# --- runtime --------------------------------------------------------------------------------

#: Inputs that could not be processed, with the reason and their raw bytes; keyed by the
#: topic they came from.
DEAD_LETTERS = Topic("dead_letters", DeadLetter, partitioned_by="source_topic")

TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        MILL_PASSES,
        MILL_DECISIONS,
        MILL_OUTCOMES,
        MILL_DRIFT,
        MILL_TWIN,
        MILL_CONTROL,
        READINGS,
        READING_TOTALS,
        FEATURES,
        SCORES,
        HEALTH,
        MODEL_SCORES,
        ALARMS,
        ALARM_INPUT,
        MAINTENANCE,
        FLEET_CONTROL,
        DEAD_LETTERS,
    )
}
