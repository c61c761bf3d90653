"""The request pipeline end to end: metadata, middleware on both sides, exception handlers and
typed replies, against ``billing.py`` served by ``zmsg serve`` in its own process.

Run it from anywhere: ``python examples/pipeline/main.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from billing import Invoice

import zmsg

HERE = Path(__file__).parent
_traces = itertools.count(1)


def start_service() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zmsg", "serve", "billing:service", "--bind", "tcp://127.0.0.1:0"],
        cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r" on (tcp://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.wait()
    raise SystemExit("the billing service did not start")


async def add_trace_id(call: zmsg.Call, call_next: Any) -> Any:
    """Client middleware: every request and event carries a trace id the service logs."""
    call.metadata["trace-id"] = f"trace-{next(_traces)}"
    return await call_next()


async def main(endpoint: str) -> None:
    # The token is a proxy default: every call sends it, and a call's own metadata wins.
    async with zmsg.ClientProxy(endpoint, metadata={"authorization": "Bearer s3cret"},
                                middleware=[add_trace_id]) as billing:
        invoice = await billing.send({"cmd": "get_invoice"}, 1, response_type=Invoice)
        print("typed reply:", invoice)  # an Invoice, for the type checker too
        print("whoami:", await billing.send({"cmd": "whoami"}))
        try:
            await billing.send({"cmd": "get_invoice"}, 99)
        except zmsg.RpcException as exc:
            print("exception handler:", exc.error)
        try:
            await billing.send({"cmd": "whoami"}, metadata={"authorization": "Bearer wrong"})
        except zmsg.RpcException as exc:
            print("guard:", exc.error)
        await billing.emit("invoice_paid", 2)

    with zmsg.SyncClientProxy(endpoint, metadata={"authorization": "Bearer s3cret"}) as sync_billing:
        print("sync typed reply:", sync_billing.send({"cmd": "get_invoice"}, 2, response_type=Invoice))


if __name__ == "__main__":
    proc, endpoint = start_service()
    try:
        asyncio.run(main(endpoint))
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=15)
        timed = [line for line in output.splitlines() if " took " in line]
        example = timed[0].split("billing: ", 1)[-1] if timed else "-"
        print(f"service log: {len(timed)} timed calls, e.g. {example}")
