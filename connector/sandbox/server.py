"""The sandbox server: a strict, local, Gameball-compatible API. NOT Gameball.

`SandboxServer` starts and stops it in background threads; the endpoints are in
api.py, the HTTP plumbing in httpd.py, the memory in state.py.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from connector.sandbox.api import (
    BATCH_PATH,
    DEFAULT_API_KEY,
    DEFAULT_SECRET_KEY,
    EVENTS_PATH,
    NOTICE,
    STATUS_NEWEST,
    STATUS_OLDER,
    STOP_NEWEST,
    Handler,
)
from connector.sandbox.faults import Faults
from connector.sandbox.httpd import SandboxHTTPServer
from connector.sandbox.state import SandboxState

__all__ = [
    "BATCH_PATH",
    "DEFAULT_API_KEY",
    "DEFAULT_SECRET_KEY",
    "EVENTS_PATH",
    "NOTICE",
    "STATUS_NEWEST",
    "STATUS_OLDER",
    "STOP_NEWEST",
    "SandboxServer",
]



class SandboxServer:
    """A local Gameball-compatible API in background threads. NOT Gameball.

    Used by `gameball-connector sandbox`, the demo and every integration test:
    `with SandboxServer() as sandbox: ... sandbox.url ... sandbox.items()`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 api_key: str = DEFAULT_API_KEY, secret_key: str = DEFAULT_SECRET_KEY,
                 store_path: str | None = None, faults: Faults | None = None,
                 high_security: bool = False) -> None:
        self._host = host
        self._requested_port = port
        self._api_key = api_key
        self._secret_key = secret_key
        self._store_path = store_path
        self._initial_faults = faults or Faults()
        # High Security Mode: every request needs both keys (overview--authentication.mdx)
        self.high_security = high_security
        self._state: SandboxState | None = None
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self. OSError if the port is taken."""
        if self._httpd is not None:
            return self
        self._state = SandboxState(self._initial_faults, self._store_path)
        try:
            self._httpd = SandboxHTTPServer((self._host, self._requested_port), Handler,
                                             self._state, self._api_key, self._secret_key,
                                             self.high_security)
        except OSError:
            self._state.close()
            self._state = None
            raise
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, release held requests, close the store."""
        httpd, state = self._httpd, self._state
        if httpd is None or state is None:
            return
        httpd.shutdown()
        state.close()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the sandbox is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def state(self) -> SandboxState:
        if self._state is None:
            raise RuntimeError("the sandbox is not started")
        return self._state

    # In-process inspection, the same data as the /_sandbox endpoints.
    def items(self) -> list[dict[str, Any]]:
        """Accepted items, oldest first."""
        return self.state.items()

    def stats(self, arrivals: bool = True) -> dict[str, Any]:
        return self.state.stats(arrivals=arrivals)

    def set_faults(self, faults: Faults) -> None:
        self.state.set_faults(faults)

    @property
    def faults(self) -> Faults:
        return self.state.faults

    def reset(self) -> None:
        self.state.reset()

    def wait_for_items(self, count: int, timeout: float) -> bool:
        """Block until `count` items were accepted; False on timeout."""
        return self.state.wait_for_items(count, timeout)
