"""The README's quick start: build the .deb and run the whole suite on the local tracker.

Where systemd is PID 1 it installs the package on this host; elsewhere it boots a throwaway
Debian 12 container (debootstrap + systemd-nspawn) and installs it there. Either way it
configures the DEMO model endpoint (scripted, no credential), starts symphony.target, files a
sample issue and says how to watch it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devtools.demo_setup import configure_demo, install_codex_npm, install_package
from devtools.nspawn import Container

REPO = Path(__file__).resolve().parent.parent
CONTAINER_DIR = Path("/var/lib/symphony-quickstart")
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


def main() -> int:
    if os.geteuid() != 0:
        print(
            "quickstart: run as root (it installs a package or boots a container)", file=sys.stderr
        )
        return 2
    print("building the package ...", flush=True)
    deb = build_deb()
    print("installing the pinned Codex CLI from npm ...", flush=True)
    codex_bin = install_codex_npm()
    if os.path.isdir("/run/systemd/system"):
        target: Host | Container = Host()
        prefix: list[str] = []
        where = "this host"
    else:
        print("systemd is not PID 1 here: booting a throwaway Debian 12 container ...", flush=True)
        CONTAINER_DIR.mkdir(parents=True, exist_ok=True)
        container = Container(Path(CONTAINER_DIR))
        container.__enter__()  # left running on purpose: the suite lives in it
        target = container
        prefix = ["nsenter", "-t", str(container.leader), "-a", "--"]
        where = f"the container (systemd pid {container.leader})"
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
        print(f"\nStop the container: {run} systemctl poweroff")
    return 0


if __name__ == "__main__":
    sys.exit(main())
