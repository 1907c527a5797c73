"""Fault helpers for integration tests: a TCP forwarder that can be switched off and on,
and a second broker reachable only through it (its advertised address is the
forwarder's, so clients never bypass it). Loopback only."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from types import TracebackType

from connector.localbroker import broker_binary, free_port
from tests.support import wait_until


class Forwarder:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target`. `off()` closes the listener and
    every open connection (a dead address); `on()` listens again on the same port."""

    def __init__(self, target: int, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def on(self) -> Forwarder:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return self

    def off(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # switched off
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class ForwardedBroker:
    """A tansu broker that listens on a hidden port and advertises the forwarder's, so
    every client connection goes through `self.forwarder` (bootstrap: `self.bootstrap`)."""

    def __init__(self) -> None:
        self.hidden = free_port()
        self.forwarder = Forwarder(self.hidden)
        self.bootstrap = f"127.0.0.1:{self.forwarder.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ForwardedBroker:
        self._proc = subprocess.Popen(
            [broker_binary(), "broker",
             "--listener-url", f"tcp://127.0.0.1:{self.hidden}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.forwarder.port}",
             "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.hidden), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_until(listening, 15, "the second broker to listen", every=0.02)
        self.forwarder.on()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.forwarder.off()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
