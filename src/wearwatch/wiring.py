"""Where settings meet the layers: the configured log and worker options, built from values.

Settings are read where the app is wired — the CLI and the API's startup — and handed down as
plain values, so ``bus``, ``runtime``, ``store`` and ``learn`` never read configuration behind
their callers' backs (``pyproject.toml``'s import contract forbids them to import
:mod:`wearwatch.config`). This module is the one place that knows which setting feeds which
argument; the caller passes the :class:`~wearwatch.config.Settings` it read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wearwatch.bus import Log, open_log
from wearwatch.runtime.worker import WorkerOptions

if TYPE_CHECKING:
    from wearwatch.config import Settings


def open_configured_log(settings: Settings, url: str | None = None) -> Log:
    """The log at ``url`` (default: the ``bus`` setting, else ``<data_dir>/log.db``), creating
    topics with the configured ``partitions`` and ``retention_s``; Kafka clients get the
    ``kafka_config`` properties (TLS, SASL)."""
    return open_log(
        url or settings.bus_url,
        partitions=settings.partitions,
        retention_s=settings.retention_s,
        client_config=settings.kafka_config,
    )


def worker_options(settings: Settings, **overrides: Any) -> WorkerOptions:
    """:class:`WorkerOptions` from the settings; ``overrides`` (command-line flags, a demo's
    ``exit_when_idle``) win over them.

    >>> from wearwatch.config import Settings
    >>> options = worker_options(Settings(lease_s=3.0, checkpoint_key="k"), exit_when_idle=True)
    >>> options.lease_s, options.checkpoint_key, options.exit_when_idle
    (3.0, 'k', True)
    """
    values: dict[str, Any] = {
        "watermark_delay_s": settings.watermark_delay_s,
        "checkpoint_interval_s": settings.checkpoint_interval_s,
        "poll_max_records": settings.poll_max_records,
        "max_event_bytes": settings.max_event_bytes,
        "lease_s": settings.lease_s,
        "max_outage_s": settings.max_outage_s,
        "max_future_s": settings.max_future_s,
        "checkpoint_key": settings.checkpoint_key,
        "unsigned_checkpoints": settings.checkpoint_unsigned,
    }
    values.update(overrides)
    return WorkerOptions(**values)
