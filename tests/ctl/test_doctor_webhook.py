"""``symphonyctl doctor`` on the optional webhook receiver: quiet until enabled, then live or
why not, from ``systemctl show``'s properties."""

from __future__ import annotations

from symphonyd.ctl.doctor_units import RECEIVER_SERVICE, RECEIVER_SOCKET, receiver_checks

LOADED = {"LoadState": "loaded"}


def _states(props: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    return [(c.name, c.status) for c in receiver_checks(props)]


def test_not_enabled_is_one_ok_line() -> None:
    props = {RECEIVER_SOCKET: {**LOADED, "ActiveState": "inactive", "SubState": "dead"}}
    assert _states(props) == [("webhook receiver", "ok")]


def test_listening_socket_and_idle_service_are_live() -> None:
    props = {
        RECEIVER_SOCKET: {**LOADED, "ActiveState": "active", "SubState": "listening"},
        RECEIVER_SERVICE: {**LOADED, "ActiveState": "inactive", "SubState": "dead"},
    }
    assert _states(props) == [(RECEIVER_SOCKET, "ok"), (RECEIVER_SERVICE, "ok")]


def test_a_service_that_refused_its_config_fails_with_the_cause() -> None:
    props = {
        RECEIVER_SOCKET: {**LOADED, "ActiveState": "active", "SubState": "listening"},
        RECEIVER_SERVICE: {**LOADED, "ActiveState": "failed", "SubState": "failed",
                           "Result": "exit-code", "ExecMainCode": "1", "ExecMainStatus": "78"},
    }  # fmt: skip
    checks = receiver_checks(props)
    assert [c.status for c in checks] == ["ok", "fail"]
    assert "78/CONFIG" in checks[1].detail
