"""Load test of `alm serve`: concurrent streaming clients against a real server process on 127.0.0.1.

For each server setting — continuous batching (`--max-concurrency` = the most clients), one request at a time
(`--max-concurrency 1`) and batching with int8 weights (`--quantize int8`) — a fresh `alm serve` subprocess is
started on a free port and loaded by 1, 4, 16 … clients in turn, each sending `requests` streaming completions
one after another. Every request decodes greedily with `ignore_eos`, so each produces exactly `max_tokens`
tokens and the settings do the same work. Reported per load: requests/s, output tokens/s, time to first token
(p50, p99) and errors; the queue holds every client, so any error is a failure. No third-party client: the
load is plain `http.client` threads, so the numbers measure the server, not a client library.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from alm.errors import AlmError

Progress = Callable[[str], None]
PROMPT = "ROMEO:"
START_TIMEOUT = 120.0
REQUEST_TIMEOUT = 300.0


@dataclass(frozen=True)
class Setting:
    name: str
    args: tuple[str, ...]


@dataclass
class Load:
    """One load level against one server setting."""

    clients: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    output_tokens: int = 0
    ttft: list[float] = field(default_factory=list)  # seconds to the first piece of text, per request

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0

    def ttft_ms(self, q: float) -> float:
        return 1000 * percentile(self.ttft, q)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.seconds,
            "requests_per_s": self.requests_per_s,
            "output_tokens_per_s": self.tokens_per_s,
            "ttft_p50_ms": self.ttft_ms(50),
            "ttft_p99_ms": self.ttft_ms(99),
        }


@dataclass
class ServeBenchResult:
    run: str
    settings: dict[str, Any]
    loads: dict[str, list[Load]]  # by setting name

    def tokens_per_s(self, setting: str, clients: int) -> float:
        return next(load.tokens_per_s for load in self.loads[setting] if load.clients == clients)

    def ratios(self) -> dict[str, float]:
        """At the heaviest load: batching over one at a time, and int8 over fp32 (both batched)."""
        top = max(self.settings["clients"])
        out = {}
        if "one-at-a-time" in self.loads:
            out["batching_speedup"] = self.tokens_per_s("batched", top) / max(
                self.tokens_per_s("one-at-a-time", top), 1e-9
            )
        if "batched-int8" in self.loads:
            out["int8_speedup"] = self.tokens_per_s("batched-int8", top) / max(
                self.tokens_per_s("batched", top), 1e-9
            )
        return out

    @property
    def errors(self) -> int:
        return sum(load.errors for loads in self.loads.values() for load in loads)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "settings": self.settings,
            "loads": {name: [load.to_dict() for load in loads] for name, loads in self.loads.items()},
            "ratios": self.ratios(),
            "errors": self.errors,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the p99 of a few requests is their maximum)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def settings_for(clients: Sequence[int], *, one_at_a_time: bool, int8: bool) -> list[Setting]:
    most = str(max(clients))
    queue = ("--max-queue", most)
    settings = [Setting("batched", ("--max-concurrency", most, *queue))]
    if one_at_a_time:
        settings.append(Setting("one-at-a-time", ("--max-concurrency", "1", *queue)))
    if int8:
        settings.append(Setting("batched-int8", ("--max-concurrency", most, *queue, "--quantize", "int8")))
    return settings


@contextlib.contextmanager
def server_process(run: str, args: Sequence[str], *, device: str, threads: int | None) -> Iterator[str]:
    """`alm serve RUN ARGS --port 0` as a subprocess; yields its URL, then drains it with SIGTERM."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "alm", "serve", run, "--port", "0", "--device", device, *args]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + START_TIMEOUT
    for line in proc.stderr:
        lines.append(line)
        found = re.search(r"serving \S+ at (http://\S+)", line)
        if found:
            url = found.group(1)
            break
        if time.monotonic() > deadline:
            break
    if url is None:
        proc.kill()
        raise AlmError(f"`{' '.join(command[2:])}` did not start: {''.join(lines[-5:]).strip()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe from filling
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def stream_once(url: str, max_tokens: int) -> tuple[float, int]:
    """One streaming completion: (seconds to the first text, output tokens from `usage`)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=REQUEST_TIMEOUT)
    body = {
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first, tokens = math.nan, 0
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            raise AlmError(f"HTTP {response.status}: {response.read()[:200]!r}")
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise AlmError(event["error"]["message"])
            if math.isnan(first) and any(c.get("text") for c in event["choices"]):
                first = time.perf_counter() - start
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    finally:
        conn.close()
    return first, tokens


def apply_load(url: str, clients: int, requests: int, max_tokens: int) -> Load:
    load = Load(clients)
    lock = threading.Lock()

    def client() -> None:
        for _ in range(requests):
            try:
                ttft, tokens = stream_once(url, max_tokens)
            except (OSError, AlmError, ValueError):
                with lock:
                    load.errors += 1
                continue
            with lock:
                load.requests += 1
                load.output_tokens += tokens
                load.ttft.append(ttft)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = time.perf_counter() - start
    return load


def run_serve_bench(
    run: str,
    *,
    clients: Sequence[int] = (1, 4, 16),
    requests: int = 4,
    max_tokens: int = 64,
    device: str = "cpu",
    threads: int | None = None,
    one_at_a_time: bool = True,
    int8: bool = True,
    progress: Progress | None = None,
) -> ServeBenchResult:
    say = progress or (lambda _message: None)
    settings = settings_for(clients, one_at_a_time=one_at_a_time, int8=int8)
    loads: dict[str, list[Load]] = {}
    for setting in settings:
        with server_process(run, setting.args, device=device, threads=threads) as url:
            stream_once(url, 4)  # warm-up: the first request pays for lazy imports and allocations
            loads[setting.name] = []
            for n in clients:
                say(f"{setting.name}: {n} client(s) × {requests} requests × {max_tokens} tokens")
                loads[setting.name].append(apply_load(url, n, requests, max_tokens))
    record = {
        "clients": list(clients),
        "requests_per_client": requests,
        "max_tokens": max_tokens,
        "device": device,
        "threads": threads,
        "servers": {s.name: " ".join(s.args) for s in settings},
    }
    return ServeBenchResult(run, record, loads)


__all__ = [
    "Load",
    "ServeBenchResult",
    "Setting",
    "apply_load",
    "percentile",
    "run_serve_bench",
    "stream_once",
]
