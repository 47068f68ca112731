"""Pipelines as dataflows: declare a flow in a few lines, test it in memory, run it on the log.

>>> from wearwatch.events import Reading
>>> from wearwatch.runtime.windows import tumbling
>>> flow = Flow("demo", Source("readings", Reading, partitioned_by="machine_id"))
>>> per_machine = flow.stream.key_by("machine_id")       # free: the source is keyed by it
>>> wins = per_machine.window(tumbling(5.0), grace=1.0, value="value", series="sensor")
>>> wins.to_topic("features")
>>> [(s.name, s.input_topic) for s in flow.compile()]
[('demo', 'readings')]

A flow is a tree of steps from one :class:`Source`. ``key_by`` on a key the stream is not
partitioned by yet ends a stage: the items cross an internal repartition topic
``<flow>.<k>.repartition`` and stage ``k`` continues from it. The steps between two such
boundaries fuse into one :class:`~wearwatch.runtime.stages.StageOperator` (one consumer group
per stage: the flow's group for stage 0, ``<group>.<k>`` for stage ``k``), which the ordinary
exactly-once worker runs with its checkpoints. How windows, lateness and repartitions stay
deterministic is explained in :mod:`wearwatch.runtime.stages` and
:mod:`wearwatch.runtime.windows`.

:meth:`Flow.test` runs the same compiled stages on an in-memory log
(:mod:`wearwatch.runtime.harness`); ``wearwatch worker NAME`` runs every stage of a flow
registered with :func:`register` in one process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wearwatch.events import Event
from wearwatch.runtime.aggregate import AGGREGATIONS
from wearwatch.runtime.stages import (
    FilterNode,
    FlatMapNode,
    KeyNode,
    MapNode,
    Node,
    ProcessNode,
    Repartitioned,
    RepartitionSink,
    StageOperator,
    TopicSink,
    WindowNode,
)
from wearwatch.runtime.windows import WindowDef, check_aggregations, seconds_to_us

if TYPE_CHECKING:
    from wearwatch.runtime.harness import FlowOutput

#: Pipelines by name: factories returning a :class:`Flow` or a ``KeyedOperator``.
#: ``wearwatch.pipelines.PIPELINES`` is this very dict (this layer cannot import that one).
REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``wearwatch worker NAME`` builds the pipeline with this factory (called with
    the ``--param key=value`` pairs)."""

    def add(factory: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY[name] = factory
        return factory

    return add


@dataclass(frozen=True)
class Source:
    """A topic and the event type its records hold. ``partitioned_by`` is the topic's
    contract: the attribute its producers key records by (None: unknown, so any ``key_by``
    repartitions). ``partitions``: the partition count the flow relies on (e.g. 1 where the
    order across keys matters); a worker creates the topic so, and refuses one that differs
    (None: whatever the topic has)."""

    topic: str
    event_type: type
    partitioned_by: str | None = None
    partitions: int | None = None


@dataclass
class _Spec:
    """One declared step (compiled into a stage node later)."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    children: list[_Spec] = field(default_factory=list)
    step_id: str = ""


class Stream:
    """Items flowing under a key. Every method adds a step and returns the stream after it."""

    def __init__(self, flow: Flow, spec: _Spec, key_name: str | None) -> None:
        self._flow = flow
        self._spec = spec
        #: The key the stream is partitioned by (None: not known to be partitioned).
        self.key_name = key_name

    def _then(self, kind: str, key_name: str | None = None, **args: Any) -> Stream:
        spec = _Spec(kind, args, step_id=self._flow._step_id(kind))
        self._spec.children.append(spec)
        return Stream(self._flow, spec, self.key_name if key_name is None else key_name)

    def map(self, fn: Callable[[Any], Any]) -> Stream:
        """Each value → ``fn(value)`` (event time: the result's ``ts`` if it has one)."""
        return self._then("map", fn=fn)

    def filter(self, fn: Callable[[Any], bool]) -> Stream:
        return self._then("filter", fn=fn)

    def flat_map(self, fn: Callable[[Any], Iterable[Any]]) -> Stream:
        return self._then("flat_map", fn=fn)

    def process(self, step: Any) -> Stream:
        """A stateful step with typed per-key state: ``step.init() -> S``,
        ``step.on_event(value, state, ctx)`` and optionally ``step.on_timer(when, state,
        ctx)``; ``ctx`` offers ``emit``, ``set_timer``, ``delete_timer``, ``watermark``,
        ``key``, ``count`` and ``clear_state``. A callback returning a value replaces the
        state with it."""
        ProcessNode(step, "check")  # fail at declaration, not when the worker runs
        return self._then("process", step=step)

    def window(
        self,
        *defs: WindowDef,
        grace: float = 0.0,
        value: Callable[[Any], float] | str = "value",
        series: Callable[[Any], str] | str | None = None,
        aggregations: Sequence[str] = AGGREGATIONS,
    ) -> Stream:
        """Event-time windows per key; emits a ``WindowResult`` per window when it closes.

        ``grace`` is the default for definitions without their own; ``value`` and ``series``
        pick each item's sample and series name (attribute names are what a columnar batch
        can aggregate without a Python loop; callables work everywhere else).
        """
        WindowNode(
            defs,
            seconds_to_us(grace, "grace", positive=False),
            value,
            series,
            check_aggregations(aggregations),
            "check",
        )
        return self._then(
            "window",
            defs=tuple(defs),
            grace_us=seconds_to_us(grace, "grace", positive=False),
            value=value,
            series=series,
            aggregations=tuple(aggregations),
        )

    def key_by(self, key: Callable[[Any], Any] | str, name: str | None = None) -> Stream:
        """Re-key the stream by an attribute name or ``key(value)``; free if the stream is
        partitioned by ``name`` already (an attribute's name is its key name), else through
        a repartition topic."""
        if isinstance(key, str):
            attr = key
            name = name or attr
            fn: Callable[[Any], Any] = lambda value: getattr(value, attr)  # noqa: E731
        else:
            fn = key
        if name is not None and name == self.key_name:
            return self._then("key", fn=fn, attr=key if isinstance(key, str) else None)
        return self._then("repartition", key_name=name or f"<{self._flow._n}>", fn=fn)

    def to_topic(self, topic: str, key: Callable[[Any], Any] | None = None) -> None:
        """A sink: each value (an event) to ``topic``, keyed by the stream's key or
        ``key(value)``."""
        self._then("to_topic", topic=topic, key=key)


class Flow:
    """A named dataflow from one source; ``flow.stream`` is where steps start."""

    def __init__(self, name: str, source: Source, *, tick_s: float = 1.0) -> None:
        if not name or "/" in name:
            raise ValueError(f"flow name {name!r}: expected a non-empty name without '/'")
        self.name = name
        self.source = source
        #: How far (event time) an upstream partition's watermark moves before it is
        #: broadcast to every downstream partition of a repartition topic.
        self.tick_us = seconds_to_us(tick_s, "tick_s")
        self._n = 0
        self._root = _Spec("source")
        self.stream = Stream(self, self._root, source.partitioned_by)

    def _step_id(self, kind: str) -> str:
        self._n += 1
        return f"{kind}{self._n}"

    def key_by(self, key: Callable[[Any], Any] | str, name: str | None = None) -> Stream:
        return self.stream.key_by(key, name)

    def repartition_topics(self) -> list[str]:
        """The internal topics, in stage order (stage k reads the k-th)."""
        topics: list[str] = []

        def visit(spec: _Spec) -> None:
            for child in spec.children:
                if child.kind == "repartition":
                    topics.append(f"{self.name}.{len(topics) + 1}.repartition")
                visit(child)

        visit(self._root)
        return topics

    def sink_topics(self) -> list[str]:
        topics: list[str] = []

        def visit(spec: _Spec) -> None:
            for child in spec.children:
                if child.kind == "to_topic" and child.args["topic"] not in topics:
                    topics.append(child.args["topic"])
                visit(child)

        visit(self._root)
        return topics

    def compile(self, partitions: Callable[[str], int] | int = 1) -> list[StageOperator]:
        """The stage operators, stage 0 first. ``partitions``: a topic's partition count (a
        function of the topic name, or one count for all)."""
        count = partitions if callable(partitions) else (lambda _topic: partitions)
        stages: list[tuple[str, str, Any, list[Node], list[str]]] = []
        payload = event_union()

        def build(spec: _Spec, outputs: list[str], topic: str) -> Node | None:
            kind, args = spec.kind, spec.args
            node: Node
            if kind == "map":
                node = MapNode(args["fn"])
            elif kind == "filter":
                node = FilterNode(args["fn"])
            elif kind == "flat_map":
                node = FlatMapNode(args["fn"])
            elif kind == "key":
                node = KeyNode(args["fn"], args["attr"])
            elif kind == "process":
                node = ProcessNode(args["step"], spec.step_id)
            elif kind == "window":
                node = WindowNode(
                    args["defs"],
                    args["grace_us"],
                    args["value"],
                    args["series"],
                    args["aggregations"],
                    spec.step_id,
                    topic,
                )
            elif kind == "to_topic":
                outputs.append(args["topic"])
                return TopicSink(args["topic"], args["key"])
            elif kind == "repartition":
                k = len(stages)
                rtopic = f"{self.name}.{k}.repartition"
                outputs.append(rtopic)
                node = RepartitionSink(rtopic, args["fn"], count(rtopic), self.tick_us)
                stages.append((f"{self.name}.{k}", rtopic, Repartitioned, [], []))
                new_outputs = stages[k][4]
                for child in spec.children:
                    built = build(child, new_outputs, rtopic)
                    if built is not None:
                        stages[k][3].append(built)
                return node
            else:  # pragma: no cover - _Stream only creates the kinds above
                raise ValueError(f"unknown step kind {kind!r}")
            for child in spec.children:
                built = build(child, outputs, topic)
                if built is not None:
                    node.children.append(built)
            return node

        source = self.source
        stages.append((self.name, source.topic, source.event_type, [], []))
        for child in self._root.children:
            built = build(child, stages[0][4], source.topic)
            if built is not None:
                stages[0][3].append(built)
        key_fn = None
        if source.partitioned_by is not None:
            attr = source.partitioned_by
            key_fn = functools.partial(_attribute, attr)
        operators = []
        for i, (name, topic, input_type, roots, outputs) in enumerate(stages):
            operators.append(
                StageOperator(
                    name,
                    topic,
                    input_type,
                    roots,
                    list(dict.fromkeys(outputs)),
                    source_key=key_fn if i == 0 else None,
                    source_key_attr=source.partitioned_by if i == 0 else None,
                    payload_type=payload if i else None,
                    input_partitions=count(topic),
                )
            )
        return operators

    def test(
        self,
        events: Iterable[Any],
        *,
        partitions: int = 1,
        watermark_delay_s: float = 5.0,
        key: Callable[[Any], Any] | None = None,
    ) -> FlowOutput:
        """Run the flow on ``events`` in memory: ``{topic: [events]}`` for every sink topic
        and the dead letters; deterministic, no log. Events go to the source's partitions as
        its producers would send them: keyed by ``key(event)``, by default the source's
        ``partitioned_by``; ``bytes`` are sent as they are (to test bad input)."""
        from wearwatch.runtime.harness import run_in_memory

        return run_in_memory(
            self, events, partitions=partitions, watermark_delay_s=watermark_delay_s, key=key
        )


def _attribute(name: str, value: Any) -> Any:
    return getattr(value, name)


def stage_group(group: str, stage: int) -> str:
    """The consumer group of stage ``stage`` of a flow run under ``group``."""
    return group if stage == 0 else f"{group}.{stage}"


@functools.cache
def _union(types: tuple[type, ...]) -> Any:
    import typing

    return typing.Union[types]  # noqa: UP007 - a runtime-built union of struct types


def event_union() -> Any:
    """Every event type defined so far (a tagged union msgspec decodes by ``type``)."""
    seen: list[type] = []
    todo = list(Event.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in seen and cls is not Repartitioned:
            seen.append(cls)
        todo.extend(cls.__subclasses__())
    return _union(tuple(seen))
