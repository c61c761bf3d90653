"""The observability modules' rules that need no socket: import purity, settings, log fields."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from zmsg.config import Config, ServeSettings


def test_importing_zmsg_needs_no_extra() -> None:
    # The extras are imported only by zmsg.otel / zmsg.metrics, which nothing imports by itself.
    code = ("import sys, zmsg, zmsg.serving, zmsg.cli, zmsg.logfields; zmsg.Service; zmsg.ClientProxy; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'prometheus_client')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_serve_settings_from_the_environment() -> None:
    settings = Config(environ={"ZMSG_SERVE_OTEL": "true", "ZMSG_SERVE_ACCESS_LOG": "1",
                               "ZMSG_SERVE_METRICS_BIND": "127.0.0.1:0"}).serve()
    assert settings.otel and settings.access_log and settings.metrics_bind == "127.0.0.1:0"
    assert ServeSettings().metrics_bind is None and not ServeSettings().otel and not ServeSettings().access_log


def test_metrics_bind_must_be_host_port() -> None:
    metrics = pytest.importorskip("zmsg.metrics")
    for bad in ("9100", "localhost", ":9100", "host:port"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            metrics.serve_metrics(bad)


def test_otel_instrument_refuses_other_objects() -> None:
    otel = pytest.importorskip("zmsg.otel")
    with pytest.raises(TypeError, match="Service, ClientProxy or SyncClientProxy"):
        otel.instrument(object())  # type: ignore[arg-type]


def test_json_lines_carry_the_calls_fields() -> None:
    from zmsg.logfields import CALL_FIELDS, CallFieldsFilter, call_extra
    from zmsg.serving import JsonFormatter

    formatter, fields_filter = JsonFormatter(), CallFieldsFilter()

    def line(**extra: object) -> dict[str, object]:
        record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", None, None)
        record.__dict__.update(extra)
        fields_filter.filter(record)
        return json.loads(formatter.format(record))  # type: ignore[no-any-return]

    assert "pattern" not in line()  # outside a call: nothing made up
    token = CALL_FIELDS.set({"kind": "request", "pattern": "add", "correlation_id": 7})
    try:
        inside = line()
    finally:
        CALL_FIELDS.reset(token)
    assert inside["pattern"] == "add" and inside["correlation_id"] == 7 and inside["kind"] == "request"
    after = line(**call_extra("boom", 9))
    assert after["pattern"] == "boom" and after["correlation_id"] == 9
