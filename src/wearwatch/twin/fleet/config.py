"""The fleet twin's configuration: machine types, sensors, degradation modes, sensor faults and
maintenance, read from a TOML file (``default_fleet.toml`` documents every key).

Slow processes (fault onsets, P-F intervals, repairs, preventive maintenance) are written in
real-world units and divided by ``fleet.compression`` (see the file's header); the properties
of :class:`FleetConfig` give them in simulated units. Every error names the file, the key path
and the value:

>>> cfg = load_fleet_config()
>>> list(cfg.machine_types), cfg.machine_types["pump"].iso_class, cfg.tick_s
(['pump', 'motor', 'compressor', 'fan'], 'II', 1.0)
>>> cfg.pf_s("seal_leak") == (14 * 86400 / 30, 60 * 86400 / 30)
True
>>> import tempfile, pathlib
>>> bad = pathlib.Path(tempfile.mkdtemp()) / "plant.toml"
>>> _ = bad.write_text(DEFAULT_PATH.read_text().replace('iso_class = "II"', 'iso_class = "V"'))
>>> try:
...     load_fleet_config(bad)
... except FleetConfigError as exc:
...     print(exc)
plant.toml: machine_types.pump.iso_class = 'V': expected one of 'I', 'II', 'III', 'IV'
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

#: ISO 10816 vibration severity zone boundaries (RMS velocity, mm/s, 10-1000 Hz) per machine
#: class: (A/B, B/C, C/D). Zone A: new; B: fine long-term; C: plan maintenance; D: damaging.
#: Class I: up to 15 kW; II: 15-75 kW; III: large, rigid foundation; IV: large, flexible.
ISO_10816_ZONES: dict[str, tuple[float, float, float]] = {
    "I": (0.71, 1.8, 4.5),
    "II": (1.12, 2.8, 7.1),
    "III": (1.8, 4.5, 11.2),
    "IV": (2.8, 7.1, 18.0),
}
#: The sensors a machine type may have (the names are shared across types).
SENSORS: tuple[str, ...] = ("vibration", "bearing_temp", "pressure", "flow", "speed", "current")
#: Sensor fault kinds: faults of the measurement, not of the machine.
SENSOR_FAULTS: tuple[str, ...] = ("stuck", "drift", "spikes", "dropout")
#: The shipped default configuration.
DEFAULT_PATH = Path(__file__).with_name("default_fleet.toml")

_DAY_S = 86400.0
_HOUR_S = 3600.0
_YEAR_S = 365.25 * _DAY_S

NonNegative = Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]
Positive = Annotated[float, msgspec.Meta(gt=0.0, le=1e12)]
Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Range = tuple[NonNegative, NonNegative]


class FleetConfigError(ValueError):
    """A configuration value that cannot be used; ``path`` is its key path."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


def _ordered(name: str, value: tuple[float, float]) -> None:
    if value[0] > value[1]:
        raise ValueError(f"{name}={list(value)!r}: expected [low, high] with low <= high")


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class FleetSettings(_Spec):
    """The ``[fleet]`` table: time base and the fast physics shared by every machine."""

    tick_s: Annotated[float, msgspec.Meta(ge=0.001, le=3600.0)] = 1.0
    compression: Annotated[float, msgspec.Meta(ge=1.0, le=1e6)] = 20.0
    ambient_c: Annotated[float, msgspec.Meta(ge=-60.0, le=80.0)] = 25.0
    ambient_swing_c: Annotated[float, msgspec.Meta(ge=0.0, le=40.0)] = 4.0
    thermal_tau_s: Positive = 1200.0
    load_range: tuple[Positive, Positive] = (0.75, 1.05)
    load_change_h: Positive = 4.0
    reading_loss: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.001
    jitter: Annotated[float, msgspec.Meta(ge=0.0, le=0.45)] = 0.1
    roughness: Annotated[float, msgspec.Meta(ge=0.0, le=0.5)] = 0.08

    def __post_init__(self) -> None:
        _ordered("load_range", self.load_range)
        if round(self.tick_s * 1e6) != self.tick_s * 1e6:
            raise ValueError(f"tick_s={self.tick_s!r}: expected a whole number of microseconds")


