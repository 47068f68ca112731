"""``wearwatch ingest mqtt``: an MQTT broker's readings onto the log (registered by
``cli/ingest.py``; the mechanism is :mod:`wearwatch.ingest.mqtt`)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import typer
from rich.console import Console

from wearwatch.cli.errors import fail, finite
from wearwatch.cli.ingest import LINGER_S, MAX_BATCH, app, gateway_options

_HELP = "\n\n".join(
    " ".join(paragraph.split())
    for paragraph in """
Subscribe to an MQTT broker and write the readings to the log, exactly once.

The mapping file (TOML, --map) turns each message into a reading: per topic filter, which
topic levels and payload fields (JSON, or a plain number) are the machine, sensor, value,
unit and time (see examples/mqtt-map.toml). Messages no route can read become dead letters
with their topic (mqtt:<topic>) and raw bytes.

The session is persistent (MQTT 5, clean start off, --session-expiry-s, a stable
--client-id): the broker queues QoS 1 messages while the ingest is down. A message is
acknowledged only after the batch holding it is in the log, so a crash loses nothing; the
broker's redeliveries are recognised by reading id and written once. The broker may send up
to --max-batch unacknowledged messages (MQTT 5 Receive Maximum). Stop with SIGTERM or Ctrl-C:
the batch is written and acknowledged before disconnecting.
""".strip().split("\n\n")
)


@app.command("mqtt", help=_HELP)
def mqtt_cmd(
    broker: str = typer.Option(
        ..., help="the broker: mqtt://host[:port] (1883) or mqtts://host[:port] (TLS, 8883)"
    ),
    map_file: Path = typer.Option(..., "--map", help="mapping file (TOML): topics → readings"),
    topic: list[str] = typer.Option(
        None,
        help="topic filter to subscribe to, QoS 1 (repeat for several; default: the filters "
        "of the map's routes)",
    ),
    bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)"),
    max_batch: int = MAX_BATCH,
    linger_s: float = LINGER_S,
    client_id: str = typer.Option(
        None,
        help="MQTT client id: the broker keeps the session under it, so keep it across "
        "restarts (default: derived from the broker and topics)",
    ),
    session_expiry_s: int = typer.Option(
        7 * 24 * 3600,
        min=0,
        max=0xFFFFFFFF,
        help="how long the broker keeps the session and queues messages while the ingest "
        "is down, seconds",
    ),
    username: str = typer.Option(None, help="MQTT user name"),
    password_file: Path = typer.Option(
        None, help="file whose first line is the MQTT password (kept off the command line)"
    ),
    tls_ca: Path = typer.Option(
        None, help="CA certificates (PEM) that sign the broker's certificate (mqtts://)"
    ),
    status_every_s: float = typer.Option(
        10.0, callback=finite(0.0, 3600.0), help="seconds between status lines (0: none)"
    ),
) -> None:
    from wearwatch.config import get_settings
    from wearwatch.ingest.gateway import IngestGateway
    from wearwatch.ingest.mqtt import (
        MAX_RECEIVE,
        Broker,
        MqttSubscriber,
        SubscriberOptions,
        default_client_id,
    )
    from wearwatch.ingest.mqtt_map import TopicMap
    from wearwatch.wiring import open_configured_log

    address = Broker.parse(broker)
    topic_map = TopicMap.load(map_file)
    filters = tuple(topic) if topic else topic_map.filters
    password = None
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0]:
            fail(f"--password-file {password_file}: the first line is empty")
        password = lines[0]
    if tls_ca is not None and not tls_ca.is_file():
        fail(f"--tls-ca {tls_ca}: no such file")
    options = SubscriberOptions(
        broker=address,
        filters=filters,
        client_id=client_id or default_client_id(address, filters),
        receive_maximum=min(max_batch, MAX_RECEIVE),
        session_expiry_s=session_expiry_s,
        username=username,
        password=password,
        tls_ca=tls_ca,
        status_every_s=status_every_s,
    )
    gateway_opts = gateway_options(max_batch, linger_s)
    log = open_configured_log(get_settings(), bus)
    console = Console(stderr=True, soft_wrap=True)

    def status(line: str) -> None:
        console.print(f"{time.strftime('%H:%M:%S')} {line}", markup=False, highlight=False)

    try:
        gateway = IngestGateway(log, gateway_opts)
        subscriber = MqttSubscriber(gateway, topic_map, options, status=status)
        status(
            f"client id {options.client_id}; {gateway.recovered:,} ids recovered from the log; "
            f"{len(topic_map.routes)} routes from {map_file}"
        )
        asyncio.run(_until_signalled(subscriber))
        status("stopped: " + subscriber.status_line())
    finally:
        log.close()


async def _until_signalled(subscriber: object) -> None:
    """Run the subscriber until SIGTERM or SIGINT (Ctrl-C) asks it to stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await subscriber.run(stop)  # type: ignore[attr-defined]
