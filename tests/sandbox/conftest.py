"""The escape suite's world: a small internet in a network namespace, and a live launcher.

The launcher comes in one flavour per enforcer (docs/design/0807): ``bwrap`` where systemd is
not PID 1 (the host) and ``systemd``, a real transient unit, where it is (the nspawn container
that tests/e2e/test_sandbox_systemd.py boots). Tests spawn through :meth:`Launcher.spawn` and
:func:`run_probe`, so one test body runs on both; ``SYMPHONY_SANDBOX_ENFORCERS=bwrap,systemd``
overrides the choice.

Everything is created by the fixtures and removed in their finalizers: the ``symtest-inet``
namespace and its veth, the routes to 198.18.1.0/24, the ``inet symphonyd`` table, every
``symv*`` interface, the fake servers, and /etc/symphony if the suite had to create it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.launcher.sandbox import bwrap, systemd_unit
from symphonyd.launcher.sandbox.addresses import AddressPool
from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.egress_policy import EgressPolicy, build_policy
from symphonyd.launcher.sandbox.fs_view import FsView, build_fs_view
from symphonyd.launcher.sandbox.manager import RUN_DIR, SandboxHandle, SandboxManager
from symphonyd.launcher.sandbox.nft import Firewall

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
# Named namespaces live in /run/netns, shared by every run on the machine: one name a run.
INET_NS = f"symtest-inet-{os.getpid()}"
UPSTREAM = ("198.18.1.53", 53)
AGENT_UID = 64123
AGENT_GID = 64123
TEST_POOL = "100.127.0.0/22"
# Generous enough for python3 and its probes; tests of the limits themselves pass tighter ones.
TEST_RESOURCES = ResourcesConfig(memory_max="512M", tasks_max=64, cpu_quota="100%")


def _enforcers() -> list[str]:
    chosen = os.environ.get("SYMPHONY_SANDBOX_ENFORCERS")
    if chosen:
        return [e.strip() for e in chosen.split(",") if e.strip()]
    # The launcher's own test (agent_sandbox.systemd_is_pid1), inlined to keep imports small.
    return ["systemd"] if os.path.isdir("/run/systemd/system") else ["bwrap"]


ENFORCERS = _enforcers()
_unit_serial = itertools.count()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.enforcer("systemd")`` keeps a test to the named enforcers: the other
    variants are deselected (not skipped, which CI treats as failure)."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        only = item.get_closest_marker("enforcer")
        callspec = getattr(item, "callspec", None)
        chosen = callspec.params.get("launcher") if callspec else None
        (drop if only and chosen not in only.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


class LoopThread:
    """An asyncio loop on its own thread: the launcher's servers keep running between calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def make_ca(directory: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "symphonyd test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("allowed.test", "denied.test", "registry.npm.test", "pypi.test"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return directory / "ca.pem"


@dataclass
class Internet:
    workdir: Path
    ca: Path

    @property
    def dns_log(self) -> list[str]:
        path = self.workdir / "dns.log"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="session")
def internet(tmp_path_factory: pytest.TempPathFactory) -> Generator[Internet, None, None]:
    workdir = tmp_path_factory.mktemp("inet")
    ca = make_ca(workdir)
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    proc: subprocess.Popen[bytes] | None = None
    try:
        sh("ip", "netns", "add", INET_NS)
        sh("ip", "link", "add", "symti0", "type", "veth", "peer", "name", "eth0", "netns", INET_NS)
        sh("ip", "addr", "add", "198.18.0.1/30", "dev", "symti0")
        sh("ip", "link", "set", "symti0", "up")
        ns = ("ip", "netns", "exec", INET_NS)
        sh(*ns, "ip", "link", "set", "lo", "up")
        sh(*ns, "ip", "addr", "add", "198.18.0.2/30", "dev", "eth0")
        sh(*ns, "ip", "link", "set", "eth0", "up")
        for ip in ("198.18.1.10", "198.18.1.20", "198.18.1.30", "198.18.1.40", "198.18.1.53"):
            sh(*ns, "ip", "addr", "add", f"{ip}/32", "dev", "lo")
        sh(*ns, "ip", "route", "add", "default", "via", "198.18.0.1")
        sh("ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2")
        # Forwarding on, so "no route around the proxy" is proven by nftables, not by a
        # host that would not forward anyway (test_control_* shows the difference).
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        proc = subprocess.Popen([*ns, sys.executable, str(HERE / "fakenet.py"), str(workdir)])
        deadline = time.monotonic() + 20
        while not (workdir / "ready").exists():
            assert proc.poll() is None, "fake internet died"
            assert time.monotonic() < deadline, "fake internet did not start"
            time.sleep(0.05)
        yield Internet(workdir, ca)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        sh("ip", "route", "del", "198.18.1.0/24", check=False)
        sh("ip", "link", "del", "symti0", check=False)
        sh("ip", "netns", "del", INET_NS, check=False)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(forward)


