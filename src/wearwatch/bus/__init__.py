"""The log: topics, partitions, offsets, consumer groups. Pick a backend by URL."""

from __future__ import annotations

from wearwatch.bus.base import (
    DEFAULT_PARTITIONS,
    DEFAULT_RETENTION_S,
    Consumer,
    Log,
    OutRecord,
    Record,
    partition_for,
    read_all,
)


def open_log(
    url: str,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    retention_s: float = DEFAULT_RETENTION_S,
    client_config: dict[str, str] | None = None,
) -> Log:
    """``sqlite:///path/to.db`` (embedded) or ``kafka://host:port``.

    ``partitions`` and ``retention_s`` apply to topics the log creates; the app passes its
    configured values (see :func:`wearwatch.wiring.open_configured_log`). ``client_config``:
    librdkafka properties every Kafka client gets as given (TLS, SASL); the embedded log has
    no clients and ignores it.

    >>> open_log("mqtt://plant")
    Traceback (most recent call last):
    ...
    ValueError: bus='mqtt://plant': expected sqlite:///path/to.db or kafka://host:port
    """
    if url.startswith("sqlite:///"):
        from wearwatch.bus.sqlite import SqliteLog

        return SqliteLog(
            url.removeprefix("sqlite:///"), default_partitions=partitions, retention_s=retention_s
        )
    if url.startswith("kafka://"):
        from wearwatch.bus.kafka import KafkaLog

        return KafkaLog(
            url,
            default_partitions=partitions,
            retention_s=retention_s,
            client_config=client_config,
        )
    raise ValueError(f"bus={url!r}: expected sqlite:///path/to.db or kafka://host:port")


__all__ = ["Consumer", "Log", "OutRecord", "Record", "open_log", "partition_for", "read_all"]
