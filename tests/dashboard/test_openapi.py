"""The OpenAPI document matches the router, and schemathesis finds no 500s or violations."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from symphonyd.dashboard import openapi
from symphonyd.dashboard.guard import Guard, allowed_hosts
from symphonyd.dashboard.link import DispatcherLink
from symphonyd.dashboard.service import Dashboard
from tests.audit.daemon_proc import AuditDaemon
from tests.dashboard.double import DispatcherDouble
from tests.dashboard.harness import REPO, DashboardProcess, short_dir

SCHEMATHESIS = REPO / ".venv" / "bin" / "schemathesis"


def _api_routes() -> dict[str, str]:
    dashboard = Dashboard(DispatcherLink("/nonexistent"), None, Guard(allowed_hosts(1, "::1")))
    app = dashboard.app()
    routes = {}
    for resource in app.router.resources():
        path = resource.canonical
        if path.startswith("/api/v1/"):
            routes[path] = path
    return routes


def test_document_lists_every_api_route_and_nothing_else() -> None:
    assert set(_api_routes()) == set(openapi.PATHS)


def test_documented_post_operations_need_the_csrf_header() -> None:
    for path, item in openapi.PATHS.items():
        if "post" in item:
            names = [p["name"] for p in item["post"]["parameters"]]
            assert "X-CSRF-Token" in names, path


def test_served_document_is_the_module_one(tmp_path: Path) -> None:
    with short_dir() as d, DashboardProcess(d / "none.sock", None, d / "dash.log") as dash:
        served = httpx.get(dash.base + "/api/v1/openapi.json").json()
    assert served == openapi.document()


@pytest.fixture
def full_stack(tmp_path: Path) -> Iterator[DashboardProcess]:
    with short_dir() as d:
        dash_sock = d / "dashboard.sock"
        audit = AuditDaemon(tmp_path / "audit", d, extra=("--listen", f"dashboard={dash_sock}"))
        with (
            audit,
            DispatcherDouble(d / "disp.sock"),
            DashboardProcess(d / "disp.sock", dash_sock, d / "dash.log") as dashboard,
        ):
            yield dashboard


def test_schemathesis_finds_no_server_errors_or_schema_violations(
    full_stack: DashboardProcess, tmp_path: Path
) -> None:
    assert SCHEMATHESIS.exists() or shutil.which("schemathesis"), "pip install schemathesis"
    base = full_stack.base
    token = httpx.get(base + "/api/v1/csrf").json()["token"]
    done = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            base + "/api/v1/openapi.json",
            "--checks",
            "all",
            # One check left out, on purpose: it sends the draft method QUERY, which
            # aiohttp's C parser (llhttp, the strict one) refuses with 400 before any route
            # runs; the lax pure-Python parser would answer 405 but is the one with the
            # request-smuggling history. test_api.py checks 405 for every standard method.
            "--exclude-checks",
            "unsupported_method",
            "--max-examples",
            "60",
            "--seed",
            "20261122",
            "--request-timeout",
            "30",
            "-H",
            f"X-CSRF-Token: {token}",
            "-H",
            f"Origin: {base}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    summary = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    assert done.returncode == 0, summary[-8000:] + done.stderr[-2000:]
    assert full_stack.proc is not None and full_stack.proc.poll() is None
