"""A throwaway Debian machine (12 or 13) with systemd as PID 1, for end-to-end tests.

The root filesystem comes from debootstrap once per release and is cached as a tarball keyed
by its release and package list; every container boots from a fresh copy with
``systemd-nspawn --boot --private-network``, so tests never touch the host's systemd or network
and leave nothing behind. Containers that must reach each other (worker hosts) join a
``Bridge`` the test creates and deletes instead, each with a static address on its ``host0``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("SYMPHONY_E2E_CACHE", "/var/cache/symphony-e2e"))
# Debian 12 "bookworm" (oldstable) and Debian 13 "trixie" (stable): docs/install.md.
RELEASES = ("bookworm", "trixie")
DEFAULT_RELEASE = "bookworm"

# Everything the package depends on is preinstalled: the container has no network, so
# `apt install ./symphonyd_*.deb` must find every dependency already satisfied.
PACKAGES = (
    "systemd,systemd-sysv,dbus,procps,iproute2,nftables,bubblewrap,dnsmasq-base,"
    "python3,python3-httpx,python3-psutil,python3-pyroute2,python3-sdnotify,python3-tomli-w,"
    "python3-yaml,python3-nftables,python3-systemd,python3-babel,python3-dateutil,python3-tz,"
    "python3-markupsafe,python3-aiohttp,ca-certificates,git,"
    # The sandbox escape suite runs inside too (tests/e2e/test_sandbox_systemd.py).
    # (debootstrap does not resolve virtual packages: cffi-backend provides the cffi API one)
    "python3-pytest,python3-cryptography,python3-cffi-backend,"
    # The unit suite on Debian 13's Python 3.13 runs in a venv (tests/e2e/test_python313.py);
    # its man page test renders with groff.
    "python3-venv,groff-base,"
    # Worker hosts are reached over OpenSSH (tests/e2e/test_worker_hosts.py).
    "openssh-server"
)


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian archive this host's apt uses (``SYMPHONY_E2E_MIRROR`` overrides it).

    Taken from the host's own apt sources so that containers install exactly from where the
    host does, and no archive address is written into the project.
    """
    explicit = os.environ.get("SYMPHONY_E2E_MIRROR")
    if explicit:
        return explicit
    files = [
        *sorted(sources.glob("sources.list.d/*.sources")),
        sources / "sources.list",
        *sorted(sources.glob("sources.list.d/*.list")),
    ]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in _archive_uris(text):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    raise RuntimeError("no Debian archive found in the host's apt sources; set SYMPHONY_E2E_MIRROR")


def _archive_uris(text: str) -> list[str]:
    uris: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("URIs:"):
            uris.extend(line.removeprefix("URIs:").split())
        elif line.startswith("deb "):
            words = [w for w in line.split()[1:] if not w.startswith("[")]
            if words:
                uris.append(words[0])
    return uris


def _has_route_out() -> bool:
    """Whether this network namespace has any interface but loopback (else no mirror).

    Asked of the kernel for the caller's namespace: /sys/class/net shows the namespace sysfs
    was mounted in, not this one.
    """
    return any(name != "lo" for _, name in socket.if_nameindex())


def release_from_env() -> str:
    """``SYMPHONY_E2E_RELEASE`` (bookworm or trixie), else bookworm."""
    release = os.environ.get("SYMPHONY_E2E_RELEASE", DEFAULT_RELEASE)
    if release not in RELEASES:
        raise ValueError(f"SYMPHONY_E2E_RELEASE={release!r}: expected one of {RELEASES}")
    return release


def rootfs_tarball(release: str = DEFAULT_RELEASE) -> Path:
    """Build (once) and return the cached root filesystem tarball of ``release``."""
    if release not in RELEASES:
        raise ValueError(f"unknown Debian release {release!r}; expected one of {RELEASES}")
    mirror = debian_mirror()
    key = hashlib.sha256(f"{release} {mirror} {PACKAGES}".encode()).hexdigest()[:16]
    tarball = CACHE_DIR / f"rootfs-{release}-{key}.tar"
    if tarball.exists():
        return tarball
    if not _has_route_out():
        raise RuntimeError(
            f"no cached {release} root filesystem ({tarball.name}) and no network here to "
            "build one (root test runs have a network namespace of their own): run "
            "`python3 -m devtools.nspawn` first (.ci/run does)"
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={PACKAGES}",
                release,
                str(root),
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    return tarball


class Bridge:
    """A Linux bridge of the caller's own for containers to share; a context manager.

    Named after the test run (``prefix`` plus random hex, at most 15 characters), created
    and deleted by this object only, with no address and no uplink on the caller's side:
    the containers on it reach each other and nothing else.
    """

    def __init__(self, prefix: str = "sy") -> None:
        self.name = f"{prefix}{secrets.token_hex(4)}"[:15]

    def __enter__(self) -> Bridge:
        subprocess.run(["ip", "link", "add", self.name, "type", "bridge"], check=True)
        subprocess.run(["ip", "link", "set", self.name, "up"], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "link", "delete", self.name], check=False)


