"""A host name with several addresses (a Kubernetes headless service) is several instances.

Three hosts (network namespaces) serve on the same port; a fourth resolves ``svc.zmsg.test`` to
all three through its own hosts file (``/etc/netns/NAME/hosts``, which ``ip netns exec`` mounts
over /etc/hosts) and runs a client given only ``tcp://svc.zmsg.test:PORT``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
import netns_hosts  # noqa: E402

pytestmark = pytest.mark.skipif(netns_hosts.skip_reason() is not None, reason=str(netns_hosts.skip_reason()))

SERVICES_DIR = Path(__file__).parents[1] / "services"
_READY = re.compile(r"serving '[^']*' on (?P<endpoint>\S+) ")
CLIENT = """
import asyncio, json, sys
import zmsg

async def main():
    async with zmsg.ClientProxy(sys.argv[1], timeout=10) as client:
        pids = sorted({await client.send("pid") for _ in range(30)})
        print(json.dumps({"endpoints": sorted(client.endpoints), "pids": pids}), flush=True)

asyncio.run(main())
"""


def _serve(host: netns_hosts.Host, port: int) -> str:
    proc = host.popen([sys.executable, "-m", "zmsg", "serve", "mathsvc:service", "--bind", f"tcp://{host.address}:{port}",
                       "--log-level", "warning", "--insecure"], cwd=SERVICES_DIR, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        match = _READY.search(line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
            return match["endpoint"]
        if not line:
            break
    raise AssertionError(f"the service in {host.netns} did not start: {''.join(seen)}")


def test_a_name_with_three_addresses_is_three_instances() -> None:
    with netns_hosts.hosts(4) as (one, two, three, client_host):
        first = _serve(one, 0)
        port = int(first.rsplit(":", 1)[1])
        # The same port on the other two: each is a fresh namespace, so it is free there.
        endpoints = [first, _serve(two, port), _serve(three, port)]
        hosts_dir = Path("/etc/netns") / client_host.netns
        hosts_dir.mkdir(parents=True)
        try:
            (hosts_dir / "hosts").write_text(
                "127.0.0.1 localhost\n" + "".join(f"{h.address} svc.zmsg.test\n" for h in (one, two, three)))
            done = client_host.run([sys.executable, "-c", CLIENT, f"tcp://svc.zmsg.test:{port}"])
        finally:
            (hosts_dir / "hosts").unlink(missing_ok=True)
            hosts_dir.rmdir()
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["endpoints"] == sorted(endpoints)  # one peer per address, from one name
        assert len(answer["pids"]) == 3  # and requests spread over all three
