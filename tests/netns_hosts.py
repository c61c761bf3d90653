"""Several "hosts" on one machine: network namespaces on a bridge, for multi-host tests (root only).

``hosts(n)`` creates n namespaces, each with a veth into one bridge in the root namespace, and
gives the bridge an address too, so the test process itself is a further host that reaches them
all. ``Host.cut()`` takes that host's bridge port down: every packet to and from it is lost,
and the other hosts (this process included) see nothing but silence, as with a pulled cable
behind a switch (their own links stay up, so only heartbeats can tell). ``Host.heal()`` undoes
it (``tc netem loss 100%`` would do as well where the sch_netem module is available).
Everything (processes, namespaces, interfaces) is removed on exit, also when the test fails.
One module, so that the multi-host fixtures of the suite can be unified in one place.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Host", "hosts", "skip_reason"]

_serial = itertools.count()


def skip_reason() -> str | None:
    """Why these tests cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns)"
    if shutil.which("ip") is None:
        return "needs the 'ip' command (iproute2)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        return f"ip netns does not work here: {probe.stderr.strip()}"
    return None


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


@dataclass
class Host:
    """One namespace: its address on the bridge, its two veth ends, the processes started in it."""

    netns: str
    address: str
    inside: str  # the veth end in the namespace
    outside: str  # the end on the bridge, in the root namespace
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    is_cut: bool = False

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc: subprocess.Popen[Any] = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion inside this namespace (bounded), capturing its output."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True,
                              timeout=timeout)

    def cut(self) -> None:
        """Lose every packet to and from this host, as a pulled cable or a dead switch port would."""
        _run("ip", "link", "set", self.outside, "down")
        self.is_cut = True

    def heal(self) -> None:
        _run("ip", "link", "set", self.outside, "up")
        self.is_cut = False


@contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    """``count`` hosts 10.232.S.1 .. .count on a bridge; this process is 10.232.S.254."""
    tag = f"z{os.getpid() % 10000}{next(_serial)}"  # interface names: 15 characters at most
    subnet = (os.getpid() + next(_serial)) % 200 + 20
    bridge = f"{tag}br"
    made: list[Host] = []
    try:
        _run("ip", "link", "add", bridge, "type", "bridge")
        _run("ip", "addr", "add", f"10.232.{subnet}.254/24", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        for index in range(count):
            host = Host(f"{tag}h{index}", f"10.232.{subnet}.{index + 1}", f"{tag}i{index}", f"{tag}o{index}")
            _run("ip", "netns", "add", host.netns)
            made.append(host)
            _run("ip", "-n", host.netns, "link", "set", "lo", "up")
            _run("ip", "link", "add", host.outside, "type", "veth", "peer", "name", host.inside)
            _run("ip", "link", "set", host.inside, "netns", host.netns)
            _run("ip", "link", "set", host.outside, "master", bridge)
            _run("ip", "link", "set", host.outside, "up")
            _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", host.inside)
            _run("ip", "-n", host.netns, "link", "set", host.inside, "up")
        yield made
    finally:
        for host in made:
            for proc in host.procs:
                if proc.poll() is None:
                    proc.kill()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
        for host in made:
            subprocess.run(["ip", "link", "del", host.outside], capture_output=True, timeout=10)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=10)