@dataclass(frozen=True)
class BridgePort:
    """A container's place on a ``Bridge``: its static address (``ADDR/PREFIX``) on host0."""

    bridge: Bridge
    address: str


class Container:
    """One booted systemd container; use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        *,
        binds_ro: Sequence[tuple[Path, str]] = (),
        release: str = DEFAULT_RELEASE,
        network: BridgePort | None = None,
    ) -> None:
        """``binds_ro``: host directories to mount read-only at the given container paths;
        ``network``: join that bridge with that address instead of a network of its own."""
        self.root = workdir / "rootfs"
        self.binds_ro = list(binds_ro)
        self.release = release
        self.network = network
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None

    def __enter__(self) -> Container:
        self.root.mkdir(parents=True)
        tarball = rootfs_tarball(self.release)
        subprocess.run(["tar", "-C", str(self.root), "-xf", str(tarball)], check=True)
        if self.network is None:
            net = ["--private-network"]
        else:
            # The machine name names the host side of the veth (vb-NAME): unique per
            # container so that several can join one bridge.
            net = [f"--network-bridge={self.network.bridge.name}",
                   f"--machine=c{secrets.token_hex(5)}"]  # fmt: skip
        self._nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "-D",
                str(self.root),
                "--register=no",
                "--keep-unit",
                *net,
                "--boot",
                "--quiet",
                *(f"--bind-ro={src}:{dest}" for src, dest in self.binds_ro),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self.leader = self._wait_for_leader()
            self.wait_until_running()
            if self.network is not None:
                self.run(["ip", "address", "add", self.network.address, "dev", "host0"])
                self.run(["ip", "link", "set", "host0", "up"])
        except BaseException:
            self.__exit__()  # a container that failed to boot must not outlive the test
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._nspawn is not None and self._nspawn.poll() is None:
            if self.leader is not None:
                self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=10)
            try:
                self._nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._nspawn.kill()
                self._nspawn.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def address(self) -> str:
        """The container's address on its bridge (without the prefix length)."""
        assert self.network is not None
        return self.network.address.split("/")[0]

    def power_off(self) -> None:
        """Pull the plug: SIGKILL the container's PID 1, which ends its PID namespace and
        every process in it at once (no shutdown, no goodbye on any connection)."""
        assert self._nspawn is not None and self.leader is not None
        os.kill(self.leader, signal.SIGKILL)
        self._nspawn.wait(timeout=60)
        self.leader = None

    def _wait_for_leader(self) -> int:
        assert self._nspawn is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {self._nspawn.returncode}")
            out = subprocess.run(
                ["pgrep", "-P", str(self._nspawn.pid)], capture_output=True, text=True, check=False
            )
            for pid in out.stdout.split():
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except FileNotFoundError:
                    continue  # nspawn's short-lived intermediate child, already gone
                if comm == "systemd":
                    return int(pid)
            time.sleep(0.2)
        raise TimeoutError("container's systemd did not appear")

    def wait_until_running(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.3)
        raise TimeoutError(f"container did not finish booting (state {state!r})")

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces) and capture output."""
        assert self.leader is not None
        proc = subprocess.run(
            [
                "nsenter",
                "-t",
                str(self.leader),
                "-m",
                "-u",
                "-i",
                "-n",
                "-p",
                "--",
                "env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def copy_in(self, src: Path, dest: str) -> None:
        target = self.root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True)
        else:
            shutil.copy2(src, target)


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 -m devtools.nspawn [RELEASE...]``: build the cached root filesystems.

    Provisioning (``.ci/run``) runs this with the network at hand; the tests then boot from
    the cache, since a root test run has a network namespace of its own with no way out.
    """
    import sys

    releases = list(argv if argv is not None else sys.argv[1:]) or list(RELEASES)
    for release in releases:
        print(rootfs_tarball(release))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
