"""Egress presets with the real clients in a real sandbox: ``npm install`` and ``pip install``
against test registries (fakenet.py serves registry.npm.test and pypi.test over TLS with the
throwaway CA) succeed when the run's WORKFLOW.md lists the operator's test preset
(``@testnpm``, ``@testpypi``, files in a test-owned presets directory named by the host
config) and fail with the proxy's refusal, and the launcher's journal hint, without it.

Everything goes through the launcher's own wiring: AgentSandboxes built from the host config,
the policy (with its presets) from the workflow, the agent started by ``AgentSandbox.spawn``.
The client settings are the agent environment an operator would give it (``forward_env``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.launcher import WorkflowSnapshot
from symphonyd.core.config import ServiceConfig
from symphonyd.core.hostconfig import parse_host_config
from symphonyd.launcher.sandbox.errors import SandboxError
from symphonyd.launcher.workspace_requests import bind_config
from tests.sandbox.agent_sandboxes import agent_sandboxes
from tests.sandbox.conftest import Internet, Launcher, World, sh

pytestmark = pytest.mark.root  # namespaces, nftables, the test internet

NPM_HOST = "registry.npm.test"
PYPI_HOST = "pypi.test"
NPM_PKG = "symtest-left-pad"
PY_PKG = "symtest_hello"


@pytest.fixture(scope="module")
def registries(internet: Internet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny packages, built here and published to the test registries' file trees;
    returns the test's operator presets directory (root-owned files, as the launcher wants)."""
    work = tmp_path_factory.mktemp("pkgs")
    _publish_npm(work, internet.workdir / "sites" / NPM_HOST)
    _publish_wheel(work, internet.workdir / "sites" / PYPI_HOST)
    presets = work / "presets"
    presets.mkdir()
    (presets / "testnpm.txt").write_text(f"# the test npm registry\n{NPM_HOST}\n")
    (presets / "testpypi.txt").write_text(f"# the test simple index\n{PYPI_HOST}\n")
    for path in presets.iterdir():
        path.chmod(0o644)
    return presets


def _publish_npm(work: Path, site: Path) -> None:
    src = work / NPM_PKG
    src.mkdir()
    (src / "package.json").write_text(
        json.dumps({"name": NPM_PKG, "version": "1.0.0", "main": "index.js", "license": "MIT"})
    )
    (src / "index.js").write_text("module.exports = 'left-padded from the test registry';\n")
    out = work / "npm-out"
    out.mkdir()
    env = {**os.environ, "npm_config_cache": str(work / "npm-cache"), "npm_config_offline": "1"}
    subprocess.run(
        ["npm", "pack", "--pack-destination", str(out)],
        cwd=src,
        env=env,
        check=True,
        capture_output=True,
    )
    (tarball,) = out.glob("*.tgz")
    data = tarball.read_bytes()
    (site / NPM_PKG / "-").mkdir(parents=True, exist_ok=True)
    (site / NPM_PKG / "-" / tarball.name).write_bytes(data)
    version = {
        "name": NPM_PKG,
        "version": "1.0.0",
        "main": "index.js",
        "dist": {
            "tarball": f"https://{NPM_HOST}/{NPM_PKG}/-/{tarball.name}",
            "shasum": hashlib.sha1(data).hexdigest(),
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
        },
    }
    packument = {"name": NPM_PKG, "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": version}}
    (site / NPM_PKG / "index.json").write_text(json.dumps(packument))


def _publish_wheel(work: Path, site: Path) -> None:
    """A pure-Python wheel written by hand (PEP 427), and its simple-index page (PEP 503)."""
    name = f"{PY_PKG}-1.0-py3-none-any.whl"
    info = f"{PY_PKG}-1.0.dist-info"
    files = {
        f"{PY_PKG}/__init__.py": b"GREETING = 'hello from the test index'\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PY_PKG}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={_b64(hashlib.sha256(body).digest())},{len(body)}"
        for path, body in files.items()
    ]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = work / name
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, body in files.items():
            archive.writestr(path, body)
    data = wheel.read_bytes()
    (site / "files").mkdir(parents=True, exist_ok=True)
    (site / "files" / name).write_bytes(data)
    page = site / "simple" / "symtest-hello"
    page.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    (page / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="/files/{name}#sha256={digest}">{name}</a>'
        "</body></html>\n"
    )


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _workflow(world: World, allowed: list[str]) -> ServiceConfig:
    raw = {
        "tracker": {"kind": "memory"},
        "workspace": {"root": str(world.workspace_root)},
        "sandbox": {"egress": {"allowed_domains": allowed}},
    }
    return bind_config(WorkflowSnapshot(str(world.root / "WORKFLOW.md"), raw, "x", "0" * 64), {})


