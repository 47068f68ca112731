"""The API's view of the running platform: the log, the read model over it, the models.

The API process shares no memory with the workers and twins. It tails their output topics into
a :class:`~wearwatch.store.live.LiveView` (bounded, in memory: a "latest" lookup is a dict
lookup whatever the history), loads the registry's current models into :class:`ServingModels`
for the pure scoring endpoints, and writes every command — to a twin, to the alarm stage — to
the log, where the twins and pipelines pick it up. Nothing here bypasses the log, so a replay
of the log replays what operators did.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from wearwatch.bus import Log, open_log
from wearwatch.events import AlarmCommand, TwinCommand
from wearwatch.learn.rul.data import SUBSETS
from wearwatch.pipelines.fleet.alarm_commands import latest_event_time, send_alarm_command
from wearwatch.runtime.status import ComponentStatus, read_statuses
from wearwatch.store.live import LiveView
from wearwatch.store.registry import ModelRegistry, RegistryError, UnknownFamily
from wearwatch.twin.fleet.config import FleetConfig, load_fleet_config
from wearwatch.twin.fleet.publish import send_fleet_command
from wearwatch.twin.fleet.simulation import FleetTwin
from wearwatch.twin.mill.publish import send_command

#: URL command → the mill twin's command name.
MILL_COMMANDS: dict[str, str] = {
    "shock": "shock",
    "gradual": "gradual",
    "maintenance": "maintenance",
    "set-wear": "set_wear",
}
#: URL command → the fleet twin's command name.
FLEET_COMMANDS: dict[str, str] = {
    "inject-fault": "inject_fault",
    "inject-sensor-fault": "inject_sensor_fault",
    "repair": "repair",
}
#: The alarm actions an operator may send, by alarm.
ALARM_ACTIONS = ("acknowledge", "clear", "silence", "unsilence")
#: The model families the API serves, and the command that trains each.
TRAINED_BY: dict[str, str] = {
    "anomaly": "wearwatch train anomaly",
    "risk": "wearwatch train risk",
    **{f"rul-{s}": f"wearwatch train cmapss --subset {s}" for s in SUBSETS},
}


@dataclass(frozen=True)
class PlatformConfig:
    """Where the platform's parts are; built from the settings by ``wearwatch serve``."""

    bus_url: str
    data_dir: Path
    registry_dir: Path
    token: str
    #: Where components write their status files.
    status_dir: Path
    #: The running fleet twin's TOML (None: the shipped default).
    fleet_config: Path | None = None
    #: The running fleet's size (None: the machines the view saw).
    machines: int | None = None


class ModelUnavailable(LookupError):
    """A family the endpoint needs has no current version; the message names the command
    that trains it."""

    def __init__(self, family: str, detail: str = "") -> None:
        self.family = family
        command = TRAINED_BY.get(family, f"wearwatch train {family.split('-')[0]}")
        why = f" ({detail})" if detail else ""
        super().__init__(f"no {family} model is served{why}; train it: {command}")


class ServingModels:
    """The current anomaly, risk and RUL models of the registry, as the API serves them.

    Loaded once at start and again on :meth:`reload` (``POST /models/{family}/reload``), never
    per request. A family without a current version serves nothing (the endpoint answers 503
    naming the command that trains it); one that fails to load keeps its error for ``/health``.
    """

    def __init__(self, registry: ModelRegistry, families: tuple[str, ...] = tuple(TRAINED_BY)):
        self.registry = registry
        self.families = families
        self._lock = threading.Lock()
        self._models: dict[str, Any] = {}
        self._versions: dict[str, str] = {}
        self._errors: dict[str, str] = {}

    def reload(self, family: str | None = None) -> dict[str, str]:
        """(Re)load ``family`` (None: every served family); returns the served versions."""
        for name in (family,) if family is not None else self.families:
            try:
                model, mv = self.registry.load_with_meta(name)
            except UnknownFamily:
                model, tag, error = None, "", ""
            except RegistryError as exc:
                model, tag, error = None, "", str(exc)
            else:
                tag, error = f"{name}@{mv.tag}", ""
                model.model_version = tag  # as the pipelines tag what they serve
            with self._lock:
                self._models[name] = model
                self._versions[name] = tag
                self._errors[name] = error
        return self.versions()

    def get(self, family: str) -> Any:
        """The served model of ``family``; :class:`ModelUnavailable` if there is none."""
        model = self._models.get(family)
        if model is None:
            raise ModelUnavailable(family, self._errors.get(family, ""))
        return model

    def versions(self) -> dict[str, str]:
        """Family → served version (``anomaly@v0002``; ``""``: none)."""
        with self._lock:
            return {f: self._versions.get(f, "") for f in self.families}

    def errors(self) -> dict[str, str]:
        with self._lock:
            return {f: e for f, e in self._errors.items() if e}