@pytest.fixture(scope="session")
def loop() -> Generator[LoopThread, None, None]:
    lt = LoopThread()
    yield lt
    lt.close()


@dataclass
class Launcher:
    loop: LoopThread
    manager: SandboxManager
    audit: list[dict[str, Any]] = field(default_factory=list)
    enforcer: str = "bwrap"
    units: dict[int, str] = field(default_factory=dict)  # systemd-run pid -> its unit

    def setup(self, agent_id: str, policy: EgressPolicy) -> SandboxHandle:
        return self.loop.run(self.manager.setup(agent_id, policy))

    def teardown(self, handle: SandboxHandle) -> None:
        self.loop.run(self.manager.teardown(handle))

    async def spawn(
        self,
        handle: SandboxHandle,
        view: FsView,
        command: list[str],
        *,
        resources: ResourcesConfig = TEST_RESOURCES,
        **kwargs: Any,
    ) -> asyncio.subprocess.Process:
        """Start ``command`` in ``handle``'s sandbox with this launcher's enforcer.

        ``resources`` only applies to the systemd path (bubblewrap's limits come with the handle:
        ``manager.setup(..., resources)``, test_bwrap_cgroup_limits.py)."""
        if self.enforcer == "bwrap":
            return await bwrap.spawn(handle, view, command, **kwargs)
        unit = f"symtest-{handle.agent_id}-{next(_unit_serial)}"
        kwargs.setdefault("stdin", asyncio.subprocess.DEVNULL)
        proc = await systemd_unit.spawn(
            handle, view, command, unit=unit, resources=resources, **kwargs
        )
        self.units[proc.pid] = unit
        return proc

    def output(
        self, handle: SandboxHandle, view: FsView, command: list[str], **kwargs: Any
    ) -> tuple[int, str]:
        """Run ``command`` in the sandbox to its end: (exit status, stdout and stderr)."""

        async def go() -> tuple[int, str]:
            proc = await self.spawn(
                handle,
                view,
                command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                **kwargs,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out.decode(errors="replace")

        return self.loop.run(go())

    def records(self, agent_id: str, kind: str, **match: Any) -> list[dict[str, Any]]:
        """This launcher's audit records of ``kind`` for one agent, matching ``match``."""
        return [
            a
            for a in self.audit
            if a["type"] == kind
            and a.get("agent_id") == agent_id
            and all(a.get(k) == v for k, v in match.items())
        ]

    def agent_pid(self, proc: asyncio.subprocess.Process, timeout: float = 10) -> int:
        """The sandboxed process itself: bwrap's pid, or the unit's main process."""
        if self.enforcer == "bwrap":
            return proc.pid
        unit = self.units[proc.pid]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = sh("systemctl", "show", "-P", "MainPID", f"{unit}.service", check=False)
            if out.stdout.strip() not in ("", "0"):
                return int(out.stdout)
            time.sleep(0.05)
        raise AssertionError(f"{unit} has no main process")


@pytest.fixture(scope="session", params=ENFORCERS)
def launcher(
    request: pytest.FixtureRequest, internet: Internet, loop: LoopThread
) -> Generator[Launcher, None, None]:
    audit: list[dict[str, Any]] = []
    manager = SandboxManager(
        upstream=UpstreamResolver([UPSTREAM]),
        audit=audit.append,
        pool=AddressPool(TEST_POOL),
        firewall=Firewall(),
    )
    loop.run(manager.start())
    try:
        yield Launcher(loop, manager, audit, enforcer=request.param)
    finally:
        loop.run(manager.close())
        manager.firewall.remove_table()


def agent_policy(**overrides: Any) -> EgressPolicy:
    args: dict[str, Any] = {
        "allowed_domains": ["allowed.test", "rebind.test", "meta.test", "private.test"],
        "denied_domains": [],
        "permitted_networks": ["198.18.0.0/15"],
    }
    args.update(overrides)
    return build_policy(**args)


@dataclass
class World:
    root: Path
    workspace_root: Path
    workspace: Path
    sibling: Path
    home: Path
    audit_dir: Path
    etc_symphony: Path

    @property
    def ca(self) -> str:
        """The throwaway CA, at a path the sandboxed agent can read."""
        return str(self.workspace / "ca.pem")

    def view(self, workspace: Path | None = None) -> FsView:
        return build_fs_view(
            workspace or self.workspace,
            self.workspace_root,
            uid=AGENT_UID,
            gid=AGENT_GID,
            extra_hidden=[self.audit_dir],
            homes=[self.home, Path("/root")],
        )


def _make_workspace(path: Path) -> None:
    git = path / ".git"
    (git / "hooks").mkdir(parents=True)
    (git / "config").write_text("[core]\n\trepositoryformatversion = 0\n")
    (git / "packed-refs").write_text("# pack-refs\n")
    (git / "hooks" / "pre-commit.sample").write_text("#!/bin/sh\n")
    shutil.copy(HERE / "probe.py", path / "probe.py")
    for p in [path, *path.rglob("*")]:
        os.chown(p, AGENT_UID, AGENT_GID)


@pytest.fixture(scope="session")
def world(
    tmp_path_factory: pytest.TempPathFactory, internet: Internet
) -> Generator[World, None, None]:
    if "systemd" in ENFORCERS:
        # A unit's workspace is a bind of the real path, so every ancestor must be
        # traversable by the agent user (pytest's basetemp is 0700) and outside /tmp,
        # which PrivateTmp= replaces; production workspaces live under /var/lib.
        root = Path(tempfile.mkdtemp(prefix="symtest-world-", dir="/srv"))
    else:
        root = tmp_path_factory.mktemp("world")
    os.chmod(root, 0o755)
    ws_root = root / "workspaces"
    ws_root.mkdir()
    workspace, sibling = ws_root / "agent-a", ws_root / "agent-b"
    for ws in (workspace, sibling):
        ws.mkdir()
        shutil.copy(internet.ca, ws / "ca.pem")
        _make_workspace(ws)
    (sibling / "secret.txt").write_text("sibling secret")
    home = root / "home" / "operator"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    audit_dir = root / "audit"
    audit_dir.mkdir()
    (audit_dir / "2026-01-01.ndjson").write_text('{"audit": true}\n')
    etc = Path("/etc/symphony")
    created_etc = not etc.exists()
    etc.mkdir(exist_ok=True)
    marker = etc / "symtest-secret"
    marker.write_text("tracker token")
    # World-readable on purpose: only the sandbox, not file modes, may keep the agent out.
    for p in [root, *root.rglob("*"), etc, marker]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    try:
        yield World(root, ws_root, workspace, sibling, home, audit_dir, etc)
    finally:
        marker.unlink(missing_ok=True)
        if "systemd" in ENFORCERS:
            shutil.rmtree(root, ignore_errors=True)
        if created_etc:
            with contextlib.suppress(OSError):
                etc.rmdir()


def probe_output(
    launcher: Launcher,
    handle: SandboxHandle,
    view: FsView,
    *args: str,
    env: dict[str, str] | None = None,
    resources: ResourcesConfig = TEST_RESOURCES,
) -> tuple[list[dict[str, Any]], int, str]:
    """Run probe.py in the sandbox; every JSON line it printed, its exit status, its stderr."""

    async def go() -> tuple[bytes, bytes, int]:
        proc = await launcher.spawn(
            handle,
            view,
            ["/usr/bin/python3", str(view.workspace / "probe.py"), *args],
            env=env,
            resources=resources,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return out, err, proc.returncode or 0

    out, err, rc = launcher.loop.run(go())
    lines = [dict(json.loads(line)) for line in out.decode().splitlines() if line.startswith("{")]
    return lines, rc, err.decode()[-2000:]


def run_probe(
    launcher: Launcher,
    handle: SandboxHandle,
    world: World,
    *args: str,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    lines, rc, err = probe_output(launcher, handle, world.view(), *args, env=env)
    assert lines, f"probe printed nothing (rc={rc}): {err}"
    return lines[-1]


@pytest.fixture(scope="session", autouse=True)
def no_leftovers() -> Generator[None, None, None]:
    yield
    links = sh("ip", "-o", "link").stdout
    assert "symv" not in links, links
    assert sh("nft", "list", "table", "inet", "symphonyd", check=False).returncode != 0
    assert not list(RUN_DIR.rglob("symv*")) if RUN_DIR.exists() else True


@pytest.fixture
def template() -> Generator[Path, None, None]:
    # Outside /tmp: the sandbox puts a private tmpfs there, as production does.
    # Under /var/lib/symphony, which the shipped deny list hides, as in production.
    parent = Path("/var/lib/symphony")
    created = not parent.exists()
    parent.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="test-agent-template-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if created:
            shutil.rmtree(parent, ignore_errors=True)
