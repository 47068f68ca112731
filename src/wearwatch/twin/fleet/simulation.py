"""The fleet twin: machines that run, degrade, fail, get repaired and maintained, and report
every sensor every tick.

Healthy operation is realistic but stationary: each machine runs at a load level that changes
now and then (speed, current, pressure, flow and bearing temperature move with it, the
temperature through a thermal lag), under a daily ambient cycle, with measurement noise.
Faults start at random (per mode, an onset rate), progress over a P-F interval
(:mod:`~wearwatch.twin.fleet.degradation`) and end in a failure: the machine stops (speed,
current, flow and pressure fall to zero, vibration to the floor, the bearing cools) until it is
repaired. Preventive maintenance, staggered per machine, clears any fault in progress. Sensor
faults (:mod:`~wearwatch.twin.fleet.sensors`) corrupt one sensor's readings. Every onset,
failure, repair, maintenance and sensor fault is emitted as a :class:`MaintenanceEvent`.

How it stays fast and deterministic. The state of a machine changes only at discrete events
(a fault onset, a failure, a load change...), scheduled in whole ticks from the machine's own
random stream; between events every reading is a closed-form function of time, computed for
all ticks × machines × sensors of the span at once (numpy). Measurement noise, transit loss and
timestamp jitter come from random blocks keyed by the absolute tick number. So the same seed
gives the same readings and events bit for bit, however :meth:`FleetTwin.step` is chunked.

>>> from wearwatch.twin.fleet.config import load_fleet_config
>>> twin = FleetTwin(load_fleet_config(), machines=4, seed=7)
>>> twin.machine_ids
['pump-001', 'motor-002', 'compressor-003', 'fan-004']
>>> cols, events = twin.step(10)
>>> len(cols), sorted(set(cols.fields["sensor"].tolist()))[:3], events
(200, ['bearing_temp', 'current', 'flow'], [])
>>> twin.hard_limits()["pump-001"]["vibration"]
(None, 7.1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wearwatch.columnar import Columns, FieldArrays
from wearwatch.events import MaintenanceEvent, Reading, TwinCommand, utc
from wearwatch.twin.fleet.commands import check_command
from wearwatch.twin.fleet.config import FleetConfig
from wearwatch.twin.fleet.degradation import (
    SymptomTable,
    draw_roughness,
    log_uniform,
    roughness,
)
from wearwatch.twin.fleet.sensors import SensorFault, apply_fault, draw_fault
from wearwatch.twin.synthetic import EPOCH_S

#: A tick that never comes.
NEVER = np.iinfo(np.int64).max // 4
#: Readings per random block (measurement noise, loss, jitter), roughly.
_BLOCK_READINGS = 1 << 16
_DAY_S = 86400.0
#: Hour of the day the ambient temperature peaks.
_AMBIENT_PEAK_H = 15.0
#: Most machines a twin will simulate.
MAX_MACHINES = 100_000


@dataclass(frozen=True)
class MachineState:
    """What a machine is doing now (ground truth, for tests and the CLI's stat line)."""

    machine_id: str
    machine_type: str
    running: bool
    #: The degradation mode in progress ("": none).
    mode: str
    #: Life share of the fault in progress (0 at onset, 1 at failure).
    life: float
    #: "kind:sensor" of the active sensor fault ("": none).
    sensor_fault: str
    load: float


class FleetTwin:
    """A fleet of ``machines`` machines of the configured types, numbered round-robin."""

    def __init__(
        self, config: FleetConfig, machines: int, seed: int, start_s: float = EPOCH_S
    ) -> None:
        if not 1 <= machines <= MAX_MACHINES:
            raise ValueError(f"machines={machines!r}: expected 1 … {MAX_MACHINES}")
        self.config = config
        self.seed = seed
        self.start_s = float(start_s)
        fleet = config.fleet
        self.tick_s = fleet.tick_s
        self._tick_us = round(fleet.tick_s * 1e6)
        self._start_us = round(self.start_s * 1e6)
        types = list(config.machine_types)
        width = max(3, len(str(machines)))
        self.machine_ids = [f"{types[i % len(types)]}-{i + 1:0{width}d}" for i in range(machines)]
        self._types = [types[i % len(types)] for i in range(machines)]
        self.sensors: tuple[str, ...] = tuple(config.sensors)
        m, s = machines, len(self.sensors)
        self._has = np.zeros((m, s), dtype=bool)
        self._nominal = np.ones((m, s))
        self._noise = np.zeros((m, s))
        self._gain = np.zeros((m, s))
        self._stopped = np.array([config.sensors[name].stopped for name in self.sensors])
        for i, kind in enumerate(self._types):
            for name, levels in config.machine_types[kind].sensors.items():
                j = self.sensors.index(name)
                self._has[i, j] = True
                self._nominal[i, j] = levels.nominal
                self._noise[i, j] = levels.noise
                self._gain[i, j] = levels.load_gain
        self._temp = self.sensors.index("bearing_temp") if "bearing_temp" in self.sensors else -1
        self._symptoms = SymptomTable.of(config, self.sensors)
        self._mode_index = {mode: k for k, mode in enumerate(self._symptoms.modes)}
        # Column codes: categories sorted, as a decoded record's are.
        self._machine_codes, self._machine_cats = _sorted_codes(self.machine_ids)
        self._sensor_codes, self._sensor_cats = _sorted_codes(list(self.sensors))
        units = [config.sensors[name].unit for name in self.sensors]
        self._unit_codes, self._unit_cats = _sorted_codes(units)
        self._block = max(1, _BLOCK_READINGS // (m * s))
        self._noise_cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        children = np.random.SeedSequence([seed, 1]).spawn(m)
        self._rng = [np.random.default_rng(child) for child in children]

        self.tick = 0
        self._outbox: list[MaintenanceEvent] = []
        self._running = np.ones(m, dtype=bool)
        self._load = np.ones(m)
        self._heat0 = np.zeros(m)
        self._heat_t = np.zeros(m)
        self._mode = np.full(m, -1, dtype=np.int64)
        self._onset_tick = np.zeros(m, dtype=np.int64)
        self._omega = np.zeros((m, 3))
        self._phase = np.zeros((m, 3))
        self._sensor_fault: list[SensorFault | None] = [None] * m
        # Scheduled events (ticks).
        self._fail_at = np.full(m, NEVER, dtype=np.int64)
        self._repair_at = np.full(m, NEVER, dtype=np.int64)
        self._pm_at = np.full(m, NEVER, dtype=np.int64)
        self._onset_at = np.full(m, NEVER, dtype=np.int64)
        self._load_at = np.full(m, NEVER, dtype=np.int64)
        self._sf_start_at = np.full(m, NEVER, dtype=np.int64)
        self._sf_end_at = np.full(m, NEVER, dtype=np.int64)
        for i in range(m):
            rng = self._rng[i]
            self._load[i] = rng.uniform(*fleet.load_range)
            self._heat0[i] = self._heat_target(i)  # at operating temperature
            self._load_at[i] = self._after(rng.exponential(fleet.load_change_h * 3600.0))
            self._onset_at[i] = self._next_onset(i)
            self._sf_start_at[i] = self._next_sensor_fault(i)
            interval = config.preventive_interval_s
            if interval > 0:
                self._pm_at[i] = self._after(rng.uniform(0.0, interval))

    # --- public -------------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        """Virtual time of the next tick (epoch seconds)."""
        return self.start_s + self.tick * self.tick_s

    def hard_limits(self) -> dict[str, dict[str, tuple[float | None, float | None]]]:
        """Machine → sensor → (low, high): the limits a plant would configure (vibration: the
        ISO 10816 C/D boundary of the machine's class unless configured)."""
        per_type = {name: t.limits() for name, t in self.config.machine_types.items()}
        return {
            machine: dict(per_type[kind])
            for machine, kind in zip(self.machine_ids, self._types, strict=True)
        }

    def state(self, machine: str) -> MachineState:
        """What ``machine`` is doing now."""
        i = self._index(machine)
        mode = int(self._mode[i])
        life = 0.0
        if mode >= 0 and self._running[i]:
            life = (self.tick - self._onset_tick[i]) / (self._fail_at[i] - self._onset_tick[i])
        fault = self._sensor_fault[i]
        return MachineState(
            machine_id=machine,
            machine_type=self._types[i],
            running=bool(self._running[i]),
            mode=self._symptoms.modes[mode] if mode >= 0 else "",
            life=float(life),
            sensor_fault=f"{fault.kind}:{self.sensors[fault.sensor]}" if fault else "",
            load=float(self._load[i]),
        )

    def step(self, ticks: int) -> tuple[Columns, list[MaintenanceEvent]]:
        """Advance ``ticks`` ticks: the readings of those ticks (event-time order) and the
        ground truth emitted in that span (with any live command's events first)."""
        if ticks < 0:
            raise ValueError(f"ticks={ticks!r}: expected ≥ 0")
        end = self.tick + ticks
        parts: list[tuple[np.ndarray, ...]] = []
        while self.tick < end:
            self._run_due_events()
            until = min(int(self._next_event_tick()), end)
            parts.append(self._readings(self.tick, until))
            self.tick = until
        events, self._outbox = self._outbox, []
        return self._columns(parts), events

    def apply(self, command: TwinCommand) -> list[MaintenanceEvent]:
        """Apply a live command now (see :mod:`~wearwatch.twin.fleet.commands`); returns the
        events it emits (also returned by the next :meth:`step`). A ValueError names what is
        wrong (unknown command, machine, mode, sensor or kind)."""
        checked = check_command(self.config, command)
        i = self._index(checked.machine)
        before = len(self._outbox)
        if checked.command == "inject_fault":
            if not self._running[i]:
                raise ValueError(
                    f"inject_fault: machine={checked.machine!r} is down (failed, awaiting "
                    "repair); repair it first"
                )
            self._start_fault(i, self._mode_index[checked.mode], checked.duration_s, "injected")
        elif checked.command == "inject_sensor_fault":
            if self._sensor_fault[i] is not None:
                self._end_sensor_fault(i, "replaced by an injected fault")
            j = self.sensors.index(checked.sensor)
            self._start_sensor_fault(i, checked.kind, j, checked.duration_s, "injected")
        else:
            self._repair_now(i)
        return self._outbox[before:]

    # --- scheduling ---------------------------------------------------------------------------

    def _after(self, seconds: float) -> int:
        """The tick ``seconds`` from now (at least the next one)."""
        if not math.isfinite(seconds):
            return int(NEVER)
        return self.tick + max(1, math.ceil(seconds / self.tick_s))

    def _onset_rates(self, i: int) -> tuple[list[str], np.ndarray]:
        modes = self.config.machine_types[self._types[i]].modes
        return modes, np.array([self.config.onset_rate_per_s(mode) for mode in modes])

    def _next_onset(self, i: int) -> int:
        _, rates = self._onset_rates(i)
        total = float(rates.sum())
        return self._after(self._rng[i].exponential(1.0 / total)) if total > 0 else int(NEVER)

    def _next_sensor_fault(self, i: int) -> int:
        total = sum(f.per_machine_day for f in self.config.sensor_faults.values())
        if total <= 0:
            return int(NEVER)
        return self._after(self._rng[i].exponential(_DAY_S / total))

    def _next_events(self) -> np.ndarray:
        """Per machine, the tick of its next event."""
        return np.minimum.reduce(
            [
                self._fail_at,
                self._repair_at,
                self._pm_at,
                self._onset_at,
                self._load_at,
                self._sf_start_at,
                self._sf_end_at,
            ]
        )

    def _next_event_tick(self) -> int:
        return int(self._next_events().min())

    def _run_due_events(self) -> None:
        """Every event due at the current tick, machine by machine, in a fixed order (each
        schedules its successors at later ticks)."""
        k = self.tick
        for i in np.flatnonzero(self._next_events() == k).tolist():
            if self._fail_at[i] == k:
                self._fail(i)
            if self._repair_at[i] == k:
                self._repair(i)
            if self._pm_at[i] == k:
                self._preventive(i)
            if self._onset_at[i] == k:
                self._onset(i)
            if self._load_at[i] == k:
                self._change_load(i)
            if self._sf_end_at[i] == k:
                self._end_sensor_fault(i)
            if self._sf_start_at[i] == k:
                self._random_sensor_fault(i)

    # --- events -------------------------------------------------------------------------------

    def _emit(self, i: int, kind: str, detail: str = "", mode: str = "", sensor: str = "") -> None:
        self._outbox.append(
            MaintenanceEvent(
                ts=utc(self.now_s),
                asset_id=self.machine_ids[i],
                kind=kind,  # type: ignore[arg-type]
                detail=detail,
                mode=mode,
                sensor=sensor,
            )
        )

    def _mode_name(self, i: int) -> str:
        return self._symptoms.modes[self._mode[i]] if self._mode[i] >= 0 else ""

    def _onset(self, i: int) -> None:
        modes, rates = self._onset_rates(i)
        rng = self._rng[i]
        mode = modes[int(rng.choice(len(modes), p=rates / rates.sum()))]
        self._start_fault(i, self._mode_index[mode], None, "")

    def _start_fault(self, i: int, mode: int, pf_s: float | None, detail: str) -> None:
        rng = self._rng[i]
        name = self._symptoms.modes[mode]
        if pf_s is None:
            pf_s = log_uniform(rng, *self.config.pf_s(name))
        self._mode[i] = mode
        self._onset_tick[i] = self.tick
        self._fail_at[i] = self._after(pf_s)
        self._onset_at[i] = NEVER
        self._omega[i], self._phase[i] = draw_roughness(rng)
        pf_h = (self._fail_at[i] - self.tick) * self.tick_s / 3600.0
        text = f"P-F {pf_h:.1f} h" + (f"; {detail}" if detail else "")
        self._emit(i, "fault_onset", text, mode=name)

    def _fail(self, i: int) -> None:
        if self._temp >= 0:  # the bearing cools from where the fault left it
            hot = self._levels(self.tick, self.tick + 1)[0, i, self._temp]
            self._heat0[i] = hot - self._ambient(np.array([self.tick * self.tick_s]))[0]
            self._heat_t[i] = self.tick * self.tick_s
        self._running[i] = False
        self._fail_at[i] = NEVER
        self._onset_at[i] = NEVER
        self._repair_at[i] = self._after(self._rng[i].uniform(*self.config.repair_s))
        self._emit(i, "failure", "machine stopped", mode=self._mode_name(i))

    def _repair(self, i: int, detail: str = "back in service") -> None:
        self._anchor_heat(i)
        mode = self._mode_name(i)
        self._running[i] = True
        self._mode[i] = -1
        self._repair_at[i] = NEVER
        self._onset_at[i] = self._next_onset(i)
        self._emit(i, "repair", detail, mode=mode)

    def _preventive(self, i: int) -> None:
        self._pm_at[i] = self._pm_at[i] + self._after(self.config.preventive_interval_s) - self.tick
        if not self._running[i]:
            return  # failed: the repair puts it right
        self._maintain(i, "preventive maintenance")

    def _maintain(self, i: int, detail: str) -> None:
        mode = self._mode_name(i)
        self._mode[i] = -1
        self._fail_at[i] = NEVER
        self._onset_at[i] = self._next_onset(i)
        self._emit(i, "maintenance", detail + (f"; cleared {mode}" if mode else ""), mode=mode)

    def _repair_now(self, i: int) -> None:
        if self._sensor_fault[i] is not None:
            self._end_sensor_fault(i, "repaired")
        if self._running[i]:
            self._maintain(i, "live repair")
        else:
            self._repair(i, "live repair")

    def _change_load(self, i: int) -> None:
        rng = self._rng[i]
        fleet = self.config.fleet
        self._anchor_heat(i)
        self._load[i] = rng.uniform(*fleet.load_range)
        self._load_at[i] = self._after(rng.exponential(fleet.load_change_h * 3600.0))

    def _random_sensor_fault(self, i: int) -> None:
        rng = self._rng[i]
        faults = self.config.sensor_faults
        kinds = list(faults)
        rates = np.array([faults[k].per_machine_day for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=rates / rates.sum()))]
        sensors = np.flatnonzero(self._has[i])
        sensor = int(sensors[rng.integers(len(sensors))])
        self._start_sensor_fault(i, kind, sensor, None, "")

    def _start_sensor_fault(
        self, i: int, kind: str, sensor: int, duration_s: float | None, detail: str
    ) -> None:
        level = float(self._levels(self.tick, self.tick + 1)[0, i, sensor])
        fault = draw_fault(
            self._rng[i],
            kind,
            self.config.sensor_faults[kind],
            sensor,
            float(self._nominal[i, sensor]),
            level,
            self.tick,
            self.tick_s,
            duration_s,
        )
        self._sensor_fault[i] = fault
        self._sf_start_at[i] = NEVER
        self._sf_end_at[i] = fault.end_tick
        self._emit(i, "sensor_fault", detail, mode=kind, sensor=self.sensors[sensor])

    def _end_sensor_fault(self, i: int, detail: str = "") -> None:
        fault = self._sensor_fault[i]
        assert fault is not None
        self._sensor_fault[i] = None
        self._sf_end_at[i] = NEVER
        self._sf_start_at[i] = self._next_sensor_fault(i)
        sensor = self.sensors[fault.sensor]
        self._emit(i, "sensor_fault_end", detail, mode=fault.kind, sensor=sensor)

    def _index(self, machine: str) -> int:
        number = machine.rpartition("-")[2]
        i = int(number) - 1 if number.isdigit() else -1
        if not 0 <= i < len(self.machine_ids) or self.machine_ids[i] != machine:
            raise ValueError(
                f"machine={machine!r}: unknown machine; this fleet has "
                f"{self.machine_ids[0]} … {self.machine_ids[-1]}"
            )
        return i

    # --- physics ------------------------------------------------------------------------------

    def _heat_target(self, i: int) -> float:
        """Bearing temperature rise over ambient the machine settles at (0 when stopped)."""
        if self._temp < 0 or not self._running[i]:
            return 0.0
        j = self._temp
        rise = self._nominal[i, j] - self.config.fleet.ambient_c
        return float(rise * (1.0 + self._gain[i, j] * (self._load[i] - 1.0)))

    def _anchor_heat(self, i: int) -> None:
        """Fix the thermal state at the current tick (before the heat target changes)."""
        t = self.tick * self.tick_s
        target = self._heat_target(i)
        decay = math.exp(-(t - self._heat_t[i]) / self.config.fleet.thermal_tau_s)
        self._heat0[i] = target + (self._heat0[i] - target) * decay
        self._heat_t[i] = t

    def _ambient(self, t: np.ndarray) -> np.ndarray:
        """Ambient temperature at twin times ``t`` (s): a daily cycle peaking mid-afternoon."""
        fleet = self.config.fleet
        hour = ((self.start_s + t) % _DAY_S) / 3600.0
        swing = np.cos(2 * np.pi * (hour - _AMBIENT_PEAK_H) / 24.0)
        return fleet.ambient_c + fleet.ambient_swing_c * swing

    def _levels(self, k0: int, k1: int) -> np.ndarray:
        """Noise-free sensor levels for ticks [k0, k1): (ticks, machines, sensors)."""
        fleet = self.config.fleet
        ticks = np.arange(k0, k1, dtype=np.int64)
        t = ticks * self.tick_s
        running = self._running
        load = (1.0 + self._gain * (self._load[:, None] - 1.0)) * self._nominal
        base = np.where(running[:, None], load, self._stopped[None, :])
        levels = np.broadcast_to(base, (len(t), *base.shape)).copy()
        if self._temp >= 0:
            j = self._temp
            rise = (self._nominal[:, j] - fleet.ambient_c) * (
                1.0 + self._gain[:, j] * (self._load - 1.0)
            )
            target = np.where(running, rise, 0.0)
            decay = np.exp(-(t[:, None] - self._heat_t[None, :]) / fleet.thermal_tau_s)
            heat = target + (self._heat0 - target) * decay
            levels[:, :, j] = self._ambient(t)[:, None] + heat
        faulty = np.flatnonzero((self._mode >= 0) & running)
        if faulty.size:
            onset = self._onset_tick[faulty]
            life = (ticks[:, None] - onset) / (self._fail_at[faulty] - onset)
            effect = self._symptoms.effect(self._mode[faulty], life)
            rough = roughness(t, self._omega[faulty], self._phase[faulty], fleet.roughness)
            levels[:, faulty, :] += effect * rough[:, :, None] * self._nominal[faulty]
        np.maximum(levels, 0.0, out=levels)
        return levels

    def _random(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per tick in [k0, k1) × machine × sensor: a normal (noise) and two uniforms (loss and
        spikes/dropouts; timestamp jitter), from blocks keyed by the absolute tick number."""
        first, last = k0 // self._block, (k1 - 1) // self._block
        parts = []
        for b in range(first, last + 1):
            z, u, jitter = self._random_block(b)
            lo = max(k0 - b * self._block, 0)
            hi = min(k1 - b * self._block, self._block)
            parts.append((z[lo:hi], u[lo:hi], jitter[lo:hi]))
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]

    def _random_block(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cached = self._noise_cache.get(b)
        if cached is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, b]))
            shape = (self._block, *self._has.shape)
            cached = (rng.standard_normal(shape), rng.random(shape), rng.random(shape))
            self._noise_cache = {b: cached}
        return cached

    def _readings(self, k0: int, k1: int) -> tuple[np.ndarray, ...]:
        """Rows of ticks [k0, k1) in event-time order: (ts µs, machine, sensor, value)."""
        fleet = self.config.fleet
        levels = self._levels(k0, k1)
        z, u, jitter = self._random(k0, k1)
        values = levels * (1.0 + self._noise * z)
        keep = self._has[None] & (u >= fleet.reading_loss)
        t = np.arange(k0, k1) * self.tick_s
        for i, fault in enumerate(self._sensor_fault):
            if fault is not None:
                j = fault.sensor
                apply_fault(fault, values[:, i, j], keep[:, i, j], t, u[:, i, j])
        ticks = np.arange(k0, k1, dtype=np.int64)
        offset = np.rint((jitter - 0.5) * (2 * fleet.jitter * self._tick_us)).astype(np.int64)
        ts = self._start_us + ticks[:, None, None] * self._tick_us + offset
        index = np.flatnonzero(keep)
        ts = ts.ravel()[index]
        order = np.argsort(ts, kind="stable")
        index, ts = index[order], ts[order]
        m, s = self._has.shape
        return ts, (index // s) % m, index % s, values.ravel()[index]

    def _columns(self, parts: list[tuple[np.ndarray, ...]]) -> Columns:
        if parts:
            ts, machine, sensor, value = (np.concatenate(p) for p in zip(*parts, strict=True))
        else:
            ts = machine = sensor = np.empty(0, np.int64)
            value = np.empty(0)
        codes = {
            "machine_id": (self._machine_codes[machine], self._machine_cats),
            "sensor": (self._sensor_codes[sensor], self._sensor_cats),
            "unit": (self._unit_codes[sensor], self._unit_cats),
        }
        fields = FieldArrays(["machine_id", "sensor", "value", "unit"], {"value": value}, codes)
        return Columns(Reading, ts, fields, np.arange(len(ts)))


def _sorted_codes(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per name (in the given order) its code into the sorted distinct names."""
    categories, codes = np.unique(np.array(names, dtype=object), return_inverse=True)
    return codes.astype(np.int32), categories
