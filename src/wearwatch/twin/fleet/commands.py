"""Live commands to a fleet twin, checked against its configuration.

``inject_fault {machine, mode[, pf_h]}``: a degradation mode starts now (failure after
``pf_h`` simulated hours, or a P-F interval drawn from the mode's range);
``inject_sensor_fault {machine, sensor, kind[, duration_h]}``: a sensor fault starts now;
``repair {machine}``: the machine is put right now (a failed machine is repaired, a running
one is maintained: its faults, machine and sensor, are cleared).

Machine ids follow the twin's round-robin numbering (``pump-001``, ``motor-002``...), so a
sender can check a command without knowing how many machines the running twin has; the twin
then checks the number is one of its own.

>>> from wearwatch.events import TwinCommand, utc
>>> from wearwatch.twin.fleet.config import load_fleet_config
>>> cfg = load_fleet_config()
>>> check_command(cfg, TwinCommand(ts=utc(0), command="inject_fault",
...               args={"machine": "motor-002", "mode": "bearing_wear"})).number
2
>>> try:
...     check_command(cfg, TwinCommand(ts=utc(0), command="inject_fault",
...                   args={"machine": "motor-002", "mode": "seal_leak"}))
... except ValueError as exc:
...     print(str(exc).split("; ")[0])
inject_fault: mode='seal_leak': not a degradation mode of motor machines
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from wearwatch.events import TwinCommand
from wearwatch.twin.fleet.config import SENSOR_FAULTS, FleetConfig

#: Command → (required args, optional args).
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "inject_fault": (("machine", "mode"), ("pf_h",)),
    "inject_sensor_fault": (("machine", "sensor", "kind"), ("duration_h",)),
    "repair": (("machine",), ()),
}
_MACHINE = re.compile(r"^([A-Za-z0-9_]+)-(\d+)$")


@dataclass(frozen=True)
class FleetCommand:
    """A checked command: the machine's 1-based ``number`` and the command's arguments."""

    command: str
    machine: str
    number: int
    mode: str = ""
    sensor: str = ""
    kind: str = ""
    #: Seconds until failure (inject_fault) or of the sensor fault; None: drawn.
    duration_s: float | None = None


def machine_number(config: FleetConfig, machine: Any) -> int:
    """The 1-based number of a machine id, checked against the round-robin type order."""
    types = list(config.machine_types)
    match = _MACHINE.match(machine) if isinstance(machine, str) else None
    if match is None or match.group(1) not in types or int(match.group(2)) < 1:
        raise ValueError(
            f"machine={machine!r}: unknown machine; expected <type>-<number> with a type of "
            f"{', '.join(types)} (e.g. {types[0]}-001)"
        )
    number = int(match.group(2))
    expected = types[(number - 1) % len(types)]
    if match.group(1) != expected:
        raise ValueError(
            f"machine={machine!r}: unknown machine; machine number {number} is a {expected}"
        )
    return number


def check_command(config: FleetConfig, command: TwinCommand) -> FleetCommand:
    """``command`` checked against ``config``; a ValueError names the bad argument."""
    name, args = command.command, dict(command.args)
    if name not in COMMANDS:
        raise ValueError(f"command={name!r}: expected one of {', '.join(COMMANDS)}")
    required, optional = COMMANDS[name]
    for key in required:
        if key not in args:
            raise ValueError(f"{name}: argument {key!r} missing")
    for key in args:
        if key not in required + optional:
            raise ValueError(f"{name}: argument {key!r} unknown; expected {required + optional}")
    machine = args["machine"]
    number = machine_number(config, machine)
    kind_name = machine.rsplit("-", 1)[0]
    machine_type = config.machine_types[kind_name]
    if name == "inject_fault":
        mode = args["mode"]
        if mode not in machine_type.modes:
            raise ValueError(
                f"{name}: mode={mode!r}: not a degradation mode of {kind_name} machines; "
                f"expected one of {', '.join(repr(m) for m in machine_type.modes)}"
            )
        return FleetCommand(name, machine, number, mode=mode, duration_s=_hours(args, "pf_h"))
    if name == "inject_sensor_fault":
        sensor, kind = args["sensor"], args["kind"]
        if sensor not in machine_type.sensors:
            raise ValueError(
                f"{name}: sensor={sensor!r}: not a sensor of {kind_name} machines; "
                f"expected one of {', '.join(repr(s) for s in machine_type.sensors)}"
            )
        if kind not in SENSOR_FAULTS:
            raise ValueError(
                f"{name}: kind={kind!r}: expected one of {', '.join(map(repr, SENSOR_FAULTS))}"
            )
        if kind not in config.sensor_faults:
            raise ValueError(f"{name}: kind={kind!r}: not configured in [sensor_faults]")
        return FleetCommand(
            name, machine, number, sensor=sensor, kind=kind, duration_s=_hours(args, "duration_h")
        )
    return FleetCommand(name, machine, number)


def _hours(args: dict[str, Any], key: str) -> float | None:
    if key not in args:
        return None
    value = args[key]
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0 < value <= 1e6:
        raise ValueError(f"{key}={value!r}: expected hours > 0")
    return float(value) * 3600.0
