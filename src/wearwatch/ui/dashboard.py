"""The operators' dashboard (NiceGUI), mounted on the API's FastAPI app: one process serves both.

Pages: ``/`` fleet overview, ``/machine/{id}`` machine detail, ``/mill`` the mill per product
line, ``/controls`` twin controls. The pages read ``platform.view`` — the API process's
in-memory read model of the log — directly (same process, no HTTP) and send commands through
``platform.mill_command`` / ``fleet_command`` / ``alarm_command``, which write them to the log
like the API does. Each open page has one timer (1 s) that swaps chart data and table rows in
place, so charts follow the stream without a reload.

NiceGUI keeps its pages in one process-wide router: :func:`mount` is called once per process
(``create_app`` does it unless ``dashboard=False``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from nicegui import ui

from wearwatch.twin.fleet.config import FleetConfig, FleetConfigError, load_fleet_config
from wearwatch.ui.access import TokenGate
from wearwatch.ui.controls import controls_page
from wearwatch.ui.fleet import fleet_page
from wearwatch.ui.frame import Board
from wearwatch.ui.history import HealthHistory
from wearwatch.ui.machine import machine_page
from wearwatch.ui.mill import mill_page


def _fleet_config(platform: Any) -> FleetConfig | None:
    if isinstance(getattr(platform, "fleet", None), FleetConfig):
        return platform.fleet  # the platform already read it
    try:
        return load_fleet_config(getattr(platform.config, "fleet_config", None))
    except FleetConfigError:
        return None  # the pages say the classes are unknown rather than refusing to start


def mount(app: FastAPI, platform: Any) -> None:
    """Mount the dashboard on ``app`` at ``/`` (routes already on ``app`` keep precedence).

    ``platform`` is a :class:`~wearwatch.api.platform.Platform` (``view``, ``config.token``,
    ``config.fleet_config``, ``*_command``).
    """
    health = HealthHistory()
    health.attach(platform.view)
    gate = TokenGate(platform.config.token)
    board = Board(platform, gate, health, _fleet_config(platform))

    @ui.page("/")
    def _fleet(token: str | None = None) -> None:
        fleet_page(board, token)

    @ui.page("/machine/{machine_id}")
    def _machine(machine_id: str, token: str | None = None) -> None:
        machine_page(board, machine_id, token)

    @ui.page("/mill")
    def _mill(token: str | None = None) -> None:
        mill_page(board, token)

    @ui.page("/controls")
    def _controls(token: str | None = None) -> None:
        controls_page(board, token)

    ui.run_with(
        app,
        title="wearwatch",
        storage_secret=gate.storage_secret(),
        show_welcome_message=False,
        reconnect_timeout=10.0,
    )
