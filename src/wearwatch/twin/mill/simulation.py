"""Discrete-event twin of a reversing roughing mill (SimPy), emitting events in log order.

Slabs of three product lines arrive (Poisson-like, bounded gaps, utilisation ≈ 50 %), queue for
the stand and are rolled in 5–7 reversing passes. Before each pass the Level-2 system emits a
:class:`PassRequest` (features + physics baseline); after the pass the load cell's
:class:`PassActual` follows after a sensor/network delay — or is lost, duplicated, or delayed
far beyond any join TTL, by configurable shares. True roll wear leaves only as
:class:`TwinTelemetry` (and shocks / roll changes as :class:`MaintenanceEvent`).

By default the plant also does what the Level-2 model does not know (pyrometer fouling,
heat-to-heat chemistry, roll thermal growth, one grade's flow-stress mismatch:
:mod:`~wearwatch.twin.mill.plant_effects`), and the Level-2 scheduler plans drafts with its
adapted prediction (:mod:`~wearwatch.twin.mill.level2`) so the real force stays inside the
stand's rating. ``ideal=True`` is the textbook twin without either, bit for bit the twin that
preceded them.

``MillTwin(cfg).events()`` runs in virtual time as fast as possible; :func:`paced` adds real-time
pacing. Same config (seed) → same events, bit for bit; ids are ``S{seed}-{n:06d}``.

>>> twin = MillTwin(MillTwinConfig(seed=3, scenario="none", planned_passes=60))
>>> evs = list(twin.events(max_passes=6))
>>> sum(isinstance(e, PassRequest) for e in evs)
6
>>> evs[1].slab_id
'S3-000001'
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import simpy

from wearwatch.events import (
    Event,
    MaintenanceEvent,
    PassActual,
    PassRequest,
    TwinCommand,
    TwinTelemetry,
    utc,
)
from wearwatch.physics import rolling as physics
from wearwatch.twin.mill import plant_effects as effects
from wearwatch.twin.mill.level2 import PLANNING_SHARE, ScheduleAdaptation, plan_draft
from wearwatch.twin.mill.scenarios import Scenario, make_scenario

#: 2026-01-01T00:00:00Z: the twin's virtual clock starts here unless told otherwise.
DEFAULT_EPOCH_S = 1_767_225_600.0
ASSET_ID = "mill-R1"
#: Mean passes per slab (5–7 uniform) and mean slab cycle, used to size scenarios by duration.
MEAN_PASSES_PER_SLAB = 6.0


@dataclass(frozen=True)
class MillTwinConfig:
    seed: int = 7
    scenario: str = "none"
    planned_passes: int = 3000
    epoch_s: float = DEFAULT_EPOCH_S
    mean_slab_gap_s: float = 150.0
    sensor_delay_s: float = 1.0  # mean; jitter uniform ±50 %
    loss_share: float = 0.0
    duplicate_share: float = 0.0
    late_share: float = 0.0
    late_delay_s: float = 900.0
    rating_kn: float = physics.STAND_RATING_KN
    lines: tuple[str, ...] = ("structural", "microalloyed", "high_alloy")
    line_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    record_truth: bool = False
    #: True: the textbook twin of DESIGN §4, whose plant differs from the Level-2 model only by
    #: wear, flattening and sensor noise (for teaching). False (default): the realistic twin,
    #: with plant effects the Level-2 physics does not model (see :mod:`.plant_effects`).
    ideal: bool = False

    def __post_init__(self) -> None:
        for name in ("loss_share", "duplicate_share", "late_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value}: expected a share in [0, 1]")
        if self.loss_share + self.late_share > 1.0:
            raise ValueError(
                f"loss_share + late_share = {self.loss_share + self.late_share}: must be ≤ 1"
            )
        for name in ("mean_slab_gap_s", "late_delay_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)}: expected > 0")
        if self.sensor_delay_s < 0:
            raise ValueError(f"sensor_delay_s={self.sensor_delay_s}: expected ≥ 0")
        unknown = [line for line in self.lines if line not in physics.GRADES]
        if unknown or len(self.lines) != len(self.line_weights) or not self.lines:
            raise ValueError(
                f"lines={self.lines!r}: expected names from {sorted(physics.GRADES)} "
                "with one weight each"
            )


@dataclass
class PassTruth:
    """Ground truth of one pass (only kept with ``record_truth``): for evaluation, not features."""

    pass_index: int
    phase: str
    wear: float
    true_force_kn: float


@dataclass
class _Gradual:
    step: float
    every_s: float
    token: int


@dataclass
class _State:
    wear: float = 0.0
    scripted: bool = True  # the scenario drives wear until a live command takes over
    radius_mm: float = 560.0
    gradual: _Gradual | None = None
    token: int = 0
    rolls: effects.RollThermal = field(default_factory=effects.RollThermal)
    rolls_until_s: float = 0.0  # virtual time up to which the rolls' temperature is advanced
    outbox: deque[Event] = field(default_factory=deque)


class MillTwin:
    """The mill twin. Not picklable (SimPy generators); the pipeline is the stateful part."""

    def __init__(self, config: MillTwinConfig | None = None) -> None:
        self.config = cfg = config or MillTwinConfig()
        self.scenario: Scenario = make_scenario(cfg.scenario, cfg.planned_passes)
        self.env = simpy.Environment()
        self.stand = simpy.Resource(self.env, capacity=1)
        seed = cfg.seed
        self._rng_arrival = random.Random(f"{seed}/arrival")
        self._rng_slab = random.Random(f"{seed}/slab")
        self._rng_sensor = random.Random(f"{seed}/sensor")
        self._rng_net = random.Random(f"{seed}/network")
        self._rng_rolls = random.Random(f"{seed}/rolls")
        self._rng_plant = random.Random(f"{seed}/plant")
        self.adaptation = ScheduleAdaptation()
        self.state = _State(radius_mm=self._new_radius())
        self.passes = 0  # passes started
        self.slabs = 0
        self.truth: dict[tuple[str, int], PassTruth] = {}
        self._segment = -1
        self.env.process(self._arrivals())

    # --- public API --------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        """Virtual seconds since the twin's epoch."""
        return float(self.env.now)

    @property
    def wear(self) -> float:
        return self.state.wear

    def events(
        self, until_s: float | None = None, max_passes: int | None = None
    ) -> Iterator[Event]:
        """Events in log (emission) order, as fast as possible in virtual time.

        Stops when virtual time passes ``until_s`` or after the PassActual-emission phase of
        ``max_passes`` passes has had time to drain (pending events are flushed).
        """
        out = self.state.outbox
        if max_passes is not None:
            self._limit = max_passes
        while True:
            while out:
                yield out.popleft()
            if self._limit is not None and self.passes >= self._limit and self._in_flight == 0:
                return
            nxt = self.env.peek()
            if nxt == math.inf or (until_s is not None and nxt > until_s):
                return
            self.env.step()

    def apply(self, command: TwinCommand) -> list[Event]:
        """Apply a live command now; returns the events it emits (also queued in order).

        Commands: ``set_wear {wear}``, ``shock {wear=0.9}``, ``gradual {step, every_s}``,
        ``maintenance {}``. A live command takes wear over from the scripted scenario.
        """
        name, args = command.command, dict(command.args)
        st = self.state
        before = len(st.outbox)
        if name == "set_wear":
            wear = _number(args, "wear", name, lo=0.0, hi=1.5)
            self._take_over()
            st.wear = wear
        elif name == "shock":
            wear = _number(args, "wear", name, lo=0.0, hi=1.5, default=0.9)
            self._take_over()
            st.wear = wear
            self._emit_maintenance("fault_onset", f"shock: wear -> {wear}")
        elif name == "gradual":
            step = _number(args, "step", name, lo=-1.0, hi=1.0)
            every_s = _number(args, "every_s", name)
            if every_s <= 0:
                raise ValueError(f"gradual: every_s={every_s!r}: expected a period > 0 seconds")
            self._take_over()
            st.token += 1
            st.gradual = _Gradual(step, every_s, st.token)
            self.env.process(self._gradual(st.gradual))
        elif name == "maintenance":
            self._take_over()
            self._maintenance("live command")
        else:
            raise ValueError(f"command={name!r}: expected set_wear, shock, gradual or maintenance")
        return list(st.outbox)[before:]

    # --- internals ---------------------------------------------------------------------------

    _limit: int | None = None
    _in_flight = 0

    def _done(self) -> bool:
        return self._limit is not None and self.passes >= self._limit

    def _ts(self, t: float | None = None) -> Any:
        return utc(self.config.epoch_s + (self.env.now if t is None else t))

    def _new_radius(self) -> float:
        return round(self._rng_rolls.uniform(540.0, 600.0), 1)

    def _take_over(self) -> None:
        st = self.state
        st.scripted = False
        st.gradual = None  # a running gradual process stops at its next tick
        st.token += 1

    def _emit_maintenance(self, kind: str, detail: str) -> None:
        self.state.outbox.append(
            MaintenanceEvent(ts=self._ts(), asset_id=ASSET_ID, kind=kind, detail=detail)
        )

    def _maintenance(self, detail: str) -> None:
        st = self.state
        st.wear = 0.0
        st.radius_mm = self._new_radius()
        st.rolls = effects.RollThermal()  # new rolls come in cold
        self._emit_maintenance("maintenance", f"roll change ({detail}), radius {st.radius_mm} mm")

    def _gradual(self, g: _Gradual) -> Any:
        while True:
            yield self.env.timeout(g.every_s)
            st = self.state
            if st.gradual is None or st.gradual.token != g.token:
                return
            st.wear = min(max(st.wear + g.step, 0.0), 1.5)

    def _scripted_wear(self, pass_index: int) -> None:
        st = self.state
        if not st.scripted:
            return
        seg_idx = self.scenario.segment_index(pass_index)
        if seg_idx != self._segment:
            seg = self.scenario.segments[seg_idx]
            if seg.onset == "maintenance":
                self._maintenance(f"scenario {self.scenario.name}")
            elif seg.onset == "shock":
                self._emit_maintenance("fault_onset", f"shock: wear -> {seg.wear_start}")
            self._segment = seg_idx
        st.wear = self.scenario.wear_at(pass_index)

    def _arrivals(self) -> Any:
        cfg = self.config
        rng = self._rng_arrival
        while not self._done():
            self.slabs += 1
            self.env.process(self._slab(self.slabs))
            gap = cfg.mean_slab_gap_s * rng.uniform(0.6, 1.4)
            yield self.env.timeout(round(gap, 3))

    def _slab(self, n: int) -> Any:
        cfg = self.config
        rng = self._rng_slab
        line = rng.choices(cfg.lines, weights=cfg.line_weights)[0]
        grade = physics.GRADES[line]
        width = round(rng.uniform(900.0, 2000.0), 1)
        h = round(rng.uniform(200.0, 250.0), 1)
        length_m = rng.uniform(8.0, 11.0)
        temp = rng.uniform(1180.0, 1230.0)
        n_passes = rng.choice((5, 6, 7))
        reductions = [rng.uniform(0.15, 0.33) for _ in range(n_passes)]
        temp_losses = [rng.uniform(15.0, 25.0) for _ in range(n_passes)]
        heat = 1.0 if cfg.ideal else effects.heat_flow_factor(self._rng_plant)
        slab_id = f"S{cfg.seed}-{n:06d}"
        self._in_flight += 1
        with self.stand.request() as req:
            yield req
            for pass_no in range(1, n_passes + 1):
                if self._done():
                    break
                h_out, speed, measured = self._roll_pass(
                    slab_id, pass_no, line, grade, width, h, temp, reductions[pass_no - 1], heat
                )
                length_m *= h / h_out
                h = h_out
                temp -= temp_losses[pass_no - 1]
                # The load cell reports at the end of the pass (rolling time of the now longer
                # slab); the next pass starts after the reversal.
                rolling_s = round(length_m / speed, 3)
                if not cfg.ideal:
                    self.state.rolls.roll(rolling_s)
                    self.state.rolls_until_s = self.env.now + rolling_s
                self._in_flight += 1
                self.env.process(self._ship(slab_id, pass_no, measured, rolling_s))
                yield self.env.timeout(round(rolling_s + 4.0, 3))
        self._in_flight -= 1

    def _roll_pass(
        self,
        slab_id: str,
        pass_no: int,
        line: str,
        grade: physics.Grade,
        width: float,
        h_in: float,
        temp: float,
        reduction: float,
        heat: float,
    ) -> tuple[float, float, float]:
        """Plan, roll and measure one pass; returns (true exit thickness, speed, force).

        ``h_in`` is the slab's real thickness (the stand's gauge meter measured it) and ``temp``
        its true temperature; Level-2 sees the pyrometer's reading.
        """
        cfg = self.config
        st = self.state
        idx = self.passes
        self.passes += 1
        self._scripted_wear(idx)
        speed = round(1.5 + 0.25 * (pass_no - 1), 3)
        sensor = self._rng_sensor
        pyrometer_error = physics.TEMP_BIAS_K + sensor.gauss(0.0, physics.TEMP_NOISE_K)
        if not cfg.ideal:
            pyrometer_error += effects.pyrometer_fouling_k(self.env.now)
            st.rolls.idle(max(self.env.now - st.rolls_until_s, 0.0))
        temp_meas = round(temp + pyrometer_error, 2)
        common = dict(
            width_mm=width,
            temp_c=temp_meas,
            speed_mps=speed,
            roll_radius_mm=st.radius_mm,
            carbon_pct=grade.carbon_pct,
            multiplier=grade.flow_multiplier,
        )
        # Level-2 pass scheduling: back off the draft until the predicted force — the physics
        # baseline times the line's adaptation factor (the ideal twin: the baseline alone) — is
        # inside the planning share of the rating.
        factor = 1.0 if cfg.ideal else self.adaptation.factor(line)

        def predicted_kn(h_out: float) -> float:
            return factor * physics.baseline_force_kn(h_in_mm=h_in, h_out_mm=h_out, **common)

        h_out, _ = plan_draft(h_in, reduction, predicted_kn, PLANNING_SHARE * cfg.rating_kn)
        base = physics.baseline_force_kn(h_in_mm=h_in, h_out_mm=h_out, **common)
        ts = self._ts()
        st.outbox.append(
            TwinTelemetry(ts=ts, asset_id=ASSET_ID, name="roll_wear", value=round(st.wear, 6))
        )
        st.outbox.append(
            PassRequest(
                ts=ts,
                slab_id=slab_id,
                pass_no=pass_no,
                line=line,
                width_mm=width,
                h_in_mm=h_in,
                h_out_mm=h_out,
                temp_c=temp_meas,
                speed_mps=speed,
                roll_radius_mm=st.radius_mm,
                baseline_force_kn=round(base, 3),
                rating_force_kn=cfg.rating_kn,
                grade=grade.grade,
                carbon_pct=grade.carbon_pct,
            )
        )
        # The rolls' thermal growth closes the gap Level-2 set cold: a deeper bite.
        h_exit = h_out if cfg.ideal else round(h_out - st.rolls.gap_closure_mm(st.radius_mm), 2)
        multiplier = grade.flow_multiplier
        if not cfg.ideal:
            multiplier *= heat * effects.flow_stress_mismatch(line, temp)
        true_force = physics.plant_force_kn(
            width_mm=width,
            h_in_mm=h_in,
            h_out_mm=h_exit,
            temp_c=temp,
            speed_mps=speed,
            roll_radius_mm=st.radius_mm,
            carbon_pct=grade.carbon_pct,
            multiplier=multiplier,
            wear=st.wear,
        )
        measured = round(true_force * (1.0 + sensor.gauss(0.0, physics.LOAD_CELL_SIGMA)), 3)
        if not cfg.ideal:
            self.adaptation.observe(line, measured, base)
        if cfg.record_truth:
            self.truth[(slab_id, pass_no)] = PassTruth(
                idx, self.scenario.phase_at(idx), st.wear, true_force
            )
        return h_exit, speed, measured

    def _ship(self, slab_id: str, pass_no: int, force: float, pass_time: float) -> Any:
        cfg = self.config
        net = self._rng_net
        yield self.env.timeout(pass_time)
        t_meas = self.env.now
        event = PassActual(ts=self._ts(t_meas), slab_id=slab_id, pass_no=pass_no, force_kn=force)
        u = net.random()
        dup = net.random() < cfg.duplicate_share
        delay = round(cfg.sensor_delay_s * net.uniform(0.5, 1.5), 3)
        if u < cfg.loss_share:
            self._in_flight -= 1
            return
        if u < cfg.loss_share + cfg.late_share:
            delay += cfg.late_delay_s
        yield self.env.timeout(delay)
        self.state.outbox.append(event)
        if dup:
            yield self.env.timeout(round(0.5 * net.random(), 3))
            self.state.outbox.append(event)
        self._in_flight -= 1


