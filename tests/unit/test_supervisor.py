"""What ``zmsg serve --workers`` refuses before starting anything, and its listening sockets."""

from __future__ import annotations

import pytest

from zmsg.config import ServeSettings
from zmsg.errors import ConfigError
from zmsg.workers import Supervisor


@pytest.mark.parametrize(("settings", "match"), [
    (ServeSettings(app="m:s", bind="ipc:///tmp/x"), "tcp:// bind"),
    (ServeSettings(app="m:s", bind="tcp://127.0.0.1:0", events_bind="tcp://127.0.0.1:7000"), "events-bind"),
])
def test_worker_settings_that_cannot_work_are_refused(settings: ServeSettings, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Supervisor(settings, 2)


def test_each_worker_gets_its_own_listening_port_the_first_the_asked_one() -> None:
    supervisor = Supervisor(ServeSettings(app="m:s", bind="tcp://127.0.0.1:0"), 3)
    try:
        ports = [w.listener.getsockname()[1] for w in supervisor.workers]
        assert len(set(ports)) == 3 and all(ports)
        assert supervisor.instances == [f"tcp://127.0.0.1:{p}" for p in ports]
        taken = ports[0]
        with pytest.raises(ConfigError, match="cannot bind"):
            Supervisor(ServeSettings(app="m:s", bind=f"tcp://127.0.0.1:{taken}"), 2)
    finally:
        supervisor.close()
