"""`ServeConfig`: how `alm serve` listens, how much it takes on, and how it stops. No torch, no FastAPI.

Each field is the `alm serve` flag of the same name (`max_concurrency` is `--max-concurrency`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from alm.config import require

LOOPBACK = "127.0.0.1"


@dataclass
class ServeConfig:
    host: str = LOOPBACK
    port: int = 8000  # 0: a free port, printed when the server is up
    api_key: str | None = None  # every /v1 request must then carry `Authorization: Bearer KEY`
    max_concurrency: int = 8  # sequences decoded together: the engine's slots, one forward for all of them
    max_queue: int = 32  # sequences waiting for a slot; past it a request is refused with 429
    max_tokens_limit: int = 2048  # the largest max_tokens a request may ask for
    max_body_bytes: int = 1 << 20
    drain_seconds: float = 10.0  # on Ctrl+C/SIGTERM: how long requests in flight may take to finish
    retry_after: int = 1  # seconds, in the Retry-After header of a 429 or 503

    def validate(self) -> None:
        require(bool(self.host), "host", "must name an address, e.g. 127.0.0.1")
        require(0 <= self.port <= 65535, "port", f"must be in 0..65535 (0: any free port), got {self.port}")
        require(self.api_key != "", "api_key", "must not be empty (leave it out for no key)")
        require(self.max_concurrency >= 1, "max_concurrency", f"must be >= 1, got {self.max_concurrency}")
        require(self.max_queue >= 0, "max_queue", f"must be >= 0, got {self.max_queue}")
        require(self.max_tokens_limit >= 1, "max_tokens_limit", f"must be >= 1, got {self.max_tokens_limit}")
        require(self.max_body_bytes >= 1024, "max_body_bytes", f"must be >= 1024, got {self.max_body_bytes}")
        require(self.drain_seconds >= 0, "drain_seconds", f"must be >= 0, got {self.drain_seconds}")
        require(self.retry_after >= 1, "retry_after", f"must be >= 1, got {self.retry_after}")

    @property
    def capacity(self) -> int:
        """Sequences the server holds at once: decoding plus waiting."""
        return self.max_concurrency + self.max_queue

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["LOOPBACK", "ServeConfig", "is_loopback"]
