"""Showing a bench run: a progress line while it runs, a table (or JSON) when it is done."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from zmsg.bench.runner import Progress

__all__ = ["TerminalProgress", "format_table", "format_json"]


class TerminalProgress(Progress):
    """One self-rewriting line on a terminal; a line per finished step otherwise (logs, CI)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._started = 0.0

    def begin(self, label: str, total: int) -> None:
        self._started = time.monotonic()
        if self.tty:
            self._write(f"{label}: starting")
        else:
            print(f"{label}: running", file=self.stream, flush=True)

    def update(self, label: str, done: int, total: int) -> None:
        if not self.tty:
            return
        if total:
            self._write(f"{label}: {done:,}/{total:,} ({100 * done / total:.0f}%)")
        else:
            self._write(f"{label}: {done:,} ({time.monotonic() - self._started:.1f} s)")

    def end(self, label: str, summary: str) -> None:
        line = f"{label}: {summary} [{time.monotonic() - self._started:.1f} s]"
        if self.tty:
            self._write(line)
            self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write("\r\033[K" + text)
        self.stream.flush()


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "us":
        return f"{value:,.1f}"
    if unit == "MB/s":
        return f"{value:,.0f}"
    if isinstance(value, float) and value < 100:
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _rows(entry_id: str, entry: dict[str, Any]) -> list[list[str]]:
    zres: dict[str, Any] = entry.get("zmsg") or {}
    rres: dict[str, Any] = entry.get("raw") or {}
    ratios: dict[str, float] = entry.get("ratios") or {}
    name = f"{entry_id} {entry['title']}"
    if entry["client"] != "ClientProxy":
        name += f" ({entry['client']})"
    if "error" in zres:
        return [[name, "zmsg failed (see below)", "-", "-", "-", entry["target"], "-"]]
    ok = {True: "yes", False: "NO", None: "-"}[entry.get("met")]
    rows: list[tuple[str, str, str]] = []  # (label, key, unit)
    if entry["workload"] == "W1":
        rows = [("p50 latency (us)", "p50_us", "us"), ("p99 latency (us)", "p99_us", "us"), ("calls/s", "rate", "/s")]
    elif entry["workload"] == "W2":
        rows = [("replies/s", "rate", "/s"), ("p50 latency (us)", "p50_us", "us")]
    elif entry["workload"] == "W3":
        rows = [("events/s (seen)", "rate", "/s")]
    elif entry["workload"] in ("W5", "W6"):
        rows = [("items/s", "rate", "/s")]
    else:
        rows = [("MB/s", "mb_per_s", "MB/s"), ("p50 latency (us)", "p50_us", "us")]
    out: list[list[str]] = []
    for i, (label, key, unit) in enumerate(rows):
        head = i == 0
        out.append([name if head else "", label, _fmt(zres.get(key), unit), _fmt(rres.get(key), unit),
                    _ratio(ratios.get(key)), entry["target"] if head else "", ok if head else ""])
    if entry["workload"] == "W3":
        out.append(["", "events lost", str(zres.get("lost", "-")), str(rres.get("lost", "-")), "", "= 0",
                    ("yes" if zres.get("lost") == 0 else "NO") if "lost" in zres else "-"])
    if rres and "error" in rres:
        out.append(["", "raw failed (see below)", "", "-", "", "", ""])
    return out


def _failures(report: dict[str, Any]) -> list[str]:
    notes = []
    for entry_id, entry in report["workloads"].items():
        for impl in ("zmsg", "raw"):
            res = entry.get(impl) or {}
            if "error" in res:
                notes.append(f"{entry_id} {impl}: {res['error']}")
    return notes


def format_table(report: dict[str, Any]) -> str:
    """The human-readable result table, with the machine it was measured on."""
    header = ["workload", "metric", "zmsg", "raw pyzmq", "zmsg/raw", "target", "met"]
    rows = [row for entry_id, entry in report["workloads"].items() for row in _rows(entry_id, entry)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {2, 3, 4}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells))

    m = report["machine"]
    lines = [
        f"zmsg {m['zmsg']} bench · {m['date']} · {m['nproc']} x {m['cpu']}",
        f"python {m['python']}, pyzmq {m['pyzmq']} (libzmq {m['libzmq']}), msgspec {m['msgspec']}, "
        f"client loop {m['loop']}, framing {_framing_used(report)}",
        "",
        line(header),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
    ]
    if report.get("skipped"):
        lines += ["", "skipped:", *(f"  {note}" for note in report["skipped"])]
    failures = _failures(report)
    if failures:
        lines += ["", "failures:", *(f"  {note}" for note in failures)]
    return "\n".join(lines)


def _framing_used(report: dict[str, Any]) -> str:
    seen = {(e["zmsg"].get("framing"), e["zmsg"].get("service_framing"))
            for e in report["workloads"].values() if e.get("zmsg") and "error" not in e["zmsg"]}
    if not seen:
        return str(report["machine"]["framing"])
    return ", ".join(f"{c} (client) / {s} (service)" for c, s in sorted(seen, key=str))


def format_json(report: dict[str, Any]) -> str:
    text: str = json.dumps(report, indent=2, sort_keys=False)
    return text
