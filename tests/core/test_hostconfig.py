"""Host config /etc/symphony/symphonyd.toml: parse, defaults, refusals, loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from symphonyd.core.config import build_service_config
from symphonyd.core.errors import ConfigError
from symphonyd.core.hostconfig import (
    DashboardBind,
    HostConfig,
    apply_host_overrides,
    is_loopback_host,
    parse_host_config,
)
from symphonyd.core.workflow import WorkflowDefinition
from symphonyd.runtime import hostconfig_file
from symphonyd.runtime.hostconfig_file import load_host_config

FULL = """
workflow = "/srv/symphony/WORKFLOW.md"
log_level = "DEBUG"

[paths]
state_dir = "/srv/state"
runtime_dir = "/run/sym"
audit_dir = "/srv/audit"
workspace_root = "/srv/ws"

[dashboard]
host = "::1"
port = 4100

[tracker]
credential = "linear.token"
"""


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_host_config(text)
    return info.value


def test_empty_file_gives_the_documented_defaults() -> None:
    config, warnings = parse_host_config("")
    assert warnings == ()
    assert config == HostConfig()
    assert config.workflow_path == "/etc/symphony/WORKFLOW.md"
    assert config.state_dir == "/var/lib/symphony"
    assert config.runtime_dir == "/run/symphony"
    assert config.audit_dir == "/var/lib/symphony/audit"
    assert config.workspace_root is None
    assert config.log_level == "info"
    assert config.dashboard == DashboardBind("127.0.0.1", 4000, allow_remote_bind=False)
    assert config.tracker_credential == "tracker"


def test_every_key_is_read() -> None:
    config, warnings = parse_host_config(FULL)
    assert warnings == ()
    assert config == HostConfig(
        workflow_path="/srv/symphony/WORKFLOW.md",
        log_level="debug",
        state_dir="/srv/state",
        runtime_dir="/run/sym",
        audit_dir="/srv/audit",
        workspace_root="/srv/ws",
        dashboard=DashboardBind("::1", 4100, allow_remote_bind=False),
        tracker_credential="linear.token",
    )


def test_unknown_keys_warn_but_unknown_sections_fail() -> None:
    _, warnings = parse_host_config('colour = "blue"\n[dashboard]\ntheme = "dark"\n')
    assert warnings == ("colour: unknown key ignored", "dashboard.theme: unknown key ignored")
    err = error("[dashbord]\nport = 1\n")
    assert "dashbord" in err.message and "unknown section" in err.message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("workflow = 3", "workflow"),
        ('workflow = "relative/WORKFLOW.md"', "workflow"),
        ('log_level = "loud"', "log_level"),
        ('[paths]\nstate_dir = "var/lib"', "paths.state_dir"),
        ('[paths]\nworkspace_root = ""', "paths.workspace_root"),
        ('[dashboard]\nport = "http"', "dashboard.port"),
        ("[dashboard]\nport = 70000", "dashboard.port"),
        ('[dashboard]\nallow_remote_bind = "yes"', "dashboard.allow_remote_bind"),
        ('[dashboard]\nhost = ""', "dashboard.host"),
        ('[tracker]\ncredential = "../etc/shadow"', "tracker.credential"),
        ("paths = 1", "paths"),
    ],
)
def test_bad_values_are_typed_errors_naming_the_key(text: str, field: str) -> None:
    err = error(text)
    assert err.message.startswith(field), err.message
    assert err.error_code == "invalid_config"


def test_invalid_toml_is_a_parse_error() -> None:
    assert error("[paths\n").error_code == "host_config_parse_error"


def test_remote_dashboard_bind_needs_explicit_permission() -> None:
    err = error('[dashboard]\nhost = "0.0.0.0"\n')
    assert "allow_remote_bind" in err.message
    config, _ = parse_host_config('[dashboard]\nhost = "0.0.0.0"\nallow_remote_bind = true\n')
    assert config.dashboard.host == "0.0.0.0" and config.dashboard.allow_remote_bind


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.2", False),
        ("example.com", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_host_workspace_root_overrides_the_workflow() -> None:
    service = build_service_config(
        WorkflowDefinition({"workspace": {"root": "/from/workflow"}}, ""), env={}, workflow_dir="/"
    )
    assert apply_host_overrides(service, HostConfig()) is service
    moved = apply_host_overrides(service, HostConfig(workspace_root="/srv/ws"))
    assert moved.workspace.root == "/srv/ws"
    assert moved.workspace.cleanup == service.workspace.cleanup


def test_load_explicit_file(tmp_path: Path) -> None:
    path = tmp_path / "symphonyd.toml"
    path.write_text("extra = 1\n" + FULL)
    loaded = load_host_config(path)
    assert loaded.path == path
    assert loaded.config.dashboard.port == 4100
    assert loaded.warnings == ("extra: unknown key ignored",)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_host_config(tmp_path / "absent.toml")
    assert info.value.error_code == "missing_host_config"


def test_missing_default_file_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hostconfig_file, "DEFAULT_HOST_CONFIG_PATH", tmp_path / "none.toml")
    loaded = load_host_config()
    assert loaded.path is None and loaded.config == HostConfig()


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('log_level = "shouty"\n')
    with pytest.raises(ConfigError) as info:
        load_host_config(path)
    assert str(path) in info.value.message and "log_level" in info.value.message


def test_oversized_and_binary_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (300 * 1024))
    with pytest.raises(ConfigError, match="larger than"):
        load_host_config(big)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"log_level = \xff\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_host_config(binary)


def test_sandbox_section_is_host_only_and_validated() -> None:
    from symphonyd.core.hostconfig import parse_host_config

    config, warnings = parse_host_config(
        '[sandbox]\nlocal_services = ["demo.local:18080"]\naddress_pool = "10.77.0.0/16"\n'
    )
    assert config.sandbox.enabled and config.sandbox.local_services == ("demo.local:18080",)
    assert config.sandbox.address_pool == "10.77.0.0/16" and warnings == ()
    for bad in ('address_pool = "nope"', "enabled = 3", "local_services = 1"):
        with pytest.raises(ConfigError):
            parse_host_config(f"[sandbox]\n{bad}\n")


def test_sandbox_intercept_is_on_by_default_and_can_be_turned_off() -> None:
    from symphonyd.core.hostconfig import parse_host_config

    assert parse_host_config("")[0].sandbox.intercept
    assert not parse_host_config("[sandbox]\nintercept = false\n")[0].sandbox.intercept
    with pytest.raises(ConfigError):
        parse_host_config('[sandbox]\nintercept = "no"\n')


def test_sandbox_egress_limits_are_read_and_bounded() -> None:
    from symphonyd.core.hostconfig import parse_host_config
    from symphonyd.launcher.sandbox.egress_limits import EgressLimits

    default, _ = parse_host_config("")
    assert EgressLimits.from_host(default.sandbox) == EgressLimits()
    config, warnings = parse_host_config(
        "[sandbox]\nmax_proxy_connections = 16\ntunnel_idle_timeout = 900\n"
        "tunnel_max_lifetime = 14400\nmax_dns_tcp_connections = 2\ndns_upstream_inflight = 4\n"
        "dns_cache_entries = 0\naudit_interval = 30\naudit_full_records = 10\n"
    )
    assert warnings == ()
    assert EgressLimits.from_host(config.sandbox) == EgressLimits(
        proxy_connections=16,
        tunnel_idle_s=900.0,
        tunnel_lifetime_s=14400.0,
        dns_tcp_connections=2,
        dns_upstream_inflight=4,
        dns_cache_entries=0,
        audit_interval_s=30.0,
        audit_full_records=10,
    )
    for bad in ("max_proxy_connections = 0", 'tunnel_idle_timeout = "5m"', "audit_interval = 0"):
        with pytest.raises(ConfigError) as info:
            parse_host_config(f"[sandbox]\n{bad}\n")
        assert info.value.message.startswith("sandbox." + bad.split(" ")[0]), info.value.message


@pytest.mark.parametrize(
    ("value", "size"),
    [(None, 256 << 20), ('"64M"', 64 << 20), ('"1G"', 1 << 30), ("1048576", 1 << 20)],
)
def test_shm_size_is_a_size_with_a_default(value: str | None, size: int) -> None:
    text = "" if value is None else f"[sandbox]\nshm_size = {value}\n"
    config, warnings = parse_host_config(text)
    assert config.sandbox.shm_bytes == size and warnings == ()


@pytest.mark.parametrize("value", ['"0"', '"512K"', '"65G"', '"1T"', '"big"', "true", "-1"])
def test_bad_shm_size_is_a_typed_error(value: str) -> None:
    err = error(f"[sandbox]\nshm_size = {value}\n")
    assert err.message.startswith("sandbox.shm_size"), err.message
    assert err.error_code == "invalid_config"