def _run(
    launcher: Launcher,
    world: World,
    template: Path,
    presets: Path,
    config: ServiceConfig,
    agent: str,
    script: str,
    env: dict[str, str],
) -> tuple[int, str]:
    host, _ = parse_host_config(
        "[sandbox]\nrequire_resource_limits = false\n"
        'permitted_networks = ["198.18.0.0/15"]\n'
        f'egress_presets_dir = "{presets}"\n'
    )
    sandboxes = agent_sandboxes(launcher, host.sandbox, template)

    async def go() -> tuple[int, str]:
        sandbox = await sandboxes.open(agent, world.workspace, config)
        try:
            proc = await sandbox.spawn(["/bin/sh", "-c", script], Path("/tmp"), env)
            assert proc.stdin is not None
            proc.stdin.close()
            out, err = await asyncio.wait_for(proc.communicate(), 180)
            return proc.returncode or 0, (out + err).decode(errors="replace")
        finally:
            await sandbox.close()

    return launcher.loop.run(go(), timeout=240)


NPM_SCRIPT = (
    f"mkdir -p /tmp/proj && cd /tmp/proj && npm install --no-audit --no-fund {NPM_PKG} && "
    f"node -e \"console.log(require('{NPM_PKG}'))\""
)
PIP_SCRIPT = (
    "python3 -m pip install -vvv --no-cache-dir --disable-pip-version-check --no-deps "
    f"--retries 0 --timeout 20 --target /tmp/pt symtest-hello && "
    f"PYTHONPATH=/tmp/pt python3 -c 'import {PY_PKG}; print({PY_PKG}.GREETING)'"
)


def _npm_env(world: World) -> dict[str, str]:
    return {
        "npm_config_registry": f"https://{NPM_HOST}/",
        "npm_config_cafile": world.ca,
        "NODE_EXTRA_CA_CERTS": world.ca,
        "npm_config_cache": "/tmp/npm-cache",
        "npm_config_update_notifier": "false",
        "npm_config_fetch_retries": "0",
    }


def _pip_env(world: World) -> dict[str, str]:
    return {
        "PIP_INDEX_URL": f"https://{PYPI_HOST}/simple/",
        "PIP_CERT": world.ca,
        "PIP_BREAK_SYSTEM_PACKAGES": "1",
    }


CASES: list[tuple[str, str, str, Any, str, str]] = [
    (
        "npm",
        "@testnpm",
        NPM_SCRIPT,
        _npm_env,
        "left-padded from the test registry",
        f"403 Forbidden - GET https://{NPM_HOST}/{NPM_PKG}",
    ),
    (
        "pip",
        "@testpypi",
        PIP_SCRIPT,
        _pip_env,
        "hello from the test index",
        "Tunnel connection failed: 403 Forbidden",  # printed by pip -vvv only
    ),
]


@pytest.mark.parametrize(("client", "preset", "script", "env", "expected", "refusal"), CASES)
def test_install_works_with_the_preset_and_is_refused_without(
    launcher: Launcher,
    world: World,
    template: Path,
    registries: Path,
    caplog: pytest.LogCaptureFixture,
    client: str,
    preset: str,
    script: str,
    env: Any,
    expected: str,
    refusal: str,
) -> None:
    host = NPM_HOST if client == "npm" else PYPI_HOST
    agent = f"agent-preset-{client}"
    allowed = _workflow(world, [preset])
    rc, out = _run(launcher, world, template, registries, allowed, agent, script, env(world))
    assert rc == 0, out
    assert expected in out, out
    assert launcher.records(agent, "egress_allow", host=host), launcher.audit[-5:]

    caplog.set_level(logging.INFO, logger="symphonyd.launcher")
    refused = f"{agent}-off"
    rc, out = _run(
        launcher, world, template, registries, _workflow(world, []), refused, script, env(world)
    )
    assert rc != 0, out
    assert expected not in out, out
    assert refusal in out, out  # the proxy's 403 to the CONNECT, as the client reports it
    assert launcher.records(refused, "egress_deny", host=host), launcher.audit[-5:]
    hints = [r.getMessage() for r in caplog.records if refused in r.getMessage()]
    assert any(f"allowed_domains: [{host}]" in m for m in hints), hints


def test_an_unknown_preset_refuses_the_run_before_any_sandbox(
    launcher: Launcher, world: World, template: Path, registries: Path
) -> None:
    """The launcher's AgentSandboxes refuse to open a run whose workflow names a preset no
    file defines: a typed error naming it, and no sandbox (no interface) left behind."""
    host, _ = parse_host_config(f'[sandbox]\negress_presets_dir = "{registries}"\n')
    sandboxes = agent_sandboxes(launcher, host.sandbox, template)
    config = _workflow(world, ["@testnpm", "@nope"])
    before = sh("ip", "-o", "link").stdout.count("symv")
    with pytest.raises(SandboxError) as refused:
        launcher.loop.run(sandboxes.open("agent-preset-unknown", world.workspace, config))
    assert refused.value.error_code == "sandbox_policy_invalid"
    assert "unknown egress preset @nope" in refused.value.message
    assert sh("ip", "-o", "link").stdout.count("symv") == before
