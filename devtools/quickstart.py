"""The README's quick start: build the .deb and run the whole suite on the local tracker.

Where systemd is PID 1 it installs the package on this host; elsewhere it boots a throwaway
Debian container (debootstrap + systemd-nspawn; 12 "bookworm" by default, ``--release
trixie`` for 13) and installs it there. Either way it configures the DEMO model endpoint
(scripted, no credential), starts symphony.target, files a sample issue and says how to
watch it. ``--exec CMD...`` runs a command in that container, ``--stop`` powers it off and
``--reset`` also deletes it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from devtools.demo_setup import configure_demo, install_codex_npm, install_package
from devtools.nspawn import DEFAULT_RELEASE, RELEASES, Container

REPO = Path(__file__).resolve().parent.parent
CONTAINER_DIR = Path("/var/lib/symphony-quickstart")
# The booted container's systemd pid, so later calls can reach it (--exec, --stop).
LEADER_FILE = CONTAINER_DIR / "leader"
BANNER = """
==========================================================================================
 DEMO MODE: the agent is the real Codex CLI, but its "model" is a scripted endpoint
 (symphony-demo-model.service) that makes every agent write symphony-demo.md and hand the
 issue off. Configure a real model (docs/install.md) before giving it real work.
==========================================================================================
"""


class Host:
    """This machine as the target (systemd is PID 1)."""

    def run(
        self, argv: list[str], *, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, check=check, timeout=timeout, input=input, capture_output=True, text=True
        )

    def copy_in(self, src: Path, dest: str) -> None:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(src), dest], check=True)


def build_deb() -> Path:
    out = REPO / "dist"
    subprocess.run(
        [str(REPO / "packaging" / "build-deb.sh"), str(out)], check=True, stdout=subprocess.DEVNULL
    )
    return sorted(out.glob("symphonyd_*_all.deb"))[-1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="quickstart.sh", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--release",
        choices=RELEASES,
        default=DEFAULT_RELEASE,
        help="Debian release of the throwaway container (default %(default)s)",
    )
    action = p.add_mutually_exclusive_group()
    action.add_argument("--stop", action="store_true", help="power the quick-start container off")
    action.add_argument(
        "--reset", action="store_true", help="power it off and delete it (all its state)"
    )
    action.add_argument(
        "--exec",
        nargs=argparse.REMAINDER,
        metavar="CMD",
        help="run CMD inside the running container, e.g. --exec symphonyctl status",
    )
    return p.parse_args(argv)


def running_leader() -> int | None:
    """The quick-start container's systemd pid, if that container is still running."""
    try:
        pid = int(LEADER_FILE.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        root = os.readlink(f"/proc/{pid}/root")
    except (OSError, ValueError):
        return None
    # The pid must still be that container's init, not a recycled pid.
    if comm != "systemd" or Path(root) != CONTAINER_DIR / "rootfs":
        return None
    return pid


def stop_container(*, delete: bool) -> int:
    leader = running_leader()
    if leader is not None:
        subprocess.run(
            ["nsenter", "-t", str(leader), "-a", "--", "systemctl", "poweroff", "--no-block"],
            check=False,
        )
        deadline = time.monotonic() + 60
        while running_leader() is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        if running_leader() is not None:
            print(f"quickstart: the container (pid {leader}) did not power off", file=sys.stderr)
            return 1
        print("quick-start container powered off")
    else:
        print("no quick-start container is running")
    LEADER_FILE.unlink(missing_ok=True)
    if delete:
        shutil.rmtree(CONTAINER_DIR, ignore_errors=True)
        print(f"deleted {CONTAINER_DIR}")
    return 0


def exec_in_container(argv: list[str]) -> int:
    leader = running_leader()
    if leader is None:
        print("quickstart: no quick-start container is running", file=sys.stderr)
        return 1
    if not argv:
        argv = ["bash", "-l"]
    return subprocess.run(["nsenter", "-t", str(leader), "-a", "--", *argv], check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print(
            "quickstart: run as root (it installs a package or boots a container)", file=sys.stderr
        )
        return 2
    if args.stop or args.reset:
        return stop_container(delete=args.reset)
    if args.exec is not None:
        return exec_in_container(args.exec)
    if running_leader() is not None:
        print(
            "quickstart: the quick-start container is already running; use "
            "`quickstart.sh --exec symphonyctl status`, or `--reset` to start over",
            file=sys.stderr,
        )
        return 1
    print("building the package ...", flush=True)
    deb = build_deb()
    print("installing the pinned Codex CLI from npm ...", flush=True)
    codex_bin = install_codex_npm()
    if os.path.isdir("/run/systemd/system"):
        target: Host | Container = Host()
        prefix: list[str] = []
        where = "this host"
    else:
        print(
            f"systemd is not PID 1 here: booting a throwaway Debian ({args.release}) "
            "container ...",
            flush=True,
        )
        # A container that was powered off leaves its root behind; start from a fresh one.
        shutil.rmtree(CONTAINER_DIR / "rootfs", ignore_errors=True)
        CONTAINER_DIR.mkdir(parents=True, exist_ok=True)
        container = Container(Path(CONTAINER_DIR), release=args.release)
        container.__enter__()  # left running on purpose: the suite lives in it
        LEADER_FILE.write_text(f"{container.leader}\n")
        target = container
        prefix = ["./packaging/quickstart.sh", "--exec"]
        where = f"the container (Debian {args.release}, systemd pid {container.leader})"
    install_package(target, deb)
    configure_demo(target, codex_bin)
    target.run(
        [
            "symphonyctl",
            "issue",
            "new",
            "DEMO-1",
            "--title",
            "Say hello from symphonyd",
            "--description",
            "Add a greeting file to the workspace.",
        ]
    )
    run = " ".join(prefix)
    print(BANNER)
    print(f"symphonyd is running in {where}. Sample issue DEMO-1 is filed.\n")
    print("Next:")
    print(f"  {run} symphonyctl status             # what runs, retries, budgets")
    print(f"  {run} symphonyctl issue list         # DEMO-1 moves to 'Human Review'")
    print(f"  {run} symphonyctl logs DEMO-1        # the run in the journal")
    print(f"  {run} symphonyctl audit verify       # the hash-chained audit log")
    print(
        f'  {run} python3 -c "import urllib.request as u; '
        "print(u.urlopen('http://127.0.0.1:4000/api/v1/state').read().decode())\""
    )
    print(
        "  dashboard: http://127.0.0.1:4000/"
        + ("" if not prefix else "  (inside the container's network namespace)")
    )
    if prefix:
        print("\nA shell in the container: ./packaging/quickstart.sh --exec")
        print("Stop it: ./packaging/quickstart.sh --stop   (--reset also deletes it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
