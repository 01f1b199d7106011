"""`alm serve` as a process: it says where it listens, drains the requests in flight on SIGTERM/SIGINT and
exits 0, cuts what is left at the drain bound, and refuses bad flags before loading anything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_helpers import sse_events
from typer.testing import CliRunner

from alm.cli.app import app
from alm.serve.config import is_loopback

LONG = {"prompt": "x", "temperature": 0, "stream": True}


def start(runs_root: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`alm serve` on a free port; returns the process and its URL (read from its `serving … at URL` line)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alm", "serve", *args, "--port", "0", "--device", "cpu"],
        cwd=runs_root.parent,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"serving \S+ at (http://\S+)", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, found.group(1)
    raise AssertionError(f"alm serve exited {proc.wait()} without listening")


def stream(url: str, max_tokens: int, out: dict) -> None:
    """A streaming completion; `out` gets the text, the finish reason, whether [DONE] came, and any error."""
    out.update(text="", finish=None, done=False)
    try:
        body = {**LONG, "max_tokens": max_tokens}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as response:
            out["status"] = response.status_code
            for event in sse_events(response.iter_lines()):
                if event == "[DONE]":
                    out["done"] = True
                    continue
                assert isinstance(event, dict)
                choice = event["choices"][0]
                out["text"] += choice["text"]
                out["finish"] = choice["finish_reason"] or out["finish"]
                out.setdefault("first", time.monotonic())
    except httpx.HTTPError as exc:
        out["error"] = exc


def wait_started(out: dict, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while "first" not in out and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "first" in out, out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_drains_the_requests_in_flight_then_exits_0(runs_root, sig):
    proc, url = start(runs_root, "base", "--drain-seconds", "60")
    out: dict = {}
    client = threading.Thread(target=stream, args=(url, 300, out))
    client.start()
    wait_started(out)
    proc.send_signal(sig)
    assert proc.wait(60) == 0
    client.join(10)
    assert out.get("status") == 200 and "error" not in out
    assert out["finish"] == "length" and out["done"]  # the request in flight ran to its end
    with pytest.raises(httpx.ConnectError):  # and the server is gone
        httpx.get(url + "/health", timeout=2)


@pytest.mark.slow
def test_the_drain_is_bounded(runs_root):
    proc, url = start(runs_root, "base", "--drain-seconds", "1", "--max-tokens-limit", "100000")
    out: dict = {}
    client = threading.Thread(target=stream, args=(url, 100_000, out))
    client.start()
    wait_started(out)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert time.monotonic() - began < 15
    client.join(10)
    assert not out["done"]  # cut at the bound, long before 100,000 tokens


@pytest.mark.slow
def test_new_requests_during_a_drain_are_refused(runs_root):
    proc, url = start(runs_root, "base", "--drain-seconds", "60")
    out: dict = {}
    client = threading.Thread(target=stream, args=(url, 400, out))
    client.start()
    wait_started(out)
    with httpx.Client(base_url=url, timeout=10) as keep_alive:  # a connection opened before the signal
        assert keep_alive.get("/health").status_code == 200
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:
            response = keep_alive.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
        except httpx.TransportError:
            pass  # the server closed the idle connection first: refused all the same
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health", timeout=2)  # no new connections
    assert proc.wait(60) == 0
    client.join(10)
    assert out["done"] and out["finish"] == "length"


runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--max-concurrency", "0"], "--max-concurrency: must be >= 1"),
        (["--port", "70000"], "--port: must be in 0..65535"),
        (["--quantize", "int4"], "--quantize 'int4' is not supported"),
        (["--api-key", ""], "--api-key: must not be empty"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(runs_root, monkeypatch, args, needle):
    monkeypatch.chdir(runs_root.parent)
    result = runner.invoke(app, ["serve", "base", "--device", "cpu", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and "Traceback" not in result.output


def test_a_port_in_use_exits_2_naming_port(runs_root, monkeypatch):
    import socket

    monkeypatch.chdir(runs_root.parent)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "base", "--device", "cpu", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


def test_an_unknown_run_names_the_runs_there(runs_root, monkeypatch):
    monkeypatch.chdir(runs_root.parent)
    result = runner.invoke(app, ["serve", "nope", "--device", "cpu"])
    assert result.exit_code == 2 and "chatty" in result.stderr


def test_loopback_addresses():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.2", "example.org"]))
