"""``zmsg serve --workers N``: one supervisor, N worker processes, one endpoint for clients.

Theory of operation: a Python service uses one core, so N processes each run the whole
Service. The supervisor runs no event loop and no ZeroMQ: it only creates one listening TCP
socket per worker (worker 0 on the endpoint the user asked for, the others on free ports of the
same interface) and starts each worker with its socket (``ZMQ_USE_FD``). Every worker's
``$zmsg.hello`` lists the request endpoints of all workers (``instances``), so a client that
knows the one printed endpoint connects a DEALER to each worker and spreads its requests over
them; each worker is an instance of the service with its own event socket, and events are
addressed to one instance (docs/protocol.md, "Instances").

Why not ZeroMQ's proxy device (ROUTER-DEALER in the supervisor)? It costs a hop per message
and hides which worker holds a request: a worker that dies leaves its requests to time out,
whereas with one connection per worker the client's socket monitor sees that connection drop
and fails exactly those requests at once (``ServiceUnavailable``), the others going on.
Holding the listening sockets in the supervisor keeps each worker's port across restarts:
connections that arrive while a worker restarts wait in the kernel's backlog for it.

The supervisor restarts a worker that exits (backoff doubling from 0.1 s to 5 s, reset after
a worker has served 10 s), tells every worker the state of all of them (a pipe per worker,
JSON lines: ``$zmsg.info`` reports them), and on SIGTERM/SIGINT sends SIGTERM to every worker,
waits for their drain (in-flight requests finish) and exits 0. A worker whose supervisor
vanishes (its pipe reaches end of file) drains and exits too. Workers run in their own process
group so that a terminal's Ctrl-C reaches only the supervisor, which drains them once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from zmsg.config import ServeSettings
from zmsg.errors import ConfigError, ZmsgError

__all__ = ["supervise", "worker_main", "Supervisor"]

log = logging.getLogger("zmsg.workers")

_TCP = re.compile(r"^tcp://(?P<host>\[[^\]]+\]|[^:/\[\]]+):(?P<port>\d+|\*)$")
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
STABLE_AFTER = 10.0  # seconds of serving after which a worker's restart backoff starts over
START_TIMEOUT = 60.0  # for the first start of all workers (imports can be slow)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket the worker's ROUTER will accept on (inherited by the worker)."""
    bare = host[1:-1] if host.startswith("[") else host
    bare = "" if bare in ("*", "0.0.0.0") else bare
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bare or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot bind tcp://{host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(100)  # ZeroMQ's own default backlog
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind tcp://{host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


@dataclass
class _Worker:
    index: int
    endpoint: str
    listener: socket.socket
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None  # supervisor's end: the worker writes one JSON line when serving
    control_fd: int | None = None  # supervisor's end: status lines to the worker
    state: str = "starting"
    restarts: int = 0
    events: str | None = None
    backoff: float = BACKOFF_FIRST
    restart_at: float | None = None
    ready_since: float | None = None
    buffer: bytes = b""
    exit_codes: list[int] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        return {"index": self.index, "endpoint": self.endpoint, "state": self.state,
                "pid": self.proc.pid if self.proc is not None else None, "restarts": self.restarts,
                "events": self.events}


