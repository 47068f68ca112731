"""The log: topics, partitions, offsets, consumer groups. Pick a backend by URL."""

from __future__ import annotations

from wearwatch.bus.base import Consumer, Log, OutRecord, Record, partition_for, read_all


def open_log(url: str | None = None) -> Log:
    """``sqlite:///path/to.db`` (embedded, default) or ``kafka://host:port``."""
    from wearwatch.config import get_settings

    settings = get_settings()
    url = url or settings.bus_url
    if url.startswith("sqlite:///"):
        from wearwatch.bus.sqlite import SqliteLog

        return SqliteLog(
            url.removeprefix("sqlite:///"),
            default_partitions=settings.partitions,
            retention_s=settings.retention_s,
        )
    if url.startswith("kafka://"):
        from wearwatch.bus.kafka import KafkaLog

        return KafkaLog(url)
    raise ValueError(f"bus={url!r}: expected sqlite:///path/to.db or kafka://host:port")


__all__ = ["Consumer", "Log", "OutRecord", "Record", "open_log", "partition_for", "read_all"]
