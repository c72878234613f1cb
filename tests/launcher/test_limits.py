"""The launcher raises its soft open-file limit to the hard one (symphonyd/launcher/limits.py).

Without it a launcher started with systemd's default soft limit of 1024 runs out of file
descriptors at a few hundred agents (three pipe ends each): bench/pipeline_throughput.py saw
a third of 10 000 runs fail with "cannot start bash: Too many open files".
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit listed")


def test_launcher_daemon_raises_its_soft_open_file_limit(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    run = Path(os.environ.get("TMPDIR", "/tmp")) / f"sylim{os.getpid()}"
    run.mkdir(exist_ok=True)
    host = tmp_path / "symphonyd.toml"
    host.write_text(
        f'[paths]\nstate_dir = "{tmp_path}"\nruntime_dir = "{run}"\n'
        f'audit_dir = "{tmp_path / "audit"}"\nworkspace_root = "{tmp_path / "ws"}"\n'
        "[sandbox]\nenabled = false\n"
    )
    sock = run / "l.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "symphonyd.launcher", "--host-config", str(host),
         "--socket", str(sock), "--dispatcher-uid", str(os.getuid()),
         "--agent-home", str(tmp_path / "agent")],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # Only setrlimit runs before exec, which is async-signal-safe.
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)),  # noqa: PLW1509
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "launcher did not bind its socket"
            time.sleep(0.05)
        assert _soft_nofile(proc.pid) == hard
    finally:
        proc.terminate()
        proc.wait(30)
        sock.unlink(missing_ok=True)
        run.rmdir()
