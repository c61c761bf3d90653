"""Bounded soak run: services and clients killed and restarted at random; every request and
event accounted for.

    python scripts/soak/soak.py --duration 120 [--seed 7]

Faults, chosen at random every 1-4 s: a service killed with SIGKILL, or stopped with SIGTERM
(drain), or frozen with SIGSTOP for 1-3 s (its connections time out on heartbeats), then
restarted on the same endpoint; a client stopped with SIGTERM and replaced by a new one. At the
end every process is stopped and the tallies are printed. `unaccounted` must be 0 for both
requests (sent - replied - failed with an explicit error) and events (emitted - received by the
one instance each was addressed to - reported lost: the services are instances of one service,
so each event is handled once). The script exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
HEADER = struct.Struct("<QQ")
SLOT = struct.Struct("<QQQQ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceSlot:
    def __init__(self, index: int, workdir: Path) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.state = workdir / f"service{index}.state"
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = 0

    def start(self) -> None:
        env = {**os.environ, "SOAK_STATE": str(self.state)}
        for _ in range(50):  # the old process may still hold the port for a moment
            proc = subprocess.Popen([sys.executable, "-m", "zmsg", "serve", "soak_service:service", "--bind",
                                     self.endpoint, "--log-level", "error"], cwd=HERE, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert proc.stdout is not None
            if re.search(r"serving", proc.stdout.readline()):
                self.proc = proc
                proc.stdout.close()
                return
            proc.wait()
            time.sleep(0.1)
        raise SystemExit(f"could not restart the service on {self.endpoint}")

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        if sig == signal.SIGSTOP:
            self.proc.send_signal(signal.SIGSTOP)
            time.sleep(random.uniform(1, 3))
            self.proc.send_signal(signal.SIGCONT)
            return
        self.proc.send_signal(sig)
        self.proc.wait(30)
        time.sleep(random.uniform(0.2, 1.0))
        self.restarts += 1
        self.start()

    def tallies(self) -> tuple[int, int, int]:
        """(events received, events reported lost, requests served) over every incarnation."""
        data = self.state.read_bytes()
        missed, served = HEADER.unpack_from(data, 0)
        received = prelost = 0
        for offset in range(HEADER.size, len(data), SLOT.size):
            emitter, _last, processed, lost_before = SLOT.unpack_from(data, offset)
            if emitter:
                received += processed
                prelost += lost_before
        return received, missed + prelost, served


def start_client(endpoints: list[str], workdir: Path, index: int) -> tuple[subprocess.Popen[bytes], Path]:
    result = workdir / f"client{index}.json"
    proc = subprocess.Popen([sys.executable, str(HERE / "soak_client.py"), str(result), *endpoints])
    return proc, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120, help="seconds of faults (default 120)")
    parser.add_argument("--services", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    random.seed(seed)
    workdir = Path(tempfile.mkdtemp(prefix="zmsg-soak-"))
    services = [ServiceSlot(i, workdir) for i in range(args.services)]
    for service in services:
        service.start()
    endpoints = [s.endpoint for s in services]
    clients = [start_client(endpoints, workdir, i) for i in range(args.clients)]
    finished: list[Path] = []
    faults: dict[str, int] = {}
    started = time.monotonic()
    print(f"soak: seed {seed}, {args.services} services, {args.clients} clients, {args.duration:g} s, in {workdir}")
    try:
        while time.monotonic() - started < args.duration:
            time.sleep(random.uniform(1, 4))
            action = random.choice(["kill", "term", "freeze", "client"])
            faults[action] = faults.get(action, 0) + 1
            if action == "client":
                index = random.randrange(len(clients))
                proc, result = clients[index]
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
                finished.append(result)
                clients[index] = start_client(endpoints, workdir, len(finished) + len(clients))
            else:
                service = random.choice(services)
                service.stop({"kill": signal.SIGKILL, "term": signal.SIGTERM, "freeze": signal.SIGSTOP}[action])
            print(f"  {time.monotonic() - started:6.1f} s  {action}", flush=True)
        time.sleep(3)  # no more faults: let reconnections settle before the final bursts
        for proc, _result in clients:
            proc.send_signal(signal.SIGTERM)
        for proc, result in clients:
            proc.wait(60)
            finished.append(result)
        time.sleep(2)  # let services handle the last events
    finally:
        for service in services:
            if service.proc is not None and service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
                service.proc.wait(30)
        for proc, _ in clients:
            if proc.poll() is None:
                proc.kill()

    totals: dict[str, int] = {}
    for result in finished:
        for key, value in json.loads(result.read_text()).items():
            totals[key] = totals.get(key, 0) + value
    failed = totals["rpc_error"] + totals["timeout"] + totals["unavailable"]
    requests_unaccounted = totals["sent"] - totals["replied"] - totals["wrong"] - failed
    received = lost = 0
    for service in services:
        r, lost_here, _served = service.tallies()
        received += r
        lost += lost_here
    # The services are instances of one service: each event is handled once per service (by one
    # instance, issue 11), so every emitted event is expected exactly once across them.
    expected = totals["emitted"]
    events_unaccounted = expected - received - lost
    report = {
        "seed": seed,
        "faults": faults,
        "requests": {"sent": totals["sent"], "replied": totals["replied"], "wrong_result": totals["wrong"],
                     "failed_explicitly": failed, "timeouts": totals["timeout"],
                     "unavailable": totals["unavailable"], "rpc_errors": totals["rpc_error"],
                     "unaccounted": requests_unaccounted},
        "events": {"emitted": totals["emitted"], "deliveries_expected": expected, "received": received,
                   "reported_lost": lost, "emit_refused": totals["emit_failed"], "unaccounted": events_unaccounted},
    }
    print(json.dumps(report, indent=2))
    ok = requests_unaccounted == 0 and events_unaccounted == 0 and totals["wrong"] == 0
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
