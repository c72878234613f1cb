"""Configure an installed symphonyd for the offline demo: real Codex, scripted model.

Used by the quick start (on this host or in a container) and by the end-to-end tests, so the
demo the README promises is exactly what CI runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

AGENTS_DIR = Path("/opt/symphony-agents")
CODEX_VENDOR = AGENTS_DIR / "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl"
CODEX_BINARIES = ("codex", "codex-code-mode-host")
DEMO_HOST = "demo-model.local:18080"
DEMO_CODEX_CONFIG = f"""\
# Written by the symphonyd quick start: Codex talks to the scripted DEMO endpoint.
# Replace with your model provider (or run `codex login`) for real work.
model = "demo"
model_provider = "demo"
suppress_unstable_features_warning = true
[model_providers.demo]
name = "symphonyd demo model"
base_url = "http://{DEMO_HOST}/v1"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
supports_websockets = false
"""
DEMO_HOST_CONFIG = f"""
# Added by the symphonyd quick start: the agents' sandbox may reach the demo endpoint.
[sandbox]
local_services = ["{DEMO_HOST}"]
"""


UNENFORCED_LIMITS_CONFIG = """\
# WARNING: systemd on this machine cannot apply sandbox.resources (memory, tasks, CPU) to
# agent units (see `python3 -m symphonyd.launcher.sandbox.unit_limits`), so the launcher
# would refuse to start agents. For this demo only, they run without those limits.
require_resource_limits = false
"""


def limits_enforced(target: Target) -> bool:
    """Whether systemd on ``target`` really applies resource limits to a unit."""
    probe = ["python3", "-m", "symphonyd.launcher.sandbox.unit_limits"]
    result = target.run(probe, check=False, timeout=60)
    if result.returncode != 0:
        print(
            "WARNING: this machine's systemd does not enforce agent resource limits "
            f"({result.stdout.strip()}); the demo runs agents without them."
        )
    return result.returncode == 0


class Target(Protocol):
    """Where the suite runs: this host or a container."""

    def run(
        self, argv: list[str], *, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...

    def copy_in(self, src: Path, dest: str) -> None: ...


def install_codex_npm() -> Path:
    """The pinned Codex CLI from npm (its musl binary runs anywhere); returns its bin dir."""
    if not (CODEX_VENDOR / "bin" / "codex").exists():
        AGENTS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "@openai/codex@0.169.0",
            ],
            cwd=AGENTS_DIR,
            check=True,
        )
    return CODEX_VENDOR / "bin"


def install_package(target: Target, deb: Path) -> None:
    target.copy_in(deb, f"/root/{deb.name}")
    target.run(["apt-get", "install", "-y", f"/root/{deb.name}"], timeout=600)


DEMO_RECORD_FILE = "/var/lib/symphony-demo-model/requests.jsonl"
DEMO_RECORD_DROPIN = f"""\
# Added by the end-to-end tests: keep every request the agent CLI sends (0600, bounded).
[Service]
StateDirectory=symphony-demo-model
ExecStart=
ExecStart=/usr/bin/python3 -m symphonyd.demo.model_server --port 18080 --record {DEMO_RECORD_FILE}
"""


def record_demo_requests(target: Target) -> None:
    """Make the demo endpoint record request bodies (before ``configure_demo`` starts it)."""
    dropin = "/etc/systemd/system/symphony-demo-model.service.d"
    target.run(["mkdir", "-p", dropin])
    target.run(["tee", f"{dropin}/record.conf"], input=DEMO_RECORD_DROPIN)
    target.run(["systemctl", "daemon-reload"])


def configure_demo(target: Target, codex_bin: Path, role: str = "symphony.target") -> None:
    """Codex in /opt/symphony-agents/bin, its demo config, the sandbox exception, started.

    ``role``: the target to start with the demo endpoint (a worker host's agents use the
    endpoint on their own host: ``symphony-worker.target``)."""
    for name in CODEX_BINARIES:
        target.copy_in(codex_bin / name, f"/opt/symphony-agents/bin/{name}")
    target.run(["mkdir", "-p", "/var/lib/symphony/agent/.codex"])
    target.run(["tee", "/var/lib/symphony/agent/.codex/config.toml"], input=DEMO_CODEX_CONFIG)
    host_config = target.run(["cat", "/etc/symphony/symphonyd.toml"]).stdout
    if "[sandbox]" not in host_config:
        added = DEMO_HOST_CONFIG
        if not limits_enforced(target):
            added += UNENFORCED_LIMITS_CONFIG
        target.run(["tee", "-a", "/etc/symphony/symphonyd.toml"], input=added)
    target.run(["systemctl", "enable", "--now", "symphony-demo-model.service", role])
