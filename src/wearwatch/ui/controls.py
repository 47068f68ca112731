"""Twin controls: cause the next event on purpose.

Mill: a shock to a wear level, gradual wear (a step every period of virtual time), a wear
level set directly, a maintenance reset. Fleet: a degradation mode on a machine with its P-F
interval, a sensor fault, a repair. Every button goes through the platform's ``*_command``
methods, which put a command on the twin's control topic (nothing bypasses the log); without
the token the controls are disabled and say why.
"""

from __future__ import annotations

from typing import Any

from nicegui import ui

from wearwatch.twin.fleet.config import SENSOR_FAULTS
from wearwatch.ui.access import LOCKED
from wearwatch.ui.fleet import machine_order
from wearwatch.ui.frame import Board


class ControlsPanel:
    def __init__(self, board: Board, allowed: bool) -> None:
        self.board = board
        self.platform = board.platform
        #: Every input and button, enabled only with the token.
        self._controls: list[Any] = []
        if not allowed:
            ui.label(f"Controls are disabled — {LOCKED}.").classes("text-warning ww-locked")
        with ui.row().classes("w-full items-start gap-4"):
            with ui.card().classes("ww-mill-controls"):
                self._mill()
            with ui.card().classes("ww-fleet-controls"):
                self._fleet()
        for element in self._controls:
            element.set_enabled(allowed)

    def _mill(self) -> None:
        ui.label("Mill twin").classes("text-h6")
        with ui.row().classes("items-center"):
            wear = ui.number("wear after shock", value=0.9, min=0.0, max=1.5, step=0.05)
            wear.classes("w-32 ww-shock-wear")
            shock = ui.button(
                "Shock",
                on_click=lambda: self._send_mill("shock", {"wear": float(wear.value or 0.0)}),
            ).classes("ww-shock")
        with ui.row().classes("items-center"):
            step = ui.number("wear step", value=0.02, min=-1.0, max=1.0, step=0.01).classes("w-24")
            every = ui.number("every (virtual s)", value=60.0, min=0.001, step=10.0).classes("w-32")
            gradual = ui.button(
                "Gradual wear",
                on_click=lambda: self._send_mill(
                    "gradual",
                    {"step": float(step.value or 0.0), "every_s": float(every.value or 0.0)},
                ),
            )
        with ui.row().classes("items-center"):
            level = ui.number("wear", value=0.0, min=0.0, max=1.5, step=0.05).classes("w-24")
            set_wear = ui.button(
                "Set wear",
                on_click=lambda: self._send_mill("set-wear", {"wear": float(level.value or 0.0)}),
            )
        maintenance = ui.button(
            "Maintenance (roll change)", on_click=lambda: self._send_mill("maintenance", {})
        ).classes("ww-maintenance")
        self._controls += [wear, shock, step, every, gradual, level, set_wear, maintenance]

    def _fleet(self) -> None:
        ui.label("Fleet twin").classes("text-h6")
        machines = sorted(self.board.platform.machine_ids(), key=machine_order)
        fleet = self.board.fleet
        self.machine = ui.select(
            machines, value=machines[0] if machines else None, label="machine", with_input=True
        ).classes("w-56 ww-machine")
        with ui.row().classes("items-center"):
            self.mode = ui.select([], label="degradation mode").classes("w-48 ww-mode")
            self.pf_h = ui.number("P-F hours", value=2.0, min=0.01, step=0.5).classes("ww-pf")
            inject = ui.button("Inject fault", on_click=self._inject).classes("ww-inject")
        with ui.row().classes("items-center"):
            self.sensor = ui.select([], label="sensor").classes("w-40")
            self.kind = ui.select(list(SENSOR_FAULTS), value=SENSOR_FAULTS[0], label="fault")
            self.duration_h = ui.number("hours", value=1.0, min=0.01, step=0.5)
            sensor_fault = ui.button("Inject sensor fault", on_click=self._sensor_fault)
        repair = ui.button("Repair", on_click=self._repair).classes("ww-repair")
        if fleet is None:
            ui.label("fleet configuration unknown: modes and sensors are not listed").classes(
                "text-caption"
            )
        self.machine.on_value_change(lambda _: self._machine_changed())
        self._machine_changed()
        self._controls += [
            self.machine,
            self.mode,
            self.pf_h,
            inject,
            self.sensor,
            self.kind,
            self.duration_h,
            sensor_fault,
            repair,
        ]

    def _machine_changed(self) -> None:
        fleet, machine = self.board.fleet, self.machine.value
        spec = (
            fleet.machine_types.get(str(machine).rsplit("-", 1)[0]) if fleet and machine else None
        )
        modes = list(spec.modes) if spec else []
        sensors = list(spec.sensors) if spec else []
        self.mode.set_options(modes, value=modes[0] if modes else None)
        self.sensor.set_options(sensors, value=sensors[0] if sensors else None)

    async def _send_mill(self, command: str, args: dict[str, Any]) -> None:
        await self.board.command(
            f"mill {command} {args}", lambda: self.platform.mill_command(command, args)
        )

    async def _send_fleet(self, command: str, args: dict[str, Any]) -> None:
        machine = str(self.machine.value or "")
        await self.board.command(
            f"{command} {machine} {args}",
            lambda: self.platform.fleet_command(machine, command, args),
        )

    async def _inject(self) -> None:
        args: dict[str, Any] = {"mode": self.mode.value}
        if self.pf_h.value:
            args["pf_h"] = float(self.pf_h.value)
        await self._send_fleet("inject-fault", args)

    async def _sensor_fault(self) -> None:
        args: dict[str, Any] = {"sensor": self.sensor.value, "kind": self.kind.value}
        if self.duration_h.value:
            args["duration_h"] = float(self.duration_h.value)
        await self._send_fleet("inject-sensor-fault", args)

    async def _repair(self) -> None:
        await self._send_fleet("repair", {})


def controls_page(board: Board, token: str | None) -> None:
    allowed = board.frame("Twin controls", token)
    ControlsPanel(board, allowed)