def _number(
    args: dict[str, Any],
    key: str,
    command: str,
    lo: float = -math.inf,
    hi: float = math.inf,
    default: float | None = None,
) -> float:
    if key not in args:
        if default is not None:
            return default
        raise ValueError(f"{command}: missing argument {key!r}")
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{command}: {key}={value!r}: expected a finite number")
    if not lo <= value <= hi:
        raise ValueError(f"{command}: {key}={value!r}: expected a value in [{lo}, {hi}]")
    return float(value)


def planned_passes_for(duration_s: float, config: MillTwinConfig) -> int:
    """Expected passes in ``duration_s`` of virtual time (to scale a scenario to a run)."""
    return max(20, int(duration_s / config.mean_slab_gap_s * MEAN_PASSES_PER_SLAB))


def paced(
    twin: MillTwin,
    speed: float,
    until_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    fast_until_s: float = 0.0,
) -> Iterator[Event]:
    """The twin's events paced in real time: virtual seconds / ``speed`` per wall second.

    Events up to virtual time ``fast_until_s`` go as fast as possible (a head start: history
    for the pipeline to learn from before anyone watches); pacing starts after them.
    """
    if not speed > 0:
        raise ValueError(f"speed={speed!r}: expected a factor > 0")
    start_wall = clock()
    start_virtual = twin.now_s
    for event in twin.events(until_s=until_s):
        if twin.now_s <= fast_until_s:
            start_wall, start_virtual = clock(), twin.now_s
            yield event
            continue
        due = start_wall + (twin.now_s - start_virtual) / speed
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        yield event
