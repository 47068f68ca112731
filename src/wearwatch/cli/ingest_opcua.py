"""``wearwatch ingest opcua``: an OPC UA server's variables onto the log (see
:mod:`wearwatch.ingest.opcua` for what is guaranteed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wearwatch.cli.errors import fail, finite
from wearwatch.cli.ingest import LINGER_S, MAX_BATCH, app, gateway_options

_SECURITY_HELP = "None, Basic256Sha256,Sign or Basic256Sha256,SignAndEncrypt (needs --cert/--key)"


@app.command("opcua")
def opcua_cmd(
    endpoint: Annotated[
        str, typer.Option("--endpoint", help="the server, e.g. opc.tcp://host:4840")
    ],
    nodes: Annotated[
        Path,
        typer.Option(
            "--nodes", help="nodes file (TOML): NodeId → machine_id, sensor, unit, scale, offset"
        ),
    ],
    bus: Annotated[
        str | None,
        typer.Option("--bus", help="log URL (default: the bus setting, else <data_dir>/log.db)"),
    ] = None,
    max_batch: int = MAX_BATCH,
    linger_s: float = LINGER_S,
    interval_ms: Annotated[
        float,
        typer.Option(
            "--interval-ms",
            callback=finite(0.0, 3_600_000.0),
            help="publishing interval of the subscription, ms",
        ),
    ] = 100.0,
    queue_size: Annotated[
        int,
        typer.Option(
            "--queue-size",
            min=1,
            max=1_000_000,
            help="values the server queues per node between publishes (oldest dropped)",
        ),
    ] = 1000,
    backoff_max_s: Annotated[
        float,
        typer.Option(
            "--backoff-max-s",
            callback=finite(0.5, 3600.0),
            help="longest wait between reconnect attempts, s (0.5 s, doubling)",
        ),
    ] = 30.0,
    username: Annotated[str | None, typer.Option("--username", help="user name")] = None,
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="file holding the password")
    ] = None,
    security: Annotated[str, typer.Option("--security", help=_SECURITY_HELP)] = "None",
    cert: Annotated[
        Path | None, typer.Option("--cert", help="client certificate (PEM or DER)")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="client private key (PEM)")] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="after every (re)connect, read what each node recorded since its latest "
            "reading in the log (OPC UA HistoryRead; the server must historize the nodes)",
        ),
    ] = False,
) -> None:
    """Subscribe to the mapped variables of an OPC UA server and write every data change as
    a reading (its source timestamp kept), batched, deduplicated by (machine, sensor,
    timestamp); bad status, non-numbers and NaN become dead letters. Reconnects with backoff
    and reads every node's current value after each connect. Changes made while the client is
    down are lost (OPC UA queues are not durable) unless --history reads them back. Stops
    cleanly on SIGTERM/Ctrl-C and prints its counters as one JSON line."""
    import asyncio

    from wearwatch.config import get_settings
    from wearwatch.ingest.gateway import IngestGateway
    from wearwatch.ingest.opcua import OpcuaIngest, OpcuaOptions
    from wearwatch.ingest.opcua_nodes import load_nodes
    from wearwatch.wiring import open_configured_log

    password = None
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--password-file {password_file}: cannot read ({exc})")
    for flag, path in (("--cert", cert), ("--key", key), ("--nodes", nodes)):
        if path is not None and not path.is_file():
            fail(f"{flag} {path}: no such file")
    options = OpcuaOptions(
        endpoint=endpoint,
        interval_ms=interval_ms,
        queue_size=queue_size,
        backoff_max_s=backoff_max_s,
        username=username,
        password=password,
        security=security,
        cert=cert,
        key=key,
        history=history,
    )
    mapping = load_nodes(nodes)
    gw_options = gateway_options(max_batch, linger_s)
    log = open_configured_log(get_settings(), bus)
    try:
        gateway = IngestGateway(log, gw_options)

        def subscribed(count: int) -> None:
            typer.echo(f"opcua: subscribed {count} nodes at {endpoint}", err=True)

        client = OpcuaIngest(gateway, mapping, options, on_subscribed=subscribed)
        asyncio.run(client.run())
        typer.echo(json.dumps({"gateway": gateway.counts, "opcua": client.counts}))
    finally:
        log.close()
