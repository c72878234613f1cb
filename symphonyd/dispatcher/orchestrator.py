"""The single authoritative scheduler (SPEC 7, 8, 16) as a deterministic async state machine.

Every public coroutine takes the one lock, so ticks, retry timers, run events and operator
commands are serialised exactly as SPEC 7.4 asks. Time comes from an injected clock and the
outside world from the ports, so tests drive it step by step. The daemon decides *when* to
call :meth:`tick` and :meth:`fire_due_retries`; this class decides *what* happens
(docs/design/0700).
"""

from __future__ import annotations

from symphonyd.dispatcher.controls import ControlError, Controls
from symphonyd.dispatcher.recovery import Recovery
from symphonyd.dispatcher.scheduler import Scheduler
from symphonyd.dispatcher.workspace_sweep import WorkspaceSweep

__all__ = ["ControlError", "Orchestrator"]


class Orchestrator(Scheduler, Recovery, Controls, WorkspaceSweep):
    """Engine state plus ticks (:mod:`scheduler`), startup (:mod:`recovery`), operator
    controls (:mod:`controls`) and workspace age cleanup (:mod:`workspace_sweep`)."""
