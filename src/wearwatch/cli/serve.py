"""``wearwatch serve``: the API (and the dashboard) in one process, on 127.0.0.1:8000.

Settings → :class:`~wearwatch.api.platform.PlatformConfig` → Platform → app → uvicorn. The
token for state-changing endpoints is ``settings.api_token``, else ``<data_dir>/api-token``
(created 0600 on first use); it is never printed by this command nor logged: the access log
redacts it (the dashboard takes it as ``/?token=…``). SIGTERM or Ctrl-C stops the server
gracefully (open event streams get :data:`GRACE_S` seconds) and closes the platform.
"""

from __future__ import annotations

import contextlib
import gc
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

#: Seconds open connections (event streams) get to finish on shutdown.
GRACE_S = 2.0


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM or SIGINT ends :meth:`run` normally once the
    server has shut down (uvicorn re-raises the signal then, which would kill the process
    before the platform closes: its view thread and the log)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: Annotated[
            str | None, typer.Option("--host", help="bind address (default: api_host setting)")
        ] = None,
        port: Annotated[
            int | None,
            typer.Option("--port", min=1, max=65535, help="port (default: api_port setting)"),
        ] = None,
        headless: Annotated[
            bool, typer.Option("--headless", help="the API only, no dashboard")
        ] = False,
        machines: Annotated[
            int | None,
            typer.Option("--machines", min=1, help="the running fleet's size (default: seen)"),
        ] = None,
        fleet_config: Annotated[
            Path | None,
            typer.Option("--fleet-config", help="the running fleet twin's TOML (default: shipped)"),
        ] = None,
        status_dir: Annotated[
            Path | None,
            typer.Option(
                "--status-dir", help="components' status files (default: DATA/run/status)"
            ),
        ] = None,
        access_log: Annotated[
            bool,
            typer.Option(
                "--access-log/--no-access-log",
                help="one log line per request (off by default: /metrics has every route's "
                "request latency, and the line costs about a third of the hot endpoints' "
                "capacity — see wearwatch bench api)",
            ),
        ] = False,
    ) -> None:
        """Serve the API (and the dashboard) over the configured log and model registry."""
        from wearwatch.api.app import create_app
        from wearwatch.api.auth import load_or_create_token, redact_logs
        from wearwatch.api.platform import Platform, PlatformConfig
        from wearwatch.config import get_settings
        from wearwatch.wiring import open_configured_log

        settings = get_settings()
        token = load_or_create_token(settings.data_dir, settings.api_token)
        config = PlatformConfig(
            bus_url=settings.bus_url,
            data_dir=settings.data_dir,
            registry_dir=settings.registry_dir,
            token=token,
            status_dir=status_dir
            if status_dir is not None
            else settings.data_dir / "run" / "status",
            fleet_config=fleet_config,
            machines=machines,
        )
        log = open_configured_log(settings)
        platform = Platform(config, log=log)
        try:
            platform.start()
            server_config = uvicorn.Config(
                create_app(platform, dashboard=not headless),
                host=host or settings.api_host,
                port=port or settings.api_port,
                timeout_graceful_shutdown=GRACE_S,
                log_level="info",
                access_log=access_log,
            )
            redact_logs(token)  # after uvicorn configured its loggers
            # What start-up built (libraries, models, the caught-up view) lives as long as the
            # process: out of the cyclic collector's reach, whose full passes over it would
            # stall a request now and then (the tail of bench api's latency), as the workers do.
            gc.collect()
            gc.freeze()
            _Server(server_config).run()
        finally:
            platform.close()
            log.close()