class Platform:
    """The log, the live view, the registry and the served models, for one API process."""

    def __init__(self, config: PlatformConfig, *, log: Log | None = None) -> None:
        self.config = config
        self.log: Log = log if log is not None else open_log(config.bus_url)
        self._owns_log = log is None
        self.view = LiveView(self.log)
        self.registry = ModelRegistry(config.registry_dir)
        self.models = ServingModels(self.registry)
        self.models.reload()
        self.fleet: FleetConfig = load_fleet_config(config.fleet_config)
        #: The running fleet's machines, named as its twin names them (seed-independent).
        self._configured_ids: frozenset[str] = frozenset(
            FleetTwin(self.fleet, config.machines, seed=0).machine_ids
            if config.machines is not None
            else ()
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Catch the view up with the log, then keep it polling in a daemon thread."""
        if self._thread is not None:
            return
        self.view.catch_up()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.view.run, args=(self._stop,), name="live-view", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._owns_log:
            self.log.close()

    # ----------------------------------------------------------------- fleet
    def machine_ids(self) -> list[str]:
        """The running fleet's machines (its configured size) and every machine the view saw."""
        seen = self.view.machine_ids()
        if not self._configured_ids:
            return seen
        return sorted(set(self._configured_ids).union(seen))

    def has_machine(self, machine_id: str) -> bool:
        return machine_id in self._configured_ids or machine_id in self.view.machine_ids()

    def require_machine(self, machine_id: str) -> None:
        """LookupError naming ``machine_id`` unless the platform knows it."""
        if not self.has_machine(machine_id):
            raise LookupError(f"unknown machine {machine_id!r}")

    # ----------------------------------------------------------------- commands
    def mill_command(self, command: str, args: dict[str, Any]) -> TwinCommand:
        """Put a mill twin command on ``mill.control``; ValueError names the bad argument."""
        if command not in MILL_COMMANDS:
            raise ValueError(f"command={command!r}: expected one of {', '.join(MILL_COMMANDS)}")
        return send_command(self.log, MILL_COMMANDS[command], dict(args))

    def fleet_command(self, machine_id: str, command: str, args: dict[str, Any]) -> TwinCommand:
        """Put a fleet twin command for ``machine_id`` on ``fleet.control``.

        LookupError: a machine the platform does not know; ValueError: a bad argument."""
        if command not in FLEET_COMMANDS:
            raise ValueError(f"command={command!r}: expected one of {', '.join(FLEET_COMMANDS)}")
        self.require_machine(machine_id)
        return send_fleet_command(
            self.log, FLEET_COMMANDS[command], {**args, "machine": machine_id}, self.fleet
        )

    def alarm_command(
        self,
        alarm_id: str,
        action: str,
        by: str = "",
        until: datetime | None = None,
        note: str = "",
    ) -> AlarmCommand:
        """Send an operator's action on an alarm (``silence``/``unsilence``: on its machine).

        The command is stamped with the machine's event time (:meth:`event_time`), so it never
        moves the alarm stage's watermark past the data. LookupError: an unknown alarm."""
        alarm = self.view.alarm(alarm_id)
        if alarm is None:
            raise LookupError(f"unknown alarm {alarm_id!r}")
        if action not in ALARM_ACTIONS:
            raise ValueError(f"action={action!r}: expected one of {', '.join(ALARM_ACTIONS)}")
        if action in ("acknowledge", "clear") and not by:
            raise ValueError(f"by: who does {action!r} is required")
        per_alarm = action in ("acknowledge", "clear")
        return self._send_alarm(
            alarm.machine_id,
            action,
            alarm_id=alarm_id if per_alarm else "",
            by=by,
            until=until,
            note=note,
            fallback_ts=alarm.ts,
        )

    def silence(
        self,
        machine_id: str,
        *,
        until: datetime | None = None,
        duration_s: float | None = None,
        by: str = "",
        note: str = "",
    ) -> AlarmCommand:
        """Silence ``machine_id``'s alarms until ``until`` (event time) or for ``duration_s``
        of event time from the latest seen for it. LookupError: an unknown machine."""
        self.require_machine(machine_id)
        if (until is None) == (duration_s is None):
            raise ValueError("until, duration_s: give exactly one")
        if duration_s is not None:
            now = self.event_time(machine_id)
            if now is None:
                raise LookupError(
                    f"machine {machine_id!r} has reported nothing yet: give until, not duration_s"
                )
            until = now + timedelta(seconds=duration_s)
        return self._send_alarm(machine_id, "silence", by=by, until=until, note=note)

    def unsilence(self, machine_id: str, *, by: str = "", note: str = "") -> AlarmCommand:
        self.require_machine(machine_id)
        return self._send_alarm(machine_id, "unsilence", by=by, note=note)

    def event_time(self, machine_id: str) -> datetime | None:
        """The time an operator's command for ``machine_id`` is stamped with: the latest event
        time of the machine on the alarm stage's input (what ``wearwatch alarms`` stamps too),
        else — no alarm input yet — the latest the view saw for it."""
        return latest_event_time(self.log, machine_id) or self.view.event_time(machine_id)

    def _send_alarm(
        self,
        machine_id: str,
        action: str,
        *,
        alarm_id: str = "",
        by: str = "",
        until: datetime | None = None,
        note: str = "",
        fallback_ts: datetime | None = None,
    ) -> AlarmCommand:
        ts = self.event_time(machine_id) or fallback_ts
        if ts is None:
            raise LookupError(f"machine {machine_id!r} has reported nothing yet")
        command = AlarmCommand(
            ts=ts,
            machine_id=machine_id,
            action=action,  # type: ignore[arg-type]
            alarm_id=alarm_id,
            by=by,
            until=until,
            note=note,
        )
        send_alarm_command(self.log, command)
        return command

    # ----------------------------------------------------------------- plumbing
    def statuses(self) -> list[ComponentStatus]:
        """What every running component last reported (its status file)."""
        return read_statuses(self.config.status_dir)
