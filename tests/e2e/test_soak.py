"""Soak: a few hundred runs with stops, releases, slow hooks, restarts and a pause (issue 22.5).

Once, after a stop during a slow ``before_run`` hook and a release, three hook units of the
next issues were SIGKILLed. This drives the installed suite (the .deb, systemd as PID 1, the
sandbox on: every hook and agent is a transient unit in a network namespace of its own) with
a cheap agent (bench/data/zero_work_app_server.sh: one turn, then ``tracker_move`` to hand
off), a ``before_run`` hook that sleeps for the issues titled "slow", and a driver that stops
issues (many inside that slow hook), releases some of them, restarts the launcher twice and
the dispatcher once (paused around it). At the end every issue is where it should be (handed
off, or held because it was stopped and not released), no issue ever had two units at once,
the audit chain verifies, and every process systemd killed is accounted for by a stop of that
same issue or a restart the test made; anything else fails with the unit and its journal lines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.nspawn import Container
from tests.e2e.conftest import RELEASES_UNDER_TEST
from tests.e2e.kill_ledger import overlaps, read_failures, read_units
from tests.e2e.test_suite import journal_dump, start_suite, status_json, unit_state, wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.agents]

REPO = Path(__file__).resolve().parents[2]
ZERO_WORK = REPO / "bench" / "data" / "zero_work_app_server.sh"
AGENT_BIN = "/opt/symphony-agents/bin/zero-work"
CODEX = "/opt/symphony-agents/bin/codex --disable plugins app-server"
ISSUES = int(os.environ.get("SYMPHONY_SOAK_ISSUES", "200"))
SLOW_S = 6  # how long a hook sleeps for a "slow" or "late" issue
LINGER_S = 3  # how long a "linger" agent waits before it answers
# A stop or restart explains a kill up to this long after the command returned (PID 1 logs
# the end of a unit a moment after systemctl returns).
GRACE_S = 10.0
PREFIXES = ("symphony-hook-", "symphony-agent-")
PATTERNS = tuple(f"{p}*" for p in PREFIXES)
LOOK = (
    'systemctl list-units --plain --no-legend --full --type=service --state=active -- "$@"; '
    "echo ---; grep -l -x 'state: Human Review' /var/lib/symphony/issues/*.md"
)

WORKFLOW = f"""---
tracker:
  kind: local
  provider:
    directory: /var/lib/symphony/issues
    tool_states: [Human Review]
  active_states: [Todo, In Progress]
  terminal_states: [Done, Cancelled]
polling:
  interval_ms: 1000
workspace:
  root: /var/lib/symphony/workspaces
hooks:
  after_create: |
    printf '%s\\n' "$ISSUE_IDENTIFIER" > ISSUE.md
    case "$ISSUE_TITLE" in
      *codex*) touch CODEX ;; *linger*) touch LINGER ;; *late*) sleep {SLOW_S} ;;
    esac
  before_run: |
    case "$ISSUE_TITLE" in *slow*) sleep {SLOW_S} ;; esac
  after_run: |
    date +%s >> .runs
  timeout_ms: 120000
agent:
  runtime: codex
  max_concurrent_agents: 6
  max_turns: 2
  # A retry that comes due while every slot is taken is requeued with a doubled backoff
  # (SPEC 8.4): capped, so the last few issues do not idle for minutes behind it.
  max_retry_backoff_ms: 5000
codex:
  # The real Codex CLI on the demo endpoint for the issues titled "codex", the zero-work
  # stand-in for the rest (after a pause for "linger", well inside read_timeout_ms on a
  # loaded machine): all through the same sandboxed launch path.
  command: >-
    if [ -e CODEX ]; then exec {CODEX}; fi;
    if [ -e LINGER ]; then sleep {LINGER_S}; fi; exec {AGENT_BIN}
  approval_policy: never
  thread_sandbox: workspace-write
  read_timeout_ms: 30000
---
Work on {{{{ issue.identifier }}}}: {{{{ issue.title }}}}. Hand it off when done.
"""

FILE_ISSUES = """\
import sys
from symphonyd.tracker.local_store import LocalStore
store = LocalStore("/var/lib/symphony/issues")
for spec in sys.stdin.read().split():
    ident, kind = spec.split(":")
    store.create(ident, title=f"soak {kind} {ident}", state="Todo", description="Nothing.")
