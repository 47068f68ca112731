"""What every dashboard page shares: the header (navigation, token state) and its context.

:class:`Board` is what a page needs from the running platform: the platform itself (its live
view and its ``*_command`` methods), the token gate and the health recorder. :meth:`Board.
frame` draws the header, takes a ``?token=`` from the URL (then drops it from the address bar)
and tells the page whether its controls are enabled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nicegui import app, run, ui

from wearwatch.twin.fleet.config import FleetConfig
from wearwatch.ui.access import LOCKED, TokenGate
from wearwatch.ui.history import HealthHistory

NAV = (("Fleet", "/"), ("Mill", "/mill"), ("Twin controls", "/controls"))


@dataclass
class Board:
    platform: Any
    gate: TokenGate
    health: HealthHistory
    #: The running fleet twin's configuration (machine classes, sensors, modes); None: unknown.
    fleet: FleetConfig | None = None

    @property
    def view(self) -> Any:
        return self.platform.view

    def allowed(self) -> bool:
        return self.gate.allowed(app.storage.user)

    def frame(self, title: str, token: str | None) -> bool:
        """Draw the header; returns whether this user may use controls."""
        if token:
            if self.gate.accept(app.storage.user, token):
                ui.notify("token accepted: controls enabled", type="positive")
            else:
                ui.notify("token rejected", type="negative")
            # drop the token from the address bar (and the history) as the page loads
            ui.add_body_html(
                "<script>{const u=new URL(location.href);u.searchParams.delete('token');"
                "history.replaceState(null,'',u.pathname+u.search+u.hash)}</script>"
            )
        allowed = self.allowed()
        ui.page_title(f"{title} · wearwatch")
        with ui.header().classes("items-center bg-blue-grey-9 q-py-xs"):
            ui.label("wearwatch").classes("text-h6 q-mr-md")
            for text, target in NAV:
                ui.link(text, target).classes("text-white q-mr-md")
            ui.space()
            if allowed:
                ui.badge("controls enabled", color="green").classes("ww-token-state")
                ui.button("lock", on_click=self._lock).props("flat dense color=white")
            else:
                ui.badge("read-only", color="grey").classes("ww-token-state").tooltip(LOCKED)
                field = ui.input(placeholder="API token", password=True).props(
                    "dense dark standout"
                )
                ui.button("unlock", on_click=lambda: self._unlock(field.value)).props(
                    "flat dense color=white"
                )
        ui.label(title).classes("text-h5 q-mt-sm")
        return allowed

    def _unlock(self, token: str) -> None:
        if self.gate.accept(app.storage.user, token or ""):
            ui.navigate.reload()
        else:
            ui.notify("token rejected", type="negative")

    def _lock(self) -> None:
        self.gate.forget(app.storage.user)
        ui.navigate.reload()

    async def command(self, what: str, send: Callable[[], Any]) -> Any:
        """Run a control's command off the event loop; refuse without the token and report a
        refusal (a ValueError/LookupError names the argument) as a notification."""
        if not self.allowed():
            ui.notify(LOCKED, type="warning")
            return None
        try:
            result = await run.io_bound(send)
        except (ValueError, LookupError) as exc:
            ui.notify(f"{what}: {exc}", type="negative", multi_line=True)
            return None
        ui.notify(f"sent: {what}", type="positive")
        return result


def refresh_every(seconds: float, refresh: Callable[[], Awaitable[None] | None]) -> ui.timer:
    """The page's one timer (≤ 2 s, so charts follow the stream without a reload)."""
    return ui.timer(seconds, refresh)
