"""`alm train --nproc N` and `alm resume --nproc N`: the same command, run by N processes on this node under
torchrun (`python -m torch.distributed.run`), which sets each one's RANK/WORLD_SIZE/LOCAL_RANK.

The parent checks what it can before launching (N, the port, the config, the device), names the run when the
command does not (the processes must agree on one name), and waits. torchrun starts each process in a session
of its own, so Ctrl+C in the terminal reaches only this parent; it forwards SIGINT/SIGTERM to torchrun, which
passes it once to every process: they agree on the step to stop at (`alm.train.parallel.Parallel.any`), rank 0
saves, and all exit. torchrun itself reports any stop as a failure, so the exit status comes from the run: 130
when its last `stop` event says it was interrupted, else torchrun's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from alm.errors import UsageError
from alm.events import StopEvent, read_events
from alm.rundir import RunDir

VALUED_FLAGS = ("--nproc", "--port")  # the parent's own options, which the processes must not see again


def check_nproc(nproc: int) -> None:
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}", hint="--nproc 2 trains on two processes")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError(
            "--nproc launches torchrun itself, and this process already runs under torchrun",
            hint="leave out --nproc when starting alm with torchrun",
        )


def check_port(port: int | None) -> None:
    """A port given for the rendezvous must be free now (torchrun's own error would come from every process)."""
    if port is None:
        return
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port", hint="use a port in 1024-65535, or leave it out")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise UsageError(
                f"port {port} is in use on this machine",
                hint="choose another --port, or leave it out to let torchrun pick a free one",
            ) from None


def worker_args(argv: Sequence[str], run: str | None = None) -> list[str]:
    """The command's arguments (argv after the program) without the parent's own options, plus `--run RUN`."""
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in VALUED_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in VALUED_FLAGS)):
            args.append(arg)
    return [*args, "--run", run] if run is not None else args


def torchrun_command(
    args: Sequence[str], nproc: int, port: int | None = None, module: str = "alm"
) -> list[str]:
    """torchrun (through `main` below) for one node, `... -m MODULE -- ARGS`: a free rendezvous port unless
    `port`."""
    launch = [sys.executable, "-m", "alm.train.torchrun", f"--nproc-per-node={nproc}"]
    if port is None:
        launch.append("--standalone")
    else:
        launch += ["--nnodes=1", "--master-addr=127.0.0.1", f"--master-port={port}"]
    # `--` keeps alm's options from torchrun's parser, which would take `--run` for its `--run-path`.
    return [*launch, "-m", module, "--", *args]


def worker_env(nproc: int) -> dict[str, str]:
    """The processes' environment: the CPU's cores shared out between them (torchrun would give each one)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def run_torchrun(command: Sequence[str], env: dict[str, str], run: RunDir) -> int:
    """Run `command` to its end, forwarding stop signals; the exit status (130: the run was interrupted)."""
    started = time.time()
    proc = subprocess.Popen(list(command), env=env, start_new_session=True)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if code == 0:
        return 0
    stops = [e for e in read_events(run.events_path) if isinstance(e, StopEvent) and (e.time or 0) >= started]
    if stops and stops[-1].reason == "interrupted":
        return 130
    return code if code > 0 else 128 - code  # killed by a signal: the shell's convention


def launch(argv: Sequence[str], nproc: int, port: int | None, run: RunDir, *, name: str | None = None) -> int:
    """Run this `alm train`/`alm resume` command line (`argv` after the program) on `nproc` processes; `name`:
    the run name the parent chose for a command that gave none."""
    command = torchrun_command(worker_args(argv, name), nproc, port)
    return run_torchrun(command, worker_env(nproc), run)


def main() -> None:
    """torchrun (`torch.distributed.run.main`) without its own tracebacks, which would bury the ranks' words: the
    stop it forwards to the ranks is a stop, not a crash (how the run ended is in its events), and a failed rank
    leaves torchrun's summary of which rank failed how."""
    if "LOGLEVEL" not in os.environ:  # torchrun's own progress lines: the ranks say what matters
        os.environ["LOGLEVEL"] = "ERROR"
        logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun()
    except SignalException:
        sys.exit(130)
    except ChildFailedError as exc:  # its summary (which rank failed how), without torchrun's own traceback
        sys.stderr.write(f"{exc}\n")
        sys.exit(1)


__all__ = [
    "check_nproc",
    "check_port",
    "launch",
    "run_torchrun",
    "torchrun_command",
    "worker_args",
    "worker_env",
]


if __name__ == "__main__":
    main()
