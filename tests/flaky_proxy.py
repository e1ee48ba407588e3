"""A TCP proxy on loopback that can be switched off (a Kubernetes API that fails, then recovers) and can
add latency (a slow Kubernetes API: each request waits `delay` seconds before it is forwarded)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class FlakyProxy:
    """Forwards to `target_port` while `up`; while down, accepted connections are closed at once.

    With `delay`, every chunk the client sends waits that long before it goes on: on a kept-alive
    connection each request (and each TLS handshake flight) costs `delay` more, as an API far away would.
    """

    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self.up = threading.Event()
        self.refused = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            if not self.up.is_set():
                self.refused += 1
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b, delay in ((conn, upstream, self.delay), (upstream, conn, 0.0)):
                threading.Thread(target=self._pipe, args=(a, b, delay), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, delay: float) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if delay:
                    time.sleep(delay)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
