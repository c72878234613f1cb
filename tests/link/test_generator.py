"""symphony-link-generator, run as systemd runs it: three output directories as arguments.

The installed script (packaging/libexec/symphony-link-generator) only execs this module with
the system interpreter; the e2e suite (tests/e2e/test_package.py) runs that one under a
real ``daemon-reload`` and starts the unit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from symphonyd.link.generator import ALLOW_DROPIN, REFUSE_DROPIN, REFUSE_PATH

WORKERS = """
[worker]
local = false
[[worker.hosts]]
name = "w1"
address = "198.18.10.11"
[[worker.hosts]]
name = "w2"
address = "2001:db8::12"
port = 2222
"""


def _generate(tmp_path: Path, config: str | None) -> tuple[Path, subprocess.CompletedProcess[str]]:
    dirs = [tmp_path / name for name in ("normal", "early", "late")]
    for d in dirs:
        d.mkdir(parents=True)
    argv = [sys.executable, "-m", "symphonyd.link.generator"]
    path = tmp_path / "symphonyd.toml"
    if config is not None:
        path.write_text(config)
    result = subprocess.run(
        [*argv, "--host-config", str(path), *map(str, dirs)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    # Nothing goes anywhere but the normal directory.
    assert list(dirs[1].iterdir()) == [] and list(dirs[2].iterdir()) == []
    return dirs[0], result


def test_workers_become_the_units_allowlist_and_the_suite_wants_the_link(tmp_path: Path) -> None:
    out, result = _generate(tmp_path, WORKERS)
    dropin = (out / "symphony-link.service.d" / ALLOW_DROPIN).read_text()
    allow = [line for line in dropin.splitlines() if not line.startswith("#")]
    assert allow == ["[Service]", "IPAddressAllow=198.18.10.11 2001:db8::12"]
    want = out / "symphony.target.wants" / "symphony-link.service"
    assert want.is_symlink() and Path(want.readlink()).name == "symphony-link.service"
    assert result.stderr == ""


def test_no_workers_writes_nothing(tmp_path: Path) -> None:
    out, _ = _generate(tmp_path, "[paths]\nstate_dir = '/var/lib/symphony'\n")
    assert list(out.iterdir()) == []
    out, _ = _generate(tmp_path / "missing", None)  # no host config at all
    assert list(out.iterdir()) == []


def test_a_bad_config_refuses_the_unit_and_opens_nothing(tmp_path: Path) -> None:
    bad = WORKERS.replace('"198.18.10.11"', '"w1.example\\n[Service]\\nIPAddressAllow=any"')
    out, result = _generate(tmp_path, bad)
    assert sorted(p.name for p in out.iterdir()) == ["symphony-link.service.d"]
    (dropin,) = (out / "symphony-link.service.d").iterdir()
    assert dropin.name == REFUSE_DROPIN
    text = dropin.read_text()
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert settings == ["[Unit]", f"AssertPathExists={REFUSE_PATH}"]
    assert "worker.hosts[0].address" in text
    assert "worker.hosts[0].address" in result.stderr
