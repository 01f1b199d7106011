"""Running the app: a bound socket, uvicorn, the scheduler thread, and a graceful stop.

Ctrl+C or SIGTERM starts a drain: new requests get 503, the listening socket closes, and the requests in flight
run to their end for up to `drain_seconds`; what is still running then is cancelled, and the process exits 0.
A second Ctrl+C stops at once. (uvicorn re-raises a handled signal after its shutdown, which would turn a clean
drain into exit 130 or a kill; `_Uvicorn` keeps the shutdown and drops the re-raise.)
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from alm.errors import UsageError
from alm.serve.app import create_app
from alm.serve.config import ServeConfig
from alm.serve.model import ServedModel
from alm.serve.scheduler import Scheduler

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], object]):
        super().__init__(config)
        self._on_signal = on_signal

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._on_signal()
        super().handle_exit(sig, frame)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); a UsageError naming --host/--port if it fails."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(address, family=family)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 takes any free one) or --host",
        ) from None


class Server:
    """One model served at `url`: `run()` blocks until a signal (the CLI); `start()`/`stop()` run it on a
    background thread (tests, benchmarks in-process)."""

    def __init__(
        self, served: ServedModel, cfg: ServeConfig, *, compile: bool = False, log_level: str = "warning"
    ):
        self.served, self.cfg = served, cfg
        self.scheduler = Scheduler(
            lambda: served.engine(cfg.max_concurrency, compile=compile), capacity=cfg.capacity
        )
        self.app = create_app(served, self.scheduler, cfg)
        self.socket = bind(cfg.host, cfg.port)
        self.port: int = self.socket.getsockname()[1]
        self.url = cfg.url(self.port)
        config = uvicorn.Config(
            self.app,
            log_level=log_level,
            access_log=False,
            lifespan="off",
        )
        # The drain bound; uvicorn types it as int but only hands it to asyncio.wait_for.
        config.timeout_graceful_shutdown = cfg.drain_seconds  # type: ignore[assignment]
        self._uvicorn = _Uvicorn(config, on_signal=self.scheduler.drain)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        self.scheduler.start()
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self.scheduler.close()
            self.socket.close()

    def start(self, timeout: float = 30.0) -> Server:
        self._thread = threading.Thread(target=self.run, name="alm-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if self._uvicorn.started:
                return self
            time.sleep(0.01)
        raise RuntimeError(f"the server at {self.url} did not start")

    def stop(self, timeout: float = 30.0) -> None:
        """Drain (as on SIGTERM) and wait for the thread to end."""
        self.scheduler.drain()
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = ["Server", "bind"]