"""


def ident(i: int) -> str:
    return f"SOAK-{i:03d}"


@dataclass
class Plan:
    """What the driver does to whom, chosen up front so a rerun does the same.

    Titles pick what the hooks and the agent do: "slow" (before_run sleeps), "late"
    (after_create sleeps), "linger" (the agent waits before it answers), "codex" (the real
    Codex CLI works on it), "fast" (nothing)."""

    kind: dict[str, str] = field(default_factory=dict)
    stop_in: dict[str, str] = field(default_factory=dict)  # issue -> the unit to stop it in
    release: set[str] = field(default_factory=set)  # of the stopped, released again

    @classmethod
    def make(cls, n: int) -> Plan:
        plan = cls()
        for i in range(1, n + 1):
            issue = ident(i)
            if i % 7 == 3:
                plan.kind[issue] = "slow"
                if i % 2 == 1:  # stopped inside the sleep; two in three released again
                    plan.stop_in[issue] = f"symphony hook before_run for {issue}"
                    if i % 4 != 1:
                        plan.release.add(issue)
            elif i % 20 == 10:
                plan.kind[issue] = "codex"
            elif i % 17 == 5:
                # Stopped inside the after_create sleep, or while the agent lingers.
                late = i % 2 == 1
                plan.kind[issue] = "late" if late else "linger"
                unit = "hook after_create" if late else "agent"
                plan.stop_in[issue] = f"symphony {unit} for {issue}"
                if i % 3 != 0:
                    plan.release.add(issue)
            else:
                plan.kind[issue] = "fast"
        return plan

    def of(self, kind: str) -> set[str]:
        return {issue for issue, k in self.kind.items() if k == kind}


@dataclass
class Window:
    """An operator action the test made, from its command's start to its return."""

    what: str  # "stop", "release", "restart symphony-launcher.service", "pause", ...
    issue: str | None
    t0: float
    t1: float
    output: str = ""

    def covers(self, when: float) -> bool:
        return self.t0 <= when <= self.t1 + GRACE_S


class Driver:
    def __init__(self, c: Container, plan: Plan) -> None:
        self.c = c
        self.plan = plan
        self.actions: list[Window] = []
        self.stopped: dict[str, Window] = {}  # issue -> its (effective) stop
        self.released: set[str] = set()

    def act(self, what: str, issue: str | None, argv: list[str]) -> Window:
        t0 = time.time()
        out = self.c.run(argv, check=False, timeout=180)
        window = Window(what, issue, t0, time.time(), (out.stdout + out.stderr).strip())
        self.actions.append(window)
        return window

    def stop(self, issue: str) -> None:
        window = self.act("stop", issue, ["symphonyctl", "stop", issue])
        # A run that handed off a moment ago is no longer ours to stop: nothing held.
        if "stopped" in window.output or "held before dispatch" in window.output:
            self.stopped[issue] = window

    def release(self, issue: str) -> None:
        self.act("release", issue, ["symphonyctl", "release", issue])
        self.released.add(issue)

    def restart(self, daemon: str) -> None:
        unit = f"symphony-{daemon}.service"
        window = self.act(f"restart {unit}", None, ["systemctl", "restart", unit])
        wait_until(f"{unit} back", lambda: unit_state(self.c, unit) == "running")
        window.t1 = time.time()

    def look(self) -> tuple[dict[str, str], set[str]]:
        """Active hook and agent units (description -> unit) and the handed-off issues, in
        one cheap call (no Python start in the container: the driver must not eat the CPU
        the soak runs on)."""
        out = self.c.run(
            ["sh", "-c", LOOK, "look", *PATTERNS], check=False, timeout=60
        ).stdout.split("---\n", 1)
        units: dict[str, str] = {}
        for line in out[0].splitlines():
            words = line.split(None, 4)
            if len(words) == 5:
                units[words[4]] = words[0]
        done = {Path(p).stem for p in (out[1] if len(out) > 1 else "").split()}
        return units, done

    def settled(self, done: set[str], n: int) -> bool:
        held_for_good = set(self.stopped) - self.released
        return all(ident(i) in done or ident(i) in held_for_good for i in range(1, n + 1))


def drive(c: Container, d: Driver, n: int, budget_s: float) -> set[str]:
    """Runs the soak until every issue settled; returns the handed-off issues."""
    plan = d.plan
    deadline = time.monotonic() + budget_s
    milestones: list[tuple[float, Callable[[], None]]] = [
        (0.25, lambda: d.restart("launcher")),
        (0.5, lambda: pause_restart_resume(d)),
        (0.75, lambda: d.restart("launcher")),
    ]
    done: set[str] = set()
    while time.monotonic() < deadline:
        units, done = d.look()
        for issue, unit in sorted(plan.stop_in.items()):
            if unit in units and issue not in d.stopped:
                d.stop(issue)
        for issue, window in list(d.stopped.items()):
            if issue in plan.release and issue not in d.released and time.time() > window.t1 + 1:
                d.release(issue)
        while milestones and len(done) >= milestones[0][0] * n:
            milestones.pop(0)[1]()
        if d.settled(done, n) and not milestones:
            status = status_json(c)
            if not status["running"] and not status["retrying"]:
                return done
        time.sleep(0.5)
    raise AssertionError(
        f"soak did not settle: {len(done)} of {n} handed off\n{journal_dump(c)[-6000:]}"
    )


def pause_restart_resume(d: Driver) -> None:
    d.act("pause", None, ["symphonyctl", "pause", "--reason", "soak"])
    d.restart("dispatcher")
    d.act("resume", None, ["symphonyctl", "resume"])


