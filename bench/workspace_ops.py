"""Cost of the workspace path checks, a hook spawn, and the git-metadata scan.

Run: .venv/bin/python bench/workspace_ops.py [--files N]
Everything happens under a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Runnable as a plain script from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from symphonyd.core.issue import Issue
from symphonyd.core.workspace_paths import safe_workspace_path, workspace_key
from symphonyd.launcher.git_protect import scan_git_metadata
from symphonyd.launcher.hooks import HookRunner
from symphonyd.launcher.workspace import WorkspaceManager


def per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000, help="files in the scanned tree")
    args = parser.parse_args()
    issue = Issue(id="1", identifier="team/ABC 1", title="t", state="Todo", dispatchable=True)
    result: dict[str, float | int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        result["workspace_key_plain_us"] = round(
            per_call_us(lambda: workspace_key("ABC-1"), 50_000), 3
        )
        result["workspace_key_hashed_us"] = round(
            per_call_us(lambda: workspace_key("team/ABC 1"), 50_000), 3
        )
        result["safe_workspace_path_us"] = round(
            per_call_us(lambda: safe_workspace_path(root, "team/ABC 1"), 5_000), 3
        )

        mgr = WorkspaceManager(root)
        cycles: list[float] = []
        for _ in range(200):
            t0 = time.perf_counter()
            asyncio.run(mgr.prepare(issue))
            asyncio.run(mgr.remove(issue.identifier))
            cycles.append(time.perf_counter() - t0)
        result["prepare_remove_cycle_ms"] = median_ms(cycles)

        ws = asyncio.run(mgr.prepare(issue))
        runner = HookRunner()
        spawns: list[float] = []
        for _ in range(50):
            t0 = time.perf_counter()
            res = asyncio.run(runner.run("bench", "true", ws.path, timeout_ms=10_000, issue=issue))
            assert res.ok
            spawns.append(time.perf_counter() - t0)
        result["hook_true_ms"] = median_ms(spawns)

        # A workspace with a repo, a nested repo and many plain files (node_modules-like).
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": tmp}
        for repo in (ws.path, ws.path / "vendor" / "lib"):
            repo.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
        per_dir = 100
        for i in range(args.files):
            d = ws.path / "node_modules" / f"pkg{i // per_dir}"
            if i % per_dir == 0:
                d.mkdir(parents=True)
            (d / f"f{i}.js").write_bytes(b"")
        scans: list[float] = []
        for _ in range(5):
            t0 = time.perf_counter()
            scan = scan_git_metadata(ws.path)
            scans.append(time.perf_counter() - t0)
        assert len(scan.roots) == 2
        result["git_scan_files"] = args.files
        result["git_scan_ms"] = median_ms(scans)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
