"""A client process of ``zmsg bench``: runs jobs and reports on stdout, one JSON object a line.

``python -m zmsg.bench.worker SPEC`` where SPEC is JSON: ``{"impl": "zmsg" | "sync" | "raw" | "raw-async",
"endpoint": ..., "events_endpoint": ..., "jobs": [Job, ...]}``. Lines are
``{"event": "progress", "job": i, "done": n, "total": n}``, ``{"event": "result", "job": i,
"result": {...}}`` or ``{"event": "error", "job": i, "message": ...}``. Each client runs in its own
process so that it never shares a CPU-bound interpreter with the service or the orchestrator,
and so that ``ZMSG_NO_EXTENSIONS`` applies to it as it would to a user's process.
"""

from __future__ import annotations

import gc
import json
import sys
from typing import Any

from zmsg.bench.workloads import Job

__all__ = ["main", "drive", "prepare"]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _progress(index: int) -> Any:
    return lambda done, total: _emit({"event": "progress", "job": index, "done": done, "total": total})


def _client_info(impl: str) -> dict[str, Any]:
    from zmsg import _framing

    info: dict[str, Any] = {"framing": "raw" if impl.startswith("raw") else _framing.IMPLEMENTATION}
    if impl in ("zmsg", "raw-async"):
        from zmsg.runtime import uvloop_available

        info["loop"] = "uvloop" if uvloop_available() else "asyncio"
    return info


def prepare(impl: str) -> None:
    """Set up a client process as README's performance notes tell one moving large payloads to
    (``zmsg serve`` does it for the service); the raw baseline is left as pyzmq programs are."""
    if not impl.startswith("raw"):
        from zmsg import tune_allocator

        tune_allocator()


def drive(impl: str, job: Job, endpoint: str, events_endpoint: str | None = None,
          progress: Any = None) -> dict[str, Any]:
    """Run one job in this process with client ``impl`` ("zmsg", "sync", "raw", "raw-async")."""
    if impl == "raw":
        from zmsg.bench import raw

        return raw.run_job(job, endpoint, events_endpoint, progress)
    if impl == "raw-async":
        from zmsg.bench import raw

        return raw.run_async_job(job, endpoint)
    from zmsg.bench import zclient

    if impl == "sync":
        return zclient.run_sync_job(job, endpoint, progress)
    from zmsg.runtime import run as run_loop

    return run_loop(zclient.run_job(job, endpoint, progress))


def run(spec: dict[str, Any]) -> int:
    impl = spec["impl"]
    prepare(impl)
    endpoint = spec["endpoint"]
    jobs = [Job(**job) for job in spec["jobs"]]
    failed = 0
    for index, job in enumerate(jobs):
        gc.collect()
        try:
            result = drive(impl, job, endpoint, spec.get("events_endpoint"), _progress(index))
        except Exception as exc:  # reported to the orchestrator, which shows it per workload
            failed += 1
            _emit({"event": "error", "job": index, "message": f"{type(exc).__name__}: {exc}"})
            continue
        result.update(_client_info(impl))
        _emit({"event": "result", "job": index, "result": result})
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m zmsg.bench.worker SPEC_JSON", file=sys.stderr)
        return 2
    return run(json.loads(args[0]))


if __name__ == "__main__":
    sys.exit(main())
