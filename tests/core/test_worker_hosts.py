"""The host config's [worker] section (docs/design/1100-worker-hosts.md)."""

from __future__ import annotations

import pytest

from symphonyd.core.errors import ConfigError
from symphonyd.core.hostconfig import parse_host_config
from symphonyd.core.worker_hosts import WorkerHost, WorkerHosts


def test_no_section_means_no_worker_hosts() -> None:
    config, warnings = parse_host_config("")
    assert config.worker == WorkerHosts() and config.worker.hosts == () and warnings == ()


def test_hosts_and_settings() -> None:
    config, warnings = parse_host_config(
        "[worker]\nmax_concurrent_agents_per_host = 2\nlease_seconds = 40\nextra = 1\n"
        '[[worker.hosts]]\nname = "w1"\naddress = "198.18.0.2"\n'
        '[[worker.hosts]]\nname = "w-2"\naddress = "2001:db8::2"\nport = 2222\ncolour = "red"\n'
    )
    assert config.worker.hosts == (
        WorkerHost("w1", "198.18.0.2", 22),
        WorkerHost("w-2", "2001:db8::2", 2222),
    )
    assert config.worker.max_concurrent_agents_per_host == 2
    assert config.worker.lease_seconds == 40
    assert config.worker.host("w-2") == config.worker.hosts[1]
    assert warnings == (
        "worker.extra: unknown key ignored",
        "worker.hosts[1].colour: unknown key ignored",
    )


@pytest.mark.parametrize(
    ("text", "runs_local"),
    [
        ("", True),  # no hosts: everything runs here, as before
        ('[[worker.hosts]]\nname = "w1"\naddress = "198.18.0.2"\n', False),
        ('[worker]\nlocal = true\n[[worker.hosts]]\nname = "w1"\naddress = "198.18.0.2"\n', True),
    ],
)
def test_the_local_launcher_takes_runs_only_when_no_host_is_listed_or_asked(
    text: str, runs_local: bool
) -> None:
    config, _ = parse_host_config(text)
    assert config.worker.runs_local is runs_local


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[worker.hosts]]\nname = "W1"\naddress = "198.18.0.2"\n', "worker.hosts[0].name"),
        ('[[worker.hosts]]\nname = "a/b"\naddress = "198.18.0.2"\n', "worker.hosts[0].name"),
        ('[[worker.hosts]]\nname = "w1"\naddress = "w1.example"\n', "worker.hosts[0].address"),
        ('[[worker.hosts]]\nname = "w1"\n', "worker.hosts[0].address"),
        (
            '[[worker.hosts]]\nname = "w1"\naddress = "198.18.0.2"\nport = 0\n',
            "worker.hosts[0].port",
        ),
        (
            '[[worker.hosts]]\nname = "w1"\naddress = "198.18.0.2"\n'
            '[[worker.hosts]]\nname = "w1"\naddress = "198.18.0.3"\n',
            "worker.hosts[1].name",
        ),
        ('[worker]\nhosts = "w1"\n', "worker.hosts"),
        ("[worker]\nmax_concurrent_agents_per_host = 0\n", "worker.max_concurrent_agents_per_host"),
        ('[worker]\nssh_user = "root; id"\n', "worker"),
        ('[worker]\nssh_key_credential = "../key"\n', "worker.ssh_key_credential"),
        ('[worker]\nknown_hosts = "relative"\n', "worker.known_hosts"),
        ('[worker]\nlocal = "yes"\n', "worker.local"),
        ("[worker]\nlocal = false\n", "worker.local"),
        ('[[worker.hosts]]\nname = "local"\naddress = "198.18.0.2"\n', "worker.hosts[0].name"),
    ],
)
def test_bad_values_are_typed_errors(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_host_config(text)
    assert caught.value.details["field"] == where
