"""``kafka_config`` (``WEARWATCH_KAFKA_CONFIG``) reaches every librdkafka client as given.

Each case is a property only one kind of client refuses — librdkafka checks it when the client
is created — so a refusal naming it proves the property got to that client: the admin client
(created with the log), the producer (first produce), the group consumer (a worker's) and the
reader (reads without a group). Refusals are one :class:`KafkaLogError` in librdkafka's words,
so the CLI prints one line instead of a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from wearwatch.bus.base import OutRecord
from wearwatch.bus.kafka import KafkaLog, KafkaLogError
from wearwatch.config import Settings
from wearwatch.wiring import open_configured_log

pytestmark = pytest.mark.kafka

#: Valid for an admin client and a producer (a consumer property: ignored with a warning);
#: a consumer refuses it.
SMALL_FETCH = {"fetch.max.bytes": "1000", "message.max.bytes": "100000"}
FETCH_REFUSED = "`fetch.max.bytes` must be >= `message.max.bytes`"


def _log(kafka_url: str, config: dict[str, str]) -> KafkaLog:
    log = open_configured_log(Settings(bus=kafka_url, kafka_config=config))
    assert isinstance(log, KafkaLog)
    return log


def test_the_admin_client_gets_the_properties(kafka_url: str) -> None:
    with pytest.raises(KafkaLogError) as caught:
        _log(kafka_url, {"security.protocol": "bogus"})
    assert str(caught.value) == (
        "Kafka client configuration refused: "
        'Invalid value "bogus" for configuration property "security.protocol"'
    )


def test_the_producer_gets_the_properties_and_they_win_over_the_defaults(kafka_url: str) -> None:
    # The log's producer is idempotent (acks=all); acks=1 from the config overrides the default
    # and librdkafka refuses the combination: the property reached the producer.
    log = _log(kafka_url, {"acks": "1"})
    log.create_topic("client-config-produce", 1)  # the admin client took acks=1 without a word
    with pytest.raises(KafkaLogError, match="`acks` must be set to `all`"):
        log.produce([OutRecord("client-config-produce", b"k", b"v", "", 0)])
    log.close()


def test_the_group_consumer_gets_the_properties(kafka_url: str) -> None:
    log = _log(kafka_url, SMALL_FETCH)
    log.create_topic("client-config-consume", 1)
    log.produce([OutRecord("client-config-consume", b"k", b"v", "", 0)])
    log.flush()  # admin client and producer accepted the consumer properties
    with pytest.raises(KafkaLogError, match=FETCH_REFUSED):
        log.consumer("client-config", ["client-config-consume"])
    with pytest.raises(KafkaLogError, match=FETCH_REFUSED):
        log.read("client-config-consume", 0, 0, 10)  # the reader is a consumer too
    log.close()


def test_the_cli_takes_them_from_the_environment_and_fails_in_one_line(kafka_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARWATCH_")}
    env["WEARWATCH_KAFKA_CONFIG"] = json.dumps({"security.protocol": "bogus"})
    done = subprocess.run(
        [sys.executable, "-m", "wearwatch", "log", "topics", "--bus", kafka_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: Kafka client configuration refused: "
        'Invalid value "bogus" for configuration property "security.protocol"\n'
    )