def explain(issue: str | None, since: float | None, when: float, d: Driver) -> Window | None:
    """The action of the test that accounts for a kill or failure at ``when`` of ``issue``'s
    unit or run (which started at ``since``): a stop of that issue, or a launcher restart
    that began while it was running (a stopping launcher stops its runs, a new one clears
    what the old one left; a run the new launcher started has nothing to do with it)."""
    for window in d.actions:
        restart = window.what == "restart symphony-launcher.service"
        if restart and window.covers(when) and since is not None and since < window.t0:
            return window
        if window.what == "stop" and window.issue == issue and window.covers(when):
            return window
    return None


# The soak runs once, on Debian 12: CI time is tight, and its subject is the launcher's own
# process handling, not the release (the other e2e tests cover both releases).
SOAK_RELEASES = [r for r in RELEASES_UNDER_TEST if r == "bookworm"]


@pytest.mark.timeout(1200)  # a soak: minutes by design
@pytest.mark.parametrize("release", SOAK_RELEASES)
def test_soak_stops_releases_slow_hooks_and_restarts(
    container: Container, deb_file: Path, tmp_path: Path
) -> None:
    c = container
    began = time.monotonic()
    start_suite(c, deb_file)
    c.copy_in(ZERO_WORK, AGENT_BIN)
    c.run(["chmod", "0755", AGENT_BIN])
    before = status_json(c)["config"]["fingerprint"]
    c.run(["tee", "/etc/symphony/WORKFLOW.md"], input=WORKFLOW)
    wait_until("soak workflow loaded", lambda: status_json(c)["config"]["fingerprint"] != before)

    plan = Plan.make(ISSUES)
    specs = " ".join(f"{issue}:{kind}" for issue, kind in plan.kind.items())
    c.run(["python3", "-c", FILE_ISSUES], input=specs)
    d = Driver(c, plan)
    soak_started = time.monotonic()
    done = drive(c, d, ISSUES, budget_s=600)
    soak_s = time.monotonic() - soak_started

    # Final states: handed off, or held because it was stopped and never released.
    status = status_json(c)
    held = {h["issue_identifier"] for h in status["held"]}
    held_for_good = set(d.stopped) - d.released
    assert held <= held_for_good, (held - held_for_good, status["held"])
    for issue in held_for_good - done:
        assert issue in held, (issue, status["held"])
    in_before_run = {i for i in d.stopped if "before_run" in plan.stop_in.get(i, "")}
    assert in_before_run, "no stop landed inside a slow before_run hook"
    codex_done = plan.of("codex") & done
    assert codex_done, "no issue was handed off by the real Codex CLI"

    # Kept beside the test's tmp directory (the container's root is removed) for a post-mortem.
    journal = c.run(["journalctl", "--no-pager", "-o", "json", "_PID=1"], timeout=120).stdout
    (tmp_path / "pid1.json").write_text(journal)
    events = c.run(
        ["journalctl", "--no-pager", "-o", "json", "-u", "symphony-launcher.service",
         "SYMPHONY_EVENT=hook", "SYMPHONY_EVENT=run"],
        timeout=120,
    ).stdout  # fmt: skip
    (tmp_path / "launcher-events.json").write_text(events)

    # Every unit of one issue ran after the previous one ended.
    units = read_units(journal.splitlines(), PREFIXES)
    doubled = [(a.unit, a.description, b.unit, b.description) for a, b in overlaps(units.values())]
    assert not doubled, doubled
    # Every process systemd killed, every hook or run that failed, has a cause the test made.
    kills = [
        (life.issue, life.started, when, line)
        for life in units.values()
        for when, line in life.kills
    ]
    failures = [
        (f.issue, f.run_started, f.when, f.line) for f in read_failures(events.splitlines())
    ]
    unexplained = [
        f"{issue} (since {since}) at {when:.3f}: {line}"
        for issue, since, when, line in [*kills, *failures]
        if explain(issue, since, when, d) is None
    ]
    agents = sum(1 for u in units.values() if u.description.startswith("symphony agent"))
    hooks = sum(1 for u in units.values() if u.description.startswith("symphony hook"))
    stopped_in = [plan.stop_in.get(i, "?").split(" for ")[0] for i in d.stopped]
    phases = {p: stopped_in.count(p) for p in sorted(set(stopped_in))}
    summary = (
        f"SOAK issues={ISSUES} handed_off={len(done)} codex={len(codex_done)} "
        f"agent_units={agents} hook_units={hooks} stops={len(d.stopped)} "
        f"stops_by_unit={phases} releases={len(d.released)} kills={len(kills)} "
        f"failures={len(failures)} unexplained={len(unexplained)} "
        f"soak_s={soak_s:.0f} total_s={time.monotonic() - began:.0f}"
    )
    print(summary)
    actions = "\n".join(f"{w.what} {w.issue} {w.t0:.3f}-{w.t1:.3f} {w.output}" for w in d.actions)
    assert not unexplained, "\n".join([summary, *unexplained, "actions:", actions])
    assert agents >= ISSUES - len(held_for_good), summary

    verify = c.run(["symphonyctl", "audit", "verify", "--dir", "/var/lib/symphony/audit"])
    assert verify.stdout.startswith("ok "), verify.stdout
