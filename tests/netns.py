"""Network namespaces for tests that need a real network between two hosts (root only).

``netns_pair()`` makes two namespaces joined by a veth pair (``10.231.N.1`` and ``10.231.N.2``
on a /24), each with its loopback up; ``Netns.popen`` runs a process inside one, and
``Link.down()`` / ``up()`` cut and restore the wire. Everything is deleted on exit, also when the
test fails: deleting a namespace removes its end of the veth pair, and the other end with it.
Tests skip with ``netns_skip_reason()`` when not root or without ``ip``.

Reusable for any multi-host scenario (``netns_group(n)`` joins n namespaces on one bridge).
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

__all__ = ["Netns", "Link", "netns_pair", "netns_group", "netns_skip_reason"]

_counter = itertools.count()


def netns_skip_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@dataclass
class Netns:
    """One namespace; ``address`` is its address on the shared link."""

    name: str
    address: str
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside this namespace (killed when the namespace is deleted)."""
        proc: subprocess.Popen[Any] = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], **kwargs)


@dataclass
class Link:
    """The wire between namespaces: the interface ``device`` inside ``netns``."""

    netns: str
    device: str

    def down(self) -> None:
        _ip("-n", self.netns, "link", "set", self.device, "down")

    def up(self) -> None:
        _ip("-n", self.netns, "link", "set", self.device, "up")


def _base() -> str:
    # Interface names are at most 15 characters: keep everything short and unique per process.
    return f"zm{os.getpid() % 100000}{next(_counter)}"


def _cleanup(spaces: list[Netns], extra_links: list[str]) -> None:
    for space in spaces:
        for proc in space.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    for link in extra_links:
        subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)
    for space in spaces:
        subprocess.run(["ip", "netns", "del", space.name], capture_output=True, timeout=10)


@contextmanager
def netns_pair(subnet: int | None = None) -> Iterator[tuple[Netns, Netns, Link]]:
    """Two namespaces on one veth pair: (first, second, the link as seen from the first)."""
    base = _base()
    subnet = subnet if subnet is not None else (os.getpid() + next(_counter)) % 250 + 1
    first = Netns(f"{base}a", f"10.231.{subnet}.1")
    second = Netns(f"{base}b", f"10.231.{subnet}.2")
    spaces: list[Netns] = []
    try:
        for space in (first, second):
            _ip("netns", "add", space.name)
            spaces.append(space)
            _ip("-n", space.name, "link", "set", "lo", "up")
        _ip("link", "add", f"{base}x", "type", "veth", "peer", "name", f"{base}y")
        _ip("link", "set", f"{base}x", "netns", first.name)
        _ip("link", "set", f"{base}y", "netns", second.name)
        for space, device in ((first, f"{base}x"), (second, f"{base}y")):
            _ip("-n", space.name, "addr", "add", f"{space.address}/24", "dev", device)
            _ip("-n", space.name, "link", "set", device, "up")
        yield first, second, Link(first.name, f"{base}x")
    finally:
        _cleanup(spaces, [f"{base}x"])


@contextmanager
def netns_group(count: int, subnet: int | None = None) -> Iterator[tuple[list[Netns], list[Link]]]:
    """``count`` namespaces on one bridge in the root namespace (hosts 10.231.S.1 .. .count);
    ``links[i]`` is namespace i's wire (down() cuts that host off from all the others)."""
    base = _base()
    subnet = subnet if subnet is not None else (os.getpid() + next(_counter)) % 250 + 1
    bridge = f"{base}br"
    spaces: list[Netns] = []
    links: list[Link] = []
    host_ends: list[str] = [bridge]
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("link", "set", bridge, "up")
        for index in range(count):
            space = Netns(f"{base}n{index}", f"10.231.{subnet}.{index + 1}")
            _ip("netns", "add", space.name)
            spaces.append(space)
            _ip("-n", space.name, "link", "set", "lo", "up")
            inside, outside = f"{base}i{index}", f"{base}o{index}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            host_ends.append(outside)
            _ip("link", "set", inside, "netns", space.name)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", space.name, "addr", "add", f"{space.address}/24", "dev", inside)
            _ip("-n", space.name, "link", "set", inside, "up")
            links.append(Link(space.name, inside))
        yield spaces, links
    finally:
        _cleanup(spaces, host_ends)
