"""A restarted launcher clears its predecessor's units before it serves a single request.

On start the launcher SIGKILLs every unit in its instance's slice (what a crashed predecessor
left) and replaces its nftables table. It used to start serving first: a run the dispatcher
started in that window had its hook units killed and its rules wiped, which the soak
(tests/e2e/test_soak.py) saw as ``hook after_create could not start: ... nftables add agent
failed`` right after a launcher restart (issue 22.5). Here a request waits in the activated
socket before the launcher even runs; when its answer comes, the leftover must be gone.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from devtools.nspawn import Container
from tests.e2e.test_suite import main_pid, start_suite, unit_state, wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.agents]

SOCKET = "/run/symphony/launcher-dispatcher.sock"
# Run as the dispatcher's user (the only peer the launcher answers): connecting activates the
# stopped launcher, the request is sent at once, and the moment the answer arrives the script
# says whether the leftover process is still alive (not even a zombie).
ASK_THEN_LOOK = """\
import asyncio, sys
from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.runtime.ipc_client import IpcClient

async def main() -> None:
    client = await IpcClient.connect(sys.argv[1])
    await client.call(HEALTH, Empty(), timeout=120)
    try:
        with open(f"/proc/{sys.argv[2]}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    print("alive" if state != "Z" and state != "gone" else "dead")

asyncio.run(main())
"""


def test_restarted_launcher_serves_only_after_clearing_leftover_units(
    container: Container, deb_file: Path
) -> None:
    c = container
    start_suite(c, deb_file)
    instance = c.run(["cat", "/var/lib/symphony/launcher/sandbox-instance"]).stdout.strip()
    # The dispatcher would activate the launcher itself: only this test's request may.
    c.run(["systemctl", "stop", "symphony-dispatcher.service"], timeout=180)
    c.run(["systemctl", "stop", "symphony-launcher.service"], timeout=180)
    assert unit_state(c, "symphony-launcher.service") != "running"
    c.run(["systemctl", "start", "symphony-launcher-dispatcher.socket"])
    # What a crashed launcher would have left: a unit in this instance's slice.
    leftover = f"symphony-agent-leftover-{secrets.token_hex(4)}"
    c.run(
        ["systemd-run", f"--unit={leftover}", f"--slice=system-symphony_sandbox_{instance}.slice",
         "--collect", "--quiet", "sleep", "600"]
    )  # fmt: skip
    wait_until("the leftover running", lambda: unit_state(c, f"{leftover}.service") == "running")
    pid = main_pid(c, f"{leftover}.service")

    answer = c.run(
        ["runuser", "-u", "symphony-dispatch", "--", "python3", "-c", ASK_THEN_LOOK, SOCKET, pid],
        timeout=180,
    )
    assert answer.stdout.strip() == "dead", "the launcher served before clearing its slice"
    assert unit_state(c, "symphony-launcher.service") == "running"
