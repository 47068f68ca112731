"""What the CLI's log records look like on stderr: one line each, ``warning: ...``.

Library code logs through :mod:`logging` (the runtime's outage warnings, librdkafka's own lines
via :data:`wearwatch.bus.kafka.CLIENT_LOG`); the CLI shows warnings and worse, each as one line
in the style of its ``error: ...`` lines, without tracebacks (``WEARWATCH_DEBUG=1`` shows them
and lowers the threshold to debug).
"""

from __future__ import annotations

import logging
import os
import sys

_HANDLER_NAME = "wearwatch-stderr"


class OneLineFormatter(logging.Formatter):
    """``<level>: <message>`` on one line; the traceback only with ``WEARWATCH_DEBUG``."""

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split("\n")).strip()
        line = f"{record.levelname.lower()}: {text}"
        if record.exc_info and os.environ.get("WEARWATCH_DEBUG"):
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging() -> None:
    """Route log records of warning level and above to stderr, one line each (idempotent)."""
    root = logging.getLogger()
    if any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(OneLineFormatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if os.environ.get("WEARWATCH_DEBUG") else logging.WARNING)
