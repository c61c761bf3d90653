"""A network partition between a service and its client, in two network namespaces (root only).

The link goes down for 10 s while one ClientProxy calls back to back (timeout 2 s). The test
checks that calls fail during the cut and that the *same* proxy answers again after it, and
prints what happened (docs/limits.md records the numbers): how many calls failed fast
(ServiceUnavailable) and how many waited out their timeout, and how long after the link came
back the proxy answered again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..netns import netns_pair, netns_skip_reason

SERVICES_DIR = Path(__file__).parent.parent / "services"

pytestmark = pytest.mark.skipif(netns_skip_reason() is not None, reason=netns_skip_reason() or "")

PARTITION = 10.0


def _serve_in(space, bind: str) -> tuple[subprocess.Popen[str], str]:
    proc = space.popen([sys.executable, "-m", "zmsg", "serve", "mathsvc:service", "--bind", bind,
                        "--allow-from", f"{space.address.rsplit('.', 1)[0]}.0/24"],
                       cwd=SERVICES_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"on (tcp://\S+) \(events", line)
        if match:
            return proc, match[1]
        if not line:
            break
    raise AssertionError("the service did not start in its namespace")


def test_a_partition_of_10_s_then_the_same_proxy_answers_again() -> None:
    with netns_pair() as (server_ns, client_ns, link):
        service, endpoint = _serve_in(server_ns, f"tcp://{server_ns.address}:0")
        client = client_ns.popen([sys.executable, str(Path(SERVICES_DIR) / "partition_client.py"), endpoint,
                                  str(PARTITION + 18), "2"], cwd=SERVICES_DIR, stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None
        calls = []

        def read_until(condition, deadline: float) -> None:
            while time.monotonic() < deadline:
                line = client.stdout.readline()
                if not line:
                    return
                calls.append(json.loads(line))
                if condition(calls[-1]):
                    return

        read_until(lambda c: c["outcome"] == "ok", time.monotonic() + 20)
        assert calls and calls[-1]["outcome"] == "ok", f"no call succeeded before the cut: {calls}"
        down_at = time.time()
        link.down()
        read_until(lambda c: c["end"] >= down_at + PARTITION, time.monotonic() + PARTITION + 5)
        up_at = time.time()
        link.up()
        read_until(lambda c: c["outcome"] == "ok" and c["start"] >= up_at, time.monotonic() + 15)
        client.kill()
        service.kill()
    failed = [c for c in calls if c["outcome"] != "ok"]
    after = [c for c in calls if c["start"] >= up_at and c["outcome"] == "ok"]
    assert after, f"the proxy did not answer again within 15 s of the link coming back: {calls[-5:]}"
    assert failed, f"no call failed during a {PARTITION} s partition"
    # Every failure belongs to the cut: it ended after the link went down and started before the
    # proxy answered again (until ZeroMQ has reconnected, calls still fail fast).
    assert all(down_at <= c["end"] and c["start"] <= after[0]["start"] for c in failed), failed
    fast = [c for c in failed if c["outcome"] == "unavailable" and c["end"] - c["start"] < 0.1]
    slow = [c for c in failed if c["outcome"] == "unavailable" and c not in fast]
    timed_out = [c for c in failed if c["outcome"] == "timeout"]
    recovered = after[0]["end"] - up_at
    waited = ", ".join(f"{c['end'] - c['start']:.1f}" for c in slow) or "-"
    print(f"\npartition {PARTITION:.0f} s, timeout 2 s: {len(fast)} call(s) failed at once, {len(slow)} failed "
          f"with ServiceUnavailable after waiting ({waited} s), {len(timed_out)} timed out; the same proxy "
          f"answered {recovered:.1f} s after the link came back")
