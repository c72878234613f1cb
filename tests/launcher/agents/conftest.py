"""Fixtures that run the real codex / claude CLIs against the mock model servers.

Each test gets a fresh HOME, CODEX_HOME and TMPDIR (CODEX_HOME is never under TMPDIR, or
codex's sandbox helper refuses to install), and an environment built from nothing, so no
OPENAI_* / ANTHROPIC_* variable of the developer's shell can reach the agent.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from symphonyd.launcher.agents.process import build_env
from symphonyd.launcher.agents.session import AgentEvent
from tests.conftest import agent_binary

CODEX_FLAGS = "--disable plugins --disable unbounded_connection_retries"


def codex_bin() -> str:
    path = agent_binary("codex")
    if path is None:
        pytest.skip("codex CLI not installed")
    return path


def claude_bin() -> str:
    path = agent_binary("claude")
    if path is None:
        pytest.skip("claude CLI not installed")
    return path


@dataclass
class AgentDirs:
    root: Path
    workspace: Path
    home: Path
    codex_home: Path
    tmp: Path
    events: list[AgentEvent] = field(default_factory=list)

    def codex_env(self) -> dict[str, str]:
        return build_env(
            home=self.home, tmpdir=self.tmp, extra={"CODEX_HOME": str(self.codex_home)}
        )

    def write_codex_config(self, port: int) -> None:
        (self.codex_home / "config.toml").write_text(
            'model = "mock-model"\n'
            'model_provider = "mock"\n'
            "suppress_unstable_features_warning = true\n"
            "[model_providers.mock]\n"
            'name = "Local mock"\n'
            f'base_url = "http://127.0.0.1:{port}/v1"\n'
            'wire_api = "responses"\n'
            "request_max_retries = 0\n"
            "stream_max_retries = 0\n"
            "supports_websockets = false\n"
        )

    def event_names(self) -> list[str]:
        return [e.event for e in self.events]


@pytest.fixture
def agent_dirs(tmp_path: Path) -> AgentDirs:
    dirs = AgentDirs(
        root=tmp_path / "workspaces",
        workspace=tmp_path / "workspaces" / "ABC-1",
        home=tmp_path / "home",
        codex_home=tmp_path / "codex-home",
        tmp=tmp_path / "tmp",
    )
    for d in (dirs.workspace, dirs.home, dirs.codex_home, dirs.tmp):
        d.mkdir(parents=True)
    return dirs


def codex_command(*extra: str) -> str:
    return " ".join([shlex.quote(codex_bin()), CODEX_FLAGS, *extra, "app-server"])