class Supervisor:
    """Starts, watches, restarts and drains the workers of one ``zmsg serve``."""

    def __init__(self, settings: ServeSettings, count: int) -> None:
        match = _TCP.match(settings.bind)
        if match is None:
            raise ConfigError(f"--workers needs a tcp:// bind endpoint (one port per worker), not {settings.bind!r}")
        if settings.events_bind is not None:
            events = _TCP.match(settings.events_bind)
            if events is None or events["port"] not in ("0", "*"):
                raise ConfigError("with --workers each worker binds its own event port: leave --events-bind unset "
                                  "or give port 0 (tcp://HOST:0)")
        self.settings = settings
        self.count = count
        self.host = match["host"]
        first_port = 0 if match["port"] == "*" else int(match["port"])
        self.workers: list[_Worker] = []
        try:
            for index in range(count):
                listener = _listen(self.host, first_port if index == 0 else 0)
                port = listener.getsockname()[1]
                self.workers.append(_Worker(index, f"tcp://{self.host}:{port}", listener))
        except BaseException:
            self.close()
            raise
        self.name: str | None = None
        self._signals = 0
        self._draining = False

    @property
    def instances(self) -> list[str]:
        return [w.endpoint for w in self.workers]

    # -- processes -------------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        ready_r, ready_w = os.pipe()
        control_r, control_w = os.pipe()
        spec = {
            "settings": msgspec.to_builtins(self.settings),
            "index": worker.index,
            "count": self.count,
            "endpoint": worker.endpoint,
            "listen_fd": worker.listener.fileno(),
            "ready_fd": ready_w,
            "control_fd": control_r,
            "instances": self.instances,
            "workers": [w.status() for w in self.workers],
        }
        try:
            worker.proc = subprocess.Popen(
                [sys.executable, "-m", "zmsg.workers", json.dumps(spec)],
                pass_fds=(worker.listener.fileno(), ready_w, control_r),
                process_group=0,  # Ctrl-C reaches the supervisor only; it drains the workers once
            )
        finally:
            os.close(ready_w)
            os.close(control_r)
        worker.ready_fd, worker.control_fd = ready_r, control_w
        os.set_blocking(control_w, False)
        worker.state = "starting"
        worker.buffer = b""
        worker.restart_at = None
        worker.ready_since = None

    def _close_pipes(self, worker: _Worker) -> None:
        for fd in (worker.ready_fd, worker.control_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        worker.ready_fd = worker.control_fd = None

    def _read_ready(self, worker: _Worker) -> None:
        assert worker.ready_fd is not None
        try:
            chunk = os.read(worker.ready_fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            os.close(worker.ready_fd)
            worker.ready_fd = None
            return
        worker.buffer += chunk
        if b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            try:
                info = json.loads(line)
            except ValueError:
                return
            worker.state = "running"
            worker.events = info.get("events")
            self.name = info.get("service", self.name)
            worker.ready_since = time.monotonic()
            log.info("worker %d (pid %s) serving on %s", worker.index, info.get("pid"), worker.endpoint)
            self._tell_workers()

    def _tell_workers(self) -> None:
        """Send every live worker the state of all of them (for ``$zmsg.info``)."""
        line = (json.dumps([w.status() for w in self.workers]) + "\n").encode()
        for worker in self.workers:
            if worker.control_fd is None:
                continue
            try:
                os.write(worker.control_fd, line)
            except (BlockingIOError, BrokenPipeError, OSError):
                pass  # a worker not reading (busy or gone) misses one status: the next one comes

    def _reap(self, now: float) -> None:
        for worker in self.workers:
            proc = worker.proc
            if proc is None or proc.poll() is None:
                continue
            code = proc.returncode
            worker.exit_codes.append(code)
            self._close_pipes(worker)
            if self._draining:
                worker.state = "stopped"
                continue
            if worker.ready_since is not None and now - worker.ready_since >= STABLE_AFTER:
                worker.backoff = BACKOFF_FIRST
            worker.proc = None
            worker.state = "restarting"
            worker.restarts += 1
            worker.restart_at = now + worker.backoff
            log.warning("worker %d (pid %d) exited with %s; restarting it in %.1f s (restart %d)",
                        worker.index, proc.pid, _describe_exit(code), worker.backoff, worker.restarts)
            worker.backoff = min(worker.backoff * 2, BACKOFF_MAX)
            self._tell_workers()

    # -- running ---------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: stopping the workers at once")
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.proc.kill()
            os._exit(1)

    def _wait(self, timeout: float) -> None:
        fds = [w.ready_fd for w in self.workers if w.ready_fd is not None]
        try:
            if fds:
                select.select(fds, [], [], timeout)
            else:
                time.sleep(timeout)
        except InterruptedError:
            pass

    def _pump(self, timeout: float) -> None:
        self._wait(timeout)
        for worker in self.workers:
            if worker.ready_fd is not None:
                readable, _, _ = select.select([worker.ready_fd], [], [], 0)
                if readable:
                    self._read_ready(worker)
        self._reap(time.monotonic())

    def run(self, on_ready: Callable[[Any], None] | None = None) -> int:
        """Serve until a signal; returns the exit status (0 when every worker drained cleanly)."""
        from zmsg.serving import Ready

        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for worker in self.workers:
                self._spawn(worker)
            deadline = time.monotonic() + START_TIMEOUT
            while not self._signals and any(w.state != "running" for w in self.workers):
                self._pump(0.05)
                failed = [w for w in self.workers if w.state == "restarting"]
                if failed:
                    raise ZmsgError(f"worker {failed[0].index} exited with {_describe_exit(failed[0].exit_codes[-1])} "
                                    "before serving (its error is above)")
                if time.monotonic() > deadline:
                    raise ZmsgError(f"the workers did not start within {START_TIMEOUT:g} s")
            if not self._signals and on_ready is not None:
                first = self.workers[0]
                on_ready(Ready(self.name or "?", _connectable(first.endpoint), first.events or "?",
                               self.count, tuple(self.instances)))
            while not self._signals:
                self._pump(0.1)
                now = time.monotonic()
                for worker in self.workers:
                    if worker.restart_at is not None and now >= worker.restart_at:
                        self._spawn(worker)
            return self._drain()
        except BaseException:
            self._kill_all()
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.close()

    def _drain(self) -> int:
        self._draining = True
        log.info("draining %d worker(s)", self.count)
        for worker in self.workers:
            worker.restart_at = None
            if worker.proc is not None and worker.proc.poll() is None:
                worker.state = "draining"
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace + 5.0
        while any(w.proc is not None and w.proc.poll() is None for w in self.workers):
            if time.monotonic() > deadline:
                log.error("workers still running %.0f s after SIGTERM: killing them", self.settings.grace + 5.0)
                self._kill_all()
                return 1
            self._pump(0.05)
        self._reap(time.monotonic())
        codes = [w.proc.returncode for w in self.workers if w.proc is not None]
        clean = all(code == 0 for code in codes)
        log.info("all workers stopped%s", "" if clean else f" (exit statuses {codes})")
        return 0 if clean else 1

    def _kill_all(self) -> None:
        for worker in self.workers:
            proc = worker.proc
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for worker in self.workers:
            self._close_pipes(worker)
            worker.listener.close()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def _connectable(endpoint: str) -> str:
    from zmsg.transport.sockets import connectable

    return connectable(endpoint.replace("tcp://*:", "tcp://0.0.0.0:"))


def supervise(settings: ServeSettings, on_ready: Callable[[Any], None] | None = None) -> None:
    """Run ``settings.worker_count()`` workers of ``settings.app`` until a signal drains them."""
    from zmsg.serving import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    supervisor = Supervisor(settings, settings.worker_count())
    code = supervisor.run(on_ready)
    if code:
        raise SystemExit(code)


# -- the worker process ----------------------------------------------------------------------


def _run_worker(spec: dict[str, Any]) -> None:
    import asyncio

    from zmsg.runtime import ShutdownSignals, run
    from zmsg.serving import configure_logging, instrument, prepare_service

    settings = msgspec.convert(spec["settings"], ServeSettings)
    index = int(spec["index"])
    configure_logging(settings.log_level, settings.log_format, worker=index)
    service = prepare_service(settings)
    instrument(service, settings)  # --otel and --access-log in every worker (--metrics-bind is refused)
    service.instances = list(spec["instances"])
    service.workers = list(spec["workers"])
    ready_fd: int = spec["ready_fd"]
    control_fd: int = spec["control_fd"]

    def ready(_endpoint: str) -> None:
        line = json.dumps({"service": service.name, "events": service.events_endpoint, "pid": os.getpid(),
                           "instance": service.instance_id})
        os.write(ready_fd, line.encode() + b"\n")
        os.close(ready_fd)

    async def main() -> None:
        stop = ShutdownSignals()
        loop = asyncio.get_running_loop()
        buffer = bytearray()

        def on_control() -> None:
            try:
                chunk = os.read(control_fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:  # the supervisor is gone: nobody will restart or drain us
                loop.remove_reader(control_fd)
                logging.getLogger("zmsg.workers").warning("supervisor gone: draining")
                stop.stop()
                return
            buffer.extend(chunk)
            while b"\n" in buffer:
                line, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                try:
                    service.workers = json.loads(line)
                except ValueError:
                    pass

        os.set_blocking(control_fd, False)
        loop.add_reader(control_fd, on_control)
        try:
            await service.serve(spec["endpoint"], events_endpoint=settings.events_bind, on_ready=ready,
                                grace=settings.grace, listen_fd=spec["listen_fd"], signals=stop)
        finally:
            loop.remove_reader(control_fd)

    run(main(), use_uvloop=settings.loop != "asyncio")


def worker_main(argv: list[str] | None = None) -> int:
    """Entry point of one worker (``python -m zmsg.workers SPEC``), started by the supervisor."""
    args = sys.argv[1:] if argv is None else argv
    try:
        _run_worker(json.loads(args[0]))
    except ZmsgError as exc:
        print(f"zmsg: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
