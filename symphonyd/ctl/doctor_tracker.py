"""``symphonyctl doctor``: which workflow version the tracker daemon is serving, and whether
its change-event sources are live (docs/change-events.md).

A refused WORKFLOW.md edit does not stop the tracker (docs/design/0155-one-last-good-workflow.md):
it keeps serving the last good version and reports the refusal in its ``health`` reply. Root
may ask on the tracker's launcher socket, so doctor shows it instead of leaving the operator
to find the warning in the journal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

from symphonyd.core.api.shared import HEALTH, Empty, Health
from symphonyd.core.errors import SymphonyError
from symphonyd.core.sockets import TRACKER_LAUNCHER
from symphonyd.ctl.doctor_base import Check, Context, fail, ok, run_command, systemd_is_pid1, warn
from symphonyd.runtime.ipc_client import IpcClient

NAME = "tracker-workflow"
EVENTS_NAME = "tracker-events"
EVENTS_FIX = "see docs/change-events.md; until then dispatch waits for the poll"
UNIT = "symphony-tracker.service"
SOCKET_UNIT = TRACKER_LAUNCHER.unit
FIX = "symphonyctl workflow check; fix and save (the tracker adopts it on its next request)"


def _active(unit: str) -> bool:
    state = run_command(["systemctl", "is-active", unit])
    return state is not None and state.stdout.strip() == "active"


async def _health(path: Path) -> Health:
    async with await IpcClient.connect(path) as client:
        reply = await client.call(HEALTH, Empty())
    assert isinstance(reply, Health)
    return reply


def check_tracker_workflow(ctx: Context) -> Iterator[Check]:
    if ctx.host is None:
        return
    path = TRACKER_LAUNCHER.path(ctx.host.runtime_dir)  # root's socket on the tracker
    if not path.exists():
        return  # the socket check already says so
    if systemd_is_pid1() and not _active(UNIT) and _active(SOCKET_UNIT):
        # systemd listens there for a stopped tracker: connecting would start it. (A tracker
        # that bound the path itself, outside systemd, is asked like anywhere else.)
        return  # the units check reports the stopped unit
    try:
        health = asyncio.run(asyncio.wait_for(_health(path), 10))
    except (SymphonyError, OSError, TimeoutError) as exc:
        yield warn(
            NAME,
            f"the tracker did not answer on {path}: {exc}",
            "systemctl status symphony-tracker",
        )
        return
    detail = health.detail
    sha = str(detail.get("workflow_sha256") or "")[:12]
    error = f"{detail.get('error')}: {detail.get('error_message', '')}"
    if not health.ok:
        yield fail(NAME, f"the tracker serves no workflow: {error}", FIX)
    elif detail.get("workflow_refused"):
        yield warn(
            NAME,
            f"the tracker keeps serving the last good workflow {sha}; the edit on disk is "
            f"refused: {error}",
            FIX,
        )
    else:
        yield ok(NAME, f"the tracker serves workflow {sha} (kind {detail.get('kind')})")
    yield from _event_checks(detail.get("events"))


def _event_checks(events: object) -> Iterator[Check]:
    """One line per event source: live or why not, deliveries, failures, last delivery."""
    if not isinstance(events, dict) or not isinstance(events.get("sources"), dict):
        return  # a tracker without event sources (older, or a remote kind)
    subscribers = events.get("subscribers", 0)
    for name, s in sorted(events["sources"].items()):
        if not isinstance(s, dict):
            continue
        counts = (
            f"{s.get('published', 0)} event(s) sent, last {s.get('last_delivery') or 'never'}, "
            f"{s.get('failures', 0)} failure(s)"
        )
        if not s.get("live"):
            yield warn(EVENTS_NAME, f"{name} is not live ({s.get('detail')}); {counts}", EVENTS_FIX)
        elif not subscribers:
            yield warn(
                EVENTS_NAME,
                f"{name} is live but the dispatcher is not subscribed; {counts}",
                "systemctl status symphony-dispatcher",
            )
        else:
            yield ok(EVENTS_NAME, f"{name} is live; {counts}")
