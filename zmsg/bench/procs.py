"""Starting and reaping the processes of a bench run: servers, and client workers.

Every process is started with the same interpreter and environment as ``zmsg bench`` itself
(so ``ZMSG_NO_EXTENSIONS`` reaches all of them) and is always terminated and reaped, even when
the run is interrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["Server", "BenchError", "PIN_CHOICES", "zmsg_server", "raw_server", "run_worker", "placement", "pin_process",
           "cpu_seconds"]

_READY = re.compile(r"serving (?:'[^']*' )?on (?P<endpoint>\S+) \(events on (?P<events>\S+)\)")
START_TIMEOUT = 30.0


class BenchError(Exception):
    """A bench run could not proceed (a process failed to start, a worker failed)."""


@dataclass
class Server:
    name: str
    endpoint: str
    events_endpoint: str
    proc: subprocess.Popen[str] | None  # None: started by someone else (--endpoint)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def cpu_seconds(proc: subprocess.Popen[str] | None) -> float | None:
    """CPU time used so far by a process we started (all its threads), from /proc; else None."""
    if proc is None:
        return None
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _pinned(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` restricting the child (and every thread it starts) to ``cpus``."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


PIN_CHOICES = ("auto", "none", "split", "same")


def placement(pin: str, workload: str) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """CPUs for (server, client) of one measurement; None lets the OS decide.

    "split" puts the server on the last CPU and the client on the first, "same" puts both on
    the first, "auto" splits the latency measurements only (W1, and the sweep's points with one
    request in flight, which ask for W1's placement): on VMs a wake-up on another CPU costs tens
    of microseconds, so unpinned latency results flip between two modes run to run.
    """
    if pin == "auto":
        pin = "split" if workload == "W1" else "none"
    if pin == "none" or not hasattr(os, "sched_setaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if pin == "same" or len(cpus) < 2:
        return frozenset(cpus[:1]), frozenset(cpus[:1])
    return frozenset(cpus[-1:]), frozenset(cpus[:1])


def pin_process(proc: subprocess.Popen[str] | None, cpus: frozenset[int] | None) -> None:
    """Move every thread of a running process onto ``cpus`` (None: every CPU we may use)."""
    if proc is None or not hasattr(os, "sched_setaffinity"):
        return
    target = cpus or frozenset(os.sched_getaffinity(0))
    try:
        tids = os.listdir(f"/proc/{proc.pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            os.sched_setaffinity(int(tid), target)
        except OSError:  # the thread ended meanwhile
            pass


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


@contextmanager
def _server(name: str, argv: list[str], start_timeout: float = START_TIMEOUT) -> Iterator[Server]:
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        ready: list[re.Match[str]] = []

        def read_ready() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                seen.append(line)
                match = _READY.search(line)
                if match:
                    ready.append(match)
                    return

        reader = threading.Thread(target=read_ready, daemon=True)
        reader.start()
        reader.join(start_timeout)
        if not ready:
            raise BenchError(f"the {name} server did not start; its output:\n{''.join(seen)}")
        # Keep draining its output so a chatty server can never block on a full pipe.
        threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
        yield Server(name, ready[0]["endpoint"], ready[0]["events"], proc)
    finally:
        _stop(proc)


def zmsg_server(workers: int = 1, wrapper: Sequence[str] = (), start_timeout: float = START_TIMEOUT) -> Any:
    """The embedded bench service, via ``zmsg serve`` on an ephemeral loopback port (with
    ``workers`` worker processes behind it when above 1). ``wrapper`` prefixes the command
    (a profiler such as valgrind)."""
    return _server("zmsg", [*wrapper, sys.executable, "-m", "zmsg", "serve", "zmsg.bench.service:service",
                            "--bind", "tcp://127.0.0.1:0", "--log-level", "warning", "--workers", str(workers)],
                   start_timeout)


def raw_server(wrapper: Sequence[str] = (), start_timeout: float = START_TIMEOUT) -> Any:
    """The raw pyzmq baseline server on an ephemeral loopback port (``wrapper`` as above)."""
    return _server("raw", [*wrapper, sys.executable, "-m", "zmsg.bench.raw", "--bind", "tcp://127.0.0.1:0"],
                   start_timeout)


def run_worker(spec: dict[str, Any], on_progress: Callable[[int, int, int], None],
               on_outcome: Callable[[int, dict[str, Any]], None] | None = None,
               cpus: frozenset[int] | None = None) -> list[dict[str, Any]]:
    """Run a client worker to completion; returns one ``{"result"|"error": ...}`` per job."""
    proc = subprocess.Popen([sys.executable, "-m", "zmsg.bench.worker", json.dumps(spec)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_pinned(cpus))
    outcomes: list[dict[str, Any]] = [{"error": "no result reported"} for _ in spec["jobs"]]
    stderr: list[str] = []
    drain = threading.Thread(target=lambda: stderr.extend(proc.stderr or ()), daemon=True)
    drain.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            event = msg.get("event")
            if event == "progress":
                on_progress(msg["job"], msg["done"], msg["total"])
            elif event in ("result", "error"):
                index = msg["job"]
                outcomes[index] = {"result": msg["result"]} if event == "result" else {"error": msg["message"]}
                if on_outcome is not None:
                    on_outcome(index, outcomes[index])
        proc.wait()
    except BaseException:
        _stop(proc)
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    drain.join(2)
    if proc.stderr is not None:
        proc.stderr.close()
    if proc.returncode not in (0, 1):
        tail = "".join(stderr[-20:]).strip()
        for outcome in outcomes:
            if "result" not in outcome:
                outcome["error"] = f"client process exited with {proc.returncode}: {tail}"
    return outcomes
