"""``@name`` egress presets: parsing, expansion into the launcher's policy, refusals that name
the preset and line, the launcher refusing to start (78) and ``symphonyctl workflow check``
naming an unknown preset. The real clients through a real sandbox: test_presets_in_sandbox.py.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.core.config_extensions import EgressConfig, parse_sandbox
from symphonyd.core.egress_presets import (
    EgressPresetError,
    PresetDirs,
    check_operator_dir,
    expand,
    preset_dirs,
)
from symphonyd.core.errors import ConfigError
from symphonyd.launcher.sandbox.config_policy import egress_policy
from symphonyd.launcher.sandbox.egress_policy import decide
from symphonyd.launcher.sandbox.errors import SandboxError

REPO = Path(__file__).resolve().parents[2]
CTL = [sys.executable, "-m", "symphonyd.ctl", "workflow", "check"]
ME = frozenset({os.getuid()})


def _dirs(tmp_path: Path, shipped: Path | None = None) -> PresetDirs:
    operator = tmp_path / "presets"
    operator.mkdir(exist_ok=True)
    return PresetDirs(operator=operator, shipped=shipped, owners=ME)


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_workflow_accepts_presets_and_refuses_bad_names() -> None:
    raw = {"sandbox": {"egress": {"allowed_domains": ["@GitHub", "x.test", "@github"]}}}
    assert parse_sandbox(raw).egress.allowed_domains == ("@github", "x.test")
    for bad in ("@", "@no_underscore", "@a.b", "@../etc"):
        with pytest.raises(ConfigError, match="not a preset name"):
            parse_sandbox({"sandbox": {"egress": {"denied_domains": [bad]}}})


def test_shipped_presets_parse_and_name_the_forges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMPHONY_POLICY_DIR", str(REPO / "policy"))  # this tree's, not installed
    dirs = preset_dirs("/nonexistent")
    assert dirs.shipped == REPO / "policy" / "egress" / "presets"
    github = expand(["@github"], dirs, "allowed_domains").domains
    assert "github.com" in github and "api.github.com" in github
    assert expand(["@gitlab"], dirs, "allowed_domains").domains == ("gitlab.com",)
    policy = egress_policy(EgressConfig(allowed_domains=("@github",)), runtime=None, presets=dirs)
    assert decide(policy, "raw.githubusercontent.com", 443).allowed
    assert not decide(policy, "gitlab.com", 443).allowed


def test_operator_preset_expands_in_order_and_feeds_denied_too(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path)
    _write(
        dirs.operator / "testreg.txt", "# a test registry\nregistry.a.test\n*.cdn.a.test # x\n\n"
    )
    _write(dirs.operator / "bad-cdn.txt", "evil.cdn.a.test\n")
    out = expand(["one.test", "@testreg", "registry.a.test"], dirs, "allowed_domains")
    assert out.domains == ("one.test", "registry.a.test", "*.cdn.a.test")
    policy = egress_policy(
        EgressConfig(allowed_domains=("@testreg",), denied_domains=("@bad-cdn",)),
        runtime=None,
        presets=dirs,
    )
    assert decide(policy, "files.cdn.a.test", 443).allowed
    assert decide(policy, "evil.cdn.a.test", 443).reason == "denied_domain"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("ok.test\n10.0.0.1\n", 2),
        ("ok.test\n# c\nhttps://x.test/\n", 3),
        ("@github\n", 1),
        ("two names.test\n", 1),
    ],
)
def test_bad_line_names_preset_and_line(tmp_path: Path, text: str, line: int) -> None:
    dirs = _dirs(tmp_path)
    _write(dirs.operator / "mine.txt", text)
    with pytest.raises(EgressPresetError, match=rf"@mine .* line {line}:"):
        expand(["@mine"], dirs, "allowed_domains")
    with pytest.raises(SandboxError, match=rf"egress policy is invalid: .*@mine.*line {line}"):
        egress_policy(EgressConfig(allowed_domains=("@mine",)), runtime=None, presets=dirs)


def test_unknown_preset_is_named(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path, shipped=tmp_path / "shipped")
    with pytest.raises(EgressPresetError, match="allowed_domains: unknown egress preset @nope"):
        expand(["@nope"], dirs, "allowed_domains")


def test_unsafe_operator_files_are_refused(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path)
    _write(dirs.operator / "gw.txt", "a.test\n", 0o664)
    _write(dirs.operator / "ww.txt", "a.test\n", 0o646)
    with pytest.raises(EgressPresetError, match="@gw .*writable by group or others"):
        expand(["@gw"], dirs, "allowed_domains")
    with pytest.raises(EgressPresetError, match="@ww .*writable by group or others"):
        expand(["@ww"], dirs, "allowed_domains")
    (dirs.operator / "link.txt").symlink_to(dirs.operator / "gw.txt")
    with pytest.raises(EgressPresetError, match="@link"):
        expand(["@link"], dirs, "allowed_domains")
    root_only = PresetDirs(operator=dirs.operator, owners=frozenset({os.getuid() + 1}))
    _write(dirs.operator / "mine.txt", "a.test\n")
    with pytest.raises(EgressPresetError, match="@mine .*must be owned by root"):
        expand(["@mine"], root_only, "allowed_domains")


def test_operator_preset_replaces_shipped_with_a_journal_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    _write(shipped / "forge.txt", "forge.test\n")
    dirs = _dirs(tmp_path, shipped=shipped)
    assert expand(["@forge"], dirs, "allowed_domains").domains == ("forge.test",)
    _write(dirs.operator / "forge.txt", "mirror.forge.test\n")
    caplog.set_level(logging.WARNING, logger="symphonyd.launcher")
    policy = egress_policy(EgressConfig(allowed_domains=("@forge",)), runtime=None, presets=dirs)
    assert decide(policy, "mirror.forge.test", 443).allowed
    assert not decide(policy, "forge.test", 443).allowed
    assert "egress preset @forge: the operator's" in caplog.text
    assert "replaces the shipped preset" in caplog.text


def test_startup_check_reads_every_operator_file(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path)
    assert check_operator_dir(PresetDirs(operator=tmp_path / "absent")) == ()
    _write(dirs.operator / "a.txt", "a.test\n")
    assert check_operator_dir(dirs) == ("a",)
    _write(dirs.operator / "b.txt", "a.test\n1.2.3.4\n")
    with pytest.raises(EgressPresetError, match="@b .* line 2"):
        check_operator_dir(dirs)


def _host_config(tmp_path: Path, presets: Path) -> Path:
    path = tmp_path / "symphonyd.toml"
    path.write_text(
        f'workflow = "{tmp_path}/WORKFLOW.md"\n[paths]\nstate_dir = "{tmp_path}/state"\n'
        f'runtime_dir = "{tmp_path}/run"\naudit_dir = "{tmp_path}/audit"\n'
        f'[sandbox]\negress_presets_dir = "{presets}"\n'
    )
    return path


def test_launcher_refuses_to_start_on_a_bad_preset_file(tmp_path: Path) -> None:
    """``python -m symphonyd.launcher`` exits 78 naming the preset and line (before anything
    else of the sandbox is set up, so this runs unprivileged)."""
    presets = tmp_path / "presets"
    presets.mkdir()
    _write(presets / "broken.txt", "ok.test\n192.0.2.1\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "symphonyd.launcher",
            "--host-config",
            str(_host_config(tmp_path, presets)),
            "--socket",
            str(tmp_path / "launcher.sock"),
            "--agent-home",
            str(tmp_path),
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 78, proc.stderr
    assert "egress preset @broken" in proc.stderr
    assert "line 2" in proc.stderr


WORKFLOW = """---
tracker:
  kind: memory
workspace:
  root: {root}
sandbox:
  egress:
    allowed_domains: ["@github", "@{name}"]
---
hi
"""


def test_workflow_check_names_an_unknown_preset(tmp_path: Path) -> None:
    presets = tmp_path / "presets"
    presets.mkdir()
    workflow = tmp_path / "WORKFLOW.md"
    config = _host_config(tmp_path, presets)

    def check(name: str) -> subprocess.CompletedProcess[str]:
        workflow.write_text(WORKFLOW.format(root=tmp_path / "ws", name=name))
        return subprocess.run(
            [*CTL, "--host-config", str(config), str(workflow)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    refused = check("testreg")
    assert refused.returncode != 0
    assert "sandbox.egress.allowed_domains: unknown egress preset @testreg" in refused.stderr
    if os.getuid() == 0:  # an operator file must be root's; unprivileged runs stop here
        _write(presets / "testreg.txt", "registry.a.test\n")
        ok = check("testreg")
        assert ok.returncode == 0, ok.stderr
