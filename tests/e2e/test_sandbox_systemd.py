"""The sandbox escape suite through the systemd enforcer, under a real systemd (PID 1).

The host here has no systemd as PID 1, so tests/sandbox only exercises bubblewrap on it.
This test boots one nspawn container with the repository mounted read-only and runs the same
escape tests there, where tests/sandbox/conftest.py picks the ``systemd`` enforcer: every
probe is a ``systemd-run`` transient unit rendered by systemd_unit.py (docs/design/0807).
One boot serves the whole run; the junit report proves what ran, under which enforcer.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from devtools.nspawn import Container
from tests.sandbox.conftest import AGENT_UID

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SRC = "/src"
VENDOR = "/srv/vendor"
ESCAPE_SUITE = (
    "test_fs_escape.py",
    "test_network_escape.py",
    "test_fail_closed.py",
    "test_direct_ports.py",
    "test_resource_limits.py",
    "test_instance_cleanup.py",
    "test_sandbox_isolation.py",
)
# Tests that must have run (and passed) under systemd; a rename here must be deliberate.
REQUIRED = (
    "test_secrets_are_unreadable",
    "test_only_own_workspace_is_visible",
    "test_git_metadata_is_read_only",
    "test_workspace_is_writable",
    "test_host_shared_memory_is_invisible",
    "test_host_unix_sockets_under_run_are_out_of_reach",
    "test_other_agents_processes_are_out_of_reach",
    "test_agent_identity_is_unprivileged",
    "test_allowed_name_works_over_https_and_http",
    "test_proxy_denies",
    "test_sni_must_equal_connect_host",
    "test_direct_connections_have_no_route",
    "test_direct_connections_on_allowed_ports_reach_only_the_proxy",
    "test_direct_dns_to_upstream_is_dropped",
    "test_dns_answers_only_allowlisted_names",
    "test_ipv6_is_unusable",
    "test_other_agents_proxy_and_resolver_are_unreachable",
    "test_host_services_are_unreachable",
    "test_teardown_removes_processes_rules_and_interfaces",
    "test_restart_kills_a_crashed_launchers_agent_that_shed_its_environment",
    "test_another_instances_agents_survive_startup_cleanup",
    "test_control_user_namespaces_work_outside",
    "test_user_namespaces_cannot_be_made_in_the_sandbox",
    "test_posix_shared_memory_works",
    "test_shared_memory_is_capped_per_sandbox_from_the_host_config",
    "test_spawn_uses_the_agent_namespace",
    "test_fork_bomb_is_capped_by_tasks_max",
    "test_launcher_refuses_units_where_limits_do_not_hold",
    "test_memory_hog_is_killed_at_memory_max",
)


def test_escape_suite_passes_through_transient_units(tmp_path: Path) -> None:
    with Container(tmp_path, binds_ro=[(REPO, SRC)]) as c:
        # systemd needs the agent's User= to exist (bubblewrap's setpriv does not).
        c.run(["groupadd", "--gid", str(AGENT_UID), "symtest-agent"])
        ids = ["--uid", str(AGENT_UID), "--gid", str(AGENT_UID)]
        c.run(
            ["useradd", *ids, "--no-create-home", "--shell", "/usr/sbin/nologin", "symtest-agent"]
        )
        # python-liquid is not in Debian 12; the package vendors these wheels (debian/rules),
        # and the launcher's own modules (service, __main__) import it.
        c.run(
            [
                "sh",
                "-c",
                f"for w in {SRC}/packaging/vendor/*.whl; "
                f'do python3 -m zipfile -e "$w" {VENDOR}; done',
            ]
        )
        run = c.run(
            [
                "sh",
                "-c",
                f'cd {SRC} && exec "$@"',
                "sh",
                "env",
                "CI=true",
                "PYTHONDONTWRITEBYTECODE=1",
                f"PYTHONPATH={VENDOR}",
                "SYMPHONY_SANDBOX_ENFORCERS=systemd",
                "python3",
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "--junitxml=/srv/junit.xml",
                *(f"tests/sandbox/{name}" for name in ESCAPE_SUITE),
            ],
            check=False,
            timeout=900,
        )
        report = c.root / "srv" / "junit.xml"
        assert report.exists(), run.stdout[-4000:] + run.stderr[-4000:]
        suite = ET.parse(report).getroot().find("testsuite")
        assert suite is not None
        cases = suite.findall("testcase")
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary
    for key in ("failures", "errors"):
        assert suite.get(key) == "0", (key, summary)
    # Nothing skipped, nothing expected to fail: a limit the host cannot enforce is a test
    # that the launcher detects it and refuses (test_resource_limits.py).
    assert suite.get("skipped") == "0", summary
    assert not [c.get("name") for c in cases if c.find("skipped") is not None], summary
    # Tests with a launcher carry its enforcer in their id: [systemd] or [systemd-...].
    names = [case.get("name", "") for case in cases]
    ran = {name.split("[", 1)[0] for name in names if "[systemd" in name}
    assert set(REQUIRED) <= ran, set(REQUIRED) - ran