class MaintenancePolicy(_Spec):
    """The ``[maintenance]`` table (real-world units; compressed)."""

    repair_h: Range = (24.0, 120.0)
    #: 0: no preventive maintenance.
    preventive_interval_days: NonNegative = 365.0

    def __post_init__(self) -> None:
        _ordered("repair_h", self.repair_h)
        if self.repair_h[0] <= 0:
            raise ValueError(f"repair_h={list(self.repair_h)!r}: expected durations > 0")


class SensorSpec(_Spec):
    """A ``[sensors.<name>]`` table: unit and the reading of a stopped machine."""

    unit: str
    stopped: NonNegative = 0.0


class SensorLevels(_Spec):
    """One sensor of a machine type: healthy level at rated load, noise, load response and
    the hard limits a plant would configure."""

    nominal: Positive
    #: Standard deviation of one reading, a share of its level.
    noise: Annotated[float, msgspec.Meta(ge=0.0, le=0.2)] = 0.01
    #: Relative change of the level per unit of relative load change.
    load_gain: Annotated[float, msgspec.Meta(ge=-5.0, le=5.0)] = 0.0
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low={self.low!r}: expected below high={self.high!r}")


class MachineType(_Spec):
    """A ``[machine_types.<name>]`` table."""

    iso_class: Literal["I", "II", "III", "IV"]
    modes: list[str] = []
    sensors: dict[str, SensorLevels] = {}

    def limits(self) -> dict[str, tuple[float | None, float | None]]:
        """Sensor → (low, high); vibration's high defaults to the class's C/D boundary."""
        out = {}
        for name, levels in self.sensors.items():
            high = levels.high
            if name == "vibration" and high is None:
                high = ISO_10816_ZONES[self.iso_class][2]
            out[name] = (levels.low, high)
        return out


class Symptom(_Spec):
    """What a degradation mode does to one sensor: ``rise`` × nominal at failure, showing
    from life share ``start`` on, shaped by ``growth`` (exponential)."""

    rise: Annotated[float, msgspec.Meta(ge=-1.0, le=100.0)]
    start: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0
    growth: Annotated[float, msgspec.Meta(gt=0.0, le=50.0)] = 3.0


class DegradationMode(_Spec):
    """A ``[modes.<name>]`` table: real-world P-F range and onset rate, and the symptoms."""

    pf_days: Range
    onsets_per_year: NonNegative
    symptoms: dict[str, Symptom] = {}

    def __post_init__(self) -> None:
        _ordered("pf_days", self.pf_days)
        if self.pf_days[0] <= 0:
            raise ValueError(f"pf_days={list(self.pf_days)!r}: expected intervals > 0")


class SensorFaultSpec(_Spec):
    """A ``[sensor_faults.<kind>]`` table (simulated units: not compressed)."""

    per_machine_day: NonNegative = 0.0
    duration_h: Range = (1.0, 4.0)
    #: drift: share of nominal per hour; spikes: jump as a multiple of nominal.
    size: Range = (0.0, 0.0)
    #: spikes: share of readings that spike; dropout: share of readings that still arrive.
    share: Share = 0.0

    def __post_init__(self) -> None:
        _ordered("duration_h", self.duration_h)
        _ordered("size", self.size)
        if self.duration_h[0] <= 0:
            raise ValueError(f"duration_h={list(self.duration_h)!r}: expected durations > 0")


class FleetConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A whole fleet configuration (see ``default_fleet.toml``)."""

    fleet: FleetSettings
    maintenance: MaintenancePolicy
    sensors: dict[str, SensorSpec]
    machine_types: dict[str, MachineType]
    modes: dict[str, DegradationMode]
    sensor_faults: dict[str, SensorFaultSpec]
    #: Where it was read from (for messages).
    source: str = ""

    @property
    def tick_s(self) -> float:
        return self.fleet.tick_s

    def pf_s(self, mode: str) -> tuple[float, float]:
        """The simulated P-F interval range of ``mode``, in seconds."""
        lo, hi = self.modes[mode].pf_days
        return lo * _DAY_S / self.fleet.compression, hi * _DAY_S / self.fleet.compression

    def onset_rate_per_s(self, mode: str) -> float:
        """The simulated onset rate of ``mode`` per machine, per second."""
        return self.modes[mode].onsets_per_year * self.fleet.compression / _YEAR_S

    @property
    def repair_s(self) -> tuple[float, float]:
        lo, hi = self.maintenance.repair_h
        return lo * _HOUR_S / self.fleet.compression, hi * _HOUR_S / self.fleet.compression

    @property
    def preventive_interval_s(self) -> float:
        """0: none."""
        return self.maintenance.preventive_interval_days * _DAY_S / self.fleet.compression


def load_fleet_config(path: Path | None = None) -> FleetConfig:
    """Read and check a fleet configuration (``None``: the shipped default).

    Raises :class:`FleetConfigError` naming the file, the key path and the value.
    """
    path = DEFAULT_PATH if path is None else Path(path)
    name = path.name
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise FleetConfigError(f"{name}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetConfigError(f"{name}: not valid TOML ({exc})") from None
    return _build(doc, name)


def _build(doc: dict[str, Any], name: str) -> FleetConfig:
    tables = ("fleet", "maintenance", "sensors", "machine_types", "modes", "sensor_faults")
    _known(doc, tables, "", name)
    fleet = _convert(doc.get("fleet", {}), FleetSettings, "fleet", name)
    maintenance = _convert(doc.get("maintenance", {}), MaintenancePolicy, "maintenance", name)
    sensors = {
        key: _convert(value, SensorSpec, f"sensors.{key}", name)
        for key, value in _table(doc, "sensors", name).items()
    }
    for key in sensors:
        if key not in SENSORS:
            _fail(name, f"sensors.{key}", f"unknown sensor; expected one of {_names(SENSORS)}")
    modes = {}
    for key, value in _table(doc, "modes", name).items():
        value = _dict(value, f"modes.{key}", name)
        symptoms = {
            sensor: _convert(spec, Symptom, f"modes.{key}.symptoms.{sensor}", name)
            for sensor, spec in _table(value, "symptoms", name, f"modes.{key}.").items()
        }
        for sensor in symptoms:
            if sensor not in sensors:
                _fail(name, f"modes.{key}.symptoms.{sensor}", _not_a_sensor(sensors))
        rest = {k: v for k, v in value.items() if k != "symptoms"}
        modes[key] = msgspec.structs.replace(
            _convert(rest, DegradationMode, f"modes.{key}", name), symptoms=symptoms
        )
    types = {}
    for key, value in _table(doc, "machine_types", name).items():
        value = _dict(value, f"machine_types.{key}", name)
        levels = {
            sensor: _convert(spec, SensorLevels, f"machine_types.{key}.sensors.{sensor}", name)
            for sensor, spec in _table(value, "sensors", name, f"machine_types.{key}.").items()
        }
        if not levels:
            _fail(name, f"machine_types.{key}.sensors", "missing; a machine needs a sensor")
        for sensor in levels:
            if sensor not in sensors:
                _fail(name, f"machine_types.{key}.sensors.{sensor}", _not_a_sensor(sensors))
        rest = {k: v for k, v in value.items() if k != "sensors"}
        kind = msgspec.structs.replace(
            _convert(rest, MachineType, f"machine_types.{key}", name), sensors=levels
        )
        for mode in kind.modes:
            if mode not in modes:
                _fail(
                    name,
                    f"machine_types.{key}.modes",
                    f"{mode!r} is not a mode; expected names from {_names(modes)}",
                )
        if not _is_id(key):
            _fail(name, f"machine_types.{key}", "expected a name of letters, digits and _")
        types[key] = kind
    if not types:
        _fail(name, "machine_types", "missing; expected at least one machine type")
    faults = {
        key: _convert(value, SensorFaultSpec, f"sensor_faults.{key}", name)
        for key, value in _table(doc, "sensor_faults", name).items()
    }
    for key in faults:
        if key not in SENSOR_FAULTS:
            _fail(name, f"sensor_faults.{key}", f"unknown kind; expected {_names(SENSOR_FAULTS)}")
    return FleetConfig(
        fleet=fleet,
        maintenance=maintenance,
        sensors=sensors,
        machine_types=types,
        modes=modes,
        sensor_faults=faults,
        source=name,
    )


def _is_id(text: str) -> bool:
    return text.replace("_", "a").isalnum() and text.isascii()


def _names(names: Any) -> str:
    return ", ".join(repr(n) for n in names)


def _not_a_sensor(sensors: dict[str, SensorSpec]) -> str:
    return f"not a sensor of [sensors]; expected one of {_names(sensors)}"


def _fail(name: str, path: str, message: str) -> None:
    raise FleetConfigError(f"{name}: {path}: {message}", path)


def _known(value: dict[str, Any], keys: tuple[str, ...], prefix: str, name: str) -> None:
    for key in value:
        if key not in keys:
            _fail(name, f"{prefix}{key}", f"not a known key; expected {_names(keys)}")


def _dict(value: Any, path: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FleetConfigError(f"{name}: {path} = {value!r}: expected a table", path)
    return value


def _table(doc: dict[str, Any], key: str, name: str, prefix: str = "") -> dict[str, Any]:
    return _dict(doc.get(key, {}), f"{prefix}{key}", name)


def _convert(value: Any, cls: type[Any], path: str, name: str) -> Any:
    """``value`` as ``cls``; msgspec's error rewritten to name the key path and the value."""
    value = _dict(value, path, name)
    try:
        return msgspec.convert(value, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, _, where = text.rpartition(" - at `$")
        where = where.rstrip("`")
        if not message:
            message, where = text, ""
        missing = message.startswith("Object missing required field")
        unknown = message.startswith("Object contains unknown field")
        if missing or unknown:
            field = message.split("`")[1]
            full = f"{path}.{field}"
            what = "missing" if missing else "not a known key"
            raise FleetConfigError(f"{name}: {full}: {what}", full) from None
        if where:  # a type or bound error at `$.field` or `$.field[0]`
            field = where.lstrip(".")
            full = f"{path}.{field}"
            shown = _lookup(value, field)
            reason = message[:1].lower() + message[1:]
            if reason.startswith("invalid enum value"):
                reason = f"expected one of {_names(_literal_values(cls, field))}"
            reason = reason.replace("`", "'").replace("expected 'str' matching", "expected")
            raise FleetConfigError(f"{name}: {full} = {shown!r}: {reason}", full) from None
        # a cross-field check (``field=value: reason``) from __post_init__
        field = message.split("=", 1)[0]
        full = f"{path}.{field}"
        raise FleetConfigError(f"{name}: {path}.{message.replace('=', ' = ', 1)}", full) from None


def _literal_values(cls: type[Any], field: str) -> tuple[Any, ...]:
    info = msgspec.inspect.type_info(cls)
    for f in getattr(info, "fields", ()):
        if f.name == field:
            return tuple(getattr(f.type, "values", ()))
    return ()


def _lookup(value: dict[str, Any], field: str) -> Any:
    key, _, index = field.partition("[")
    found = value.get(key)
    if index and isinstance(found, list):
        try:
            return found[int(index.rstrip("]"))]
        except (ValueError, IndexError):
            return found
    return found
