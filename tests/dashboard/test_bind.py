"""Loopback by default: a non-loopback listener is refused unless the operator allows it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.core.errors import ConfigError
from symphonyd.dashboard.bind import bind_tcp, from_activation
from tests.dashboard.harness import REPO


def _run(*args: str, config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    host_config = tmp_path / "symphonyd.toml"
    host_config.write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "symphonyd.dashboard", "--host-config", str(host_config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_cli_bind_outside_loopback_is_refused_with_the_proxy_advice(tmp_path: Path) -> None:
    done = _run("--host", "0.0.0.0", "--port", "0", config="", tmp_path=tmp_path)
    assert done.returncode == 78  # EX_CONFIG: systemd does not restart-loop a config error
    assert "remote_bind_refused" in done.stderr
    assert "authenticating reverse proxy" in done.stderr


def test_host_config_outside_loopback_without_the_allow_option_is_refused(tmp_path: Path) -> None:
    done = _run(config='[dashboard]\nhost = "0.0.0.0"\n', tmp_path=tmp_path)
    assert done.returncode == 78
    assert "allow_remote_bind" in done.stderr


def test_activated_socket_outside_loopback_is_refused() -> None:
    # Bound to the wildcard address but never accepting: nothing is sent anywhere.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("0.0.0.0", 0))
        sock.listen(1)
        with pytest.raises(ConfigError, match="authenticating reverse proxy"):
            from_activation({"http": [sock]}, allow_remote=False)
        listener = from_activation({"http": [sock]}, allow_remote=True)
        assert listener is not None and listener.host == "0.0.0.0"
    finally:
        sock.close()


def test_loopback_binds_and_explicit_allow_lifts_the_refusal() -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        listener = bind_tcp(host, 0, allow_remote=False)
        try:
            assert listener.port > 0 and not listener.activated
        finally:
            listener.sock.close()
    with pytest.raises(ConfigError, match="allow_remote_bind = true"):
        bind_tcp("0.0.0.0", 0, allow_remote=False)
    allowed = bind_tcp("0.0.0.0", 0, allow_remote=True)
    allowed.sock.close()
