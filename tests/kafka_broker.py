"""A throwaway Kafka-protocol broker for tests (``wearwatch.benchmarks.broker`` starts it).

``with tansu_broker() as url:`` starts ``tansu broker`` on a free loopback port with in-memory
storage, waits (bounded) until a Kafka client can fetch metadata, yields ``kafka://127.0.0.1:PORT``
and terminates the broker afterwards.

``tansu_broker(port=P)`` listens on a given port (a second broker on the same port after the
first one stopped is "the broker restarted empty"); with ``advertised_port=A`` clients are told
to connect to ``127.0.0.1:A`` (a :class:`TcpProxy` there can cut and restore the network).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from wearwatch.benchmarks.broker import free_port, tansu

__all__ = ["TcpProxy", "free_port", "tansu_broker"]


@contextlib.contextmanager
def tansu_broker(
    startup_timeout_s: float = 30.0, *, port: int | None = None, advertised_port: int | None = None
) -> Iterator[str]:
    """Run a tansu broker (memory storage) for the duration of the ``with`` block.

    Yields the URL clients should use: the advertised port's, when given."""
    with tansu(startup_timeout_s, port=port, advertised_port=advertised_port) as broker:
        yield broker.url


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


if __name__ == "__main__":  # manual use: python tests/kafka_broker.py
    with tansu_broker() as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
