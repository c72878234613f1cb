"""Suite-wide test policy.

Tests marked ``root`` need root (namespaces, nftables, uid switching) and tests marked
``agents`` need the pinned codex / claude binaries. A developer without them sees a skip;
under CI (``CI=true``) every skip is turned into a failure, because a skipped security test
is a broken promise, not a pass.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Generator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI") == "true"
AGENTS_DIR = Path(os.environ.get("SYMPHONY_AGENTS_DIR", "/opt/symphony-agents"))
CLONE_NEWNET = 0x40000000


def _own_network_namespace() -> None:
    """A root test run gets a network namespace of its own, made before any thread exists.

    The sandbox tests build on "the host's" network what a launcher builds there: the
    ``inet symphonyd`` nftables table, ``symv<N>`` veth ends, routes. In a namespace of this
    run's own, two runs on one machine (CI beside a developer, two branches) cannot see or
    delete each other's, and the machine's real firewall and interfaces are never touched.
    Every later thread and child inherits it. ``SYMPHONY_TEST_HOST_NETWORK=1`` opts out.
    """
    if os.geteuid() != 0 or os.environ.get("SYMPHONY_TEST_HOST_NETWORK") == "1":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot make the test run's network namespace: {os.strerror(err)}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


_own_network_namespace()


def agent_binary(name: str) -> str | None:
    """Path of the pinned ``codex`` or ``claude`` CLI, or None when not installed."""
    candidate = AGENTS_DIR / "node_modules" / ".bin" / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        if "root" in item.keywords and not is_root:
            item.add_marker(pytest.mark.skip(reason="needs root (CI runs this as root)"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is not allowed: {report.longrepr}"
