"""A TCP front on loopback for a server the functions call, switched between working and failing ways.

`forward` passes connections through; `refuse` stops listening (connection refused); `hang` accepts and
never answers; `error` answers every request with an HTTP error of its own (over TLS when given a
certificate, as the kube-apiserver speaks). Switching closes every connection open through it, so
pooled keep-alive connections cannot carry the old behaviour into the new one.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path
from typing import Literal

Mode = Literal["forward", "refuse", "hang", "error"]


class FaultSwitch:
    """Listens on `port`; what a connection gets depends on `mode`."""

    def __init__(
        self,
        target_port: int,
        *,
        tls: tuple[Path, Path] | None = None,
        error_status: str = "503 Service Unavailable",
        error_body: bytes = b"{}",
    ) -> None:
        self.target_port = target_port
        self.error_status = error_status
        self.error_body = error_body
        self._tls: ssl.SSLContext | None = None
        if tls is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(str(tls[0]), str(tls[1]))
        self.mode: Mode = "forward"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()
        self._listener: socket.socket | None = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._placeholder: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fault-switch")
        self._thread.start()

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    @classmethod
    def _listen(cls, port: int) -> socket.socket:
        listener = cls._bind(port)
        listener.listen(64)
        listener.settimeout(0.1)
        return listener

    def set(self, mode: Mode) -> None:
        """Behave this way from now on; connections open until now are closed."""
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()
            # While refusing, a socket bound but not listening keeps the port (connecting is refused),
            # so no other socket can take it meanwhile.
            if mode == "refuse" and self._listener is not None:
                self._placeholder = self._bind(self.port)
                self._listener.close()
                self._listener = None
            elif mode != "refuse" and self._listener is None:
                self._listener = self._listen(self.port)
                if self._placeholder is not None:
                    self._placeholder.close()
                    self._placeholder = None
            self.mode = mode

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stop.wait(0.05)
                continue
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                mode = self.mode
                self._open.add(conn)
            if mode == "forward":
                self._forward(conn)
            elif mode == "error":
                threading.Thread(target=self._error, args=(conn,), daemon=True).start()
            # hang: keep it open, say nothing

    def _forward(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            conn.close()
            return
        with self._lock:
            self._open.add(upstream)
        for source, sink in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _error(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            conn.settimeout(10)
            stream: socket.socket = conn
            if self._tls is not None:
                stream = self._tls.wrap_socket(conn, server_side=True)
            request = b""
            while b"\r\n\r\n" not in request and (data := stream.recv(65536)):
                request += data
            head = (
                f"HTTP/1.1 {self.error_status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.error_body)}\r\nConnection: close\r\n\r\n"
            )
            stream.sendall(head.encode() + self.error_body)
            stream.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.set("refuse")
        if self._placeholder is not None:
            self._placeholder.close()
