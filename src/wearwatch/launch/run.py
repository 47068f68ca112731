"""A platform run: its parameters (kept in ``<data_dir>/run/up.json``), its directories, and the
processes it consists of.

A run's *identity* (seed, fleet size, the fleet's tick and windows) is fixed when it starts: the
twins resume from journals that only fit the same identity, and the workers' checkpointed state
was built on the same windows. A restart reuses the saved parameters; a flag that contradicts
the identity is refused with what to do. The *pace* (speeds, port, headless) may change between
restarts.

>>> saved = RunParams(machines=20, seed=7)
>>> merge_params(saved, {"speed": 600.0}).speed
600.0
>>> try:
...     merge_params(saved, {"machines": 50})
... except ValueError as exc:
...     print(str(exc).split(";")[0])
--machines 50: this run was started with machines=20 (its twins resume from there)
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from wearwatch.launch.supervisor import ChildSpec

#: Fields that make a run what it is: changing one needs a new run.
IDENTITY = ("machines", "seed", "tick_s", "windows_s")
#: Virtual duration handed to the twins: "until stopped" (they stop on SIGTERM).
FOREVER = "87600h"


@dataclass(frozen=True)
class RunParams:
    """What ``wearwatch up`` runs. Defaults: the demo's (see ``wearwatch up --help``)."""

    #: Fleet twin: virtual seconds per wall second (3600: a plant hour per second).
    speed: float = 3600.0
    #: Mill twin: virtual seconds per wall second (about a pass a second at 30).
    mill_speed: float = 30.0
    machines: int = 20
    seed: int = 7
    #: The fleet's sampling: one reading per sensor per tick; windows on the wear time scale.
    tick_s: float = 30.0
    windows_s: tuple[float, ...] = (300.0, 1800.0)
    port: int = 8000
    host: str = "127.0.0.1"
    headless: bool = False
    #: Mill: virtual time published as fast as possible before pacing (history to learn from).
    mill_head_s: float = 7200.0

    @property
    def grace_s(self) -> float:
        """Window grace: a tenth of the shortest window."""
        return min(self.windows_s) / 10.0

    @property
    def watermark_delay_s(self) -> float:
        """The fleet worker's out-of-orderness bound: two ticks (readings jitter ± a tenth)."""
        return 2.0 * self.tick_s


def load_params(path: Path) -> RunParams | None:
    """The saved parameters of a run (None: no run yet)."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    known = {f.name for f in fields(RunParams)}
    values = {k: v for k, v in data.items() if k in known}
    if "windows_s" in values:
        values["windows_s"] = tuple(float(w) for w in values["windows_s"])
    return RunParams(**values)


def save_params(path: Path, params: RunParams) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(params), indent=2) + "\n")
    os.replace(tmp, path)


def merge_params(saved: RunParams | None, flags: dict[str, Any]) -> RunParams:
    """The saved parameters with the given flags (None values: not given) applied; a flag that
    changes the saved run's identity is a ValueError naming it."""
    given = {k: v for k, v in flags.items() if v is not None}
    if saved is None:
        return replace(RunParams(), **given)
    for key in IDENTITY:
        if key in given and given[key] != getattr(saved, key):
            raise ValueError(
                f"--{key.replace('_', '-')} {given[key]}: this run was started with "
                f"{key}={getattr(saved, key)} (its twins resume from there); drop the flag to "
                "resume it, or add --fresh to start a new run"
            )
    return replace(saved, **given)


@dataclass(frozen=True)
class RunPaths:
    """Where a run keeps its state, under the data directory."""

    data_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def params(self) -> Path:
        return self.run_dir / "up.json"

    @property
    def status_dir(self) -> Path:
        return self.run_dir / "status"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def twin_state(self, twin: str) -> Path:
        return self.run_dir / f"twin-{twin}"


def wearwatch_argv(*args: str) -> list[str]:
    """A ``wearwatch`` command line run with this interpreter (the venv's, wherever it is)."""
    return [sys.executable, "-m", "wearwatch", *args]


def rul_training(seed: int) -> ChildSpec:
    """The RUL model's training on C-MAPSS FD001, as a one-shot background job (low priority:
    the live components come first)."""
    argv = wearwatch_argv("train", "cmapss", "--subset", "FD001", "--seed", str(seed), "--json")
    return ChildSpec("train-rul", argv, restart=False, nice=10)


def platform_children(
    params: RunParams,
    paths: RunPaths,
    registry_dir: Path,
    *,
    serve: bool = True,
) -> list[ChildSpec]:
    """The processes of a run: two twins, three pipeline workers and the API (with the
    dashboard unless headless), each writing its status file into the run's status dir.

    Two cores: the twins are light (paced), the fleet worker does the windows, scoring and
    risk of every machine, the mill worker joins, learns and routes passes, the alarm worker
    is small, and the API tails the outputs. One process each, so a crash takes one down and
    the supervisor restarts just that one."""
    status = ["--status-dir", str(paths.status_dir)]
    windows = json.dumps(list(params.windows_s))
    # The twins run ahead of the wall clock (a plant hour per second): events "from the
    # future" are the point, not a fault.
    ahead = {"WEARWATCH_MAX_FUTURE_S": str(10 * 365 * 86400)}
    children = [
        ChildSpec(
            "twin-mill",
            wearwatch_argv(
                "twin", "mill",
                "--scenario", "none",
                "--seed", str(params.seed),
                "--speed", f"{params.mill_speed:g}",
                "--duration", FOREVER,
                "--head", f"{params.mill_head_s:g}s",
                "--state-dir", str(paths.twin_state("mill")),
                *status, "--status-name", "twin-mill",
            ),
        ),
        ChildSpec(
            "twin-fleet",
            wearwatch_argv(
                "twin", "fleet",
                "--machines", str(params.machines),
                "--tick", f"{params.tick_s:g}s",
                "--seed", str(params.seed),
                "--speed", f"{params.speed:g}",
                "--duration", FOREVER,
                "--state-dir", str(paths.twin_state("fleet")),
                *status, "--status-name", "twin-fleet",
            ),
        ),
        ChildSpec(
            "worker-mill",
            wearwatch_argv("worker", "mill", "--quiet", *status, "--status-name", "worker-mill"),
        ),
        ChildSpec(
            "worker-fleet",
            wearwatch_argv(
                "worker", "fleet", "--quiet",
                "--param", "alarm_input=true",
                "--param", f"registry={registry_dir}",
                "--param", f"windows_s={windows}",
                "--param", f"grace_s={params.grace_s:g}",
                *status, "--status-name", "worker-fleet",
            ),
            env={**ahead, "WEARWATCH_WATERMARK_DELAY_S": f"{params.watermark_delay_s:g}"},
        ),
        ChildSpec(
            "worker-fleet-alarms",
            wearwatch_argv(
                "worker", "fleet-alarms", "--quiet",
                "--param", f"settle_s={params.grace_s:g}",
                *status, "--status-name", "worker-fleet-alarms",
            ),
            env=ahead,
        ),
    ]  # fmt: skip
    if serve:
        api = [
            "serve",
            "--host", params.host,
            "--port", str(params.port),
            "--machines", str(params.machines),
            *status,
        ]  # fmt: skip
        if params.headless:
            api.append("--headless")
        children.append(ChildSpec("api", wearwatch_argv(*api), env=ahead))
    return children
