"""``wearwatch ingest``: plant protocols (MQTT, OPC UA) onto the log through the gateway.

Each protocol is one command in its own module (``cli/ingest_mqtt.py``, ``cli/ingest_opcua.py``)
registered on this sub-app; all of them hand messages to
:class:`wearwatch.ingest.gateway.IngestGateway` (validation, batching, write-then-acknowledge,
deduplication), whose options are the shared flags below.
"""

from __future__ import annotations

import typer

from wearwatch.cli.errors import finite
from wearwatch.ingest.gateway import GatewayOptions

app = typer.Typer(
    help="Ingest plant data (MQTT, OPC UA) into the log: batched, acknowledged after the "
    "write, deduplicated, bad payloads dead-lettered.",
    no_args_is_help=True,
)

#: The gateway flags every protocol command takes (Typer options; defaults from GatewayOptions).
_DEFAULTS = GatewayOptions()
MAX_BATCH = typer.Option(
    _DEFAULTS.max_batch, min=1, help="messages per write (like Kafka's batch.size)"
)
LINGER_S = typer.Option(
    _DEFAULTS.linger_s,
    callback=finite(0.0, 3600.0),  # not min/max: they let nan through
    help="longest a message waits for its batch, 0 to 3600 seconds (like Kafka's linger.ms)",
)


def gateway_options(max_batch: int, linger_s: float) -> GatewayOptions:
    """The gateway's options from the shared flags."""
    return GatewayOptions(max_batch=max_batch, linger_s=linger_s)


from wearwatch.cli import ingest_mqtt, ingest_opcua  # noqa: E402, F401  (register the commands)
