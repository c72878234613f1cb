"""``symphonyctl doctor``: check the host the suite runs on, and say how to fix what is wrong.

Every check yields one ``ok|warn|fail <name>: <detail>`` line, plus a ``fix:`` hint when it
is not ok. Exit 0 when nothing failed (warnings allowed), 1 otherwise. The checks read; they
never change the host. Secrets are only ever measured (present, size, mode), never printed.
"""

from __future__ import annotations

import argparse
import grp
import json
import pwd
import shlex
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from symphonyd.core.errors import SymphonyError
from symphonyd.core.hostconfig import apply_host_overrides
from symphonyd.core.sockets import (
    SERVICES,
    SOCKET_MODE,
    SOCKETS,
    SYSTEM_USERS,
    TARGET_UNIT,
    SocketSpec,
    service_unit,
)
from symphonyd.core.tracker_kinds import KIND_DEFAULTS
from symphonyd.ctl import doctor_worker
from symphonyd.ctl.doctor_base import (
    Check,
    Context,
    fail,
    first_line,
    ok,
    run_command,
    systemd_is_pid1,
    warn,
)
from symphonyd.ctl.doctor_sandbox import check_bwrap, check_nftables, check_resource_limits
from symphonyd.ctl.doctor_tracker import check_tracker_workflow
from symphonyd.ctl.doctor_units import (
    RECEIVER_UNITS,
    receiver_checks,
    systemctl_show,
    unit_check,
)
from symphonyd.ctl.main import EXIT_CHECK_FAILED, EXIT_OK
from symphonyd.ctl.workflow_cmd import validate_workflow
from symphonyd.runtime.hostconfig_file import load_host_config
from symphonyd.tracker.jira_format import jira_credential_usable

DEFAULT_CREDENTIALS_DIR = "/etc/symphony/credentials"
AUDIT_DIR_MODE = 0o700


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check units, sockets, sandbox tools, agents, credentials and disk"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--host-config",
        metavar="PATH",
        help="host config file (default /etc/symphony/symphonyd.toml)",
    )
    parser.add_argument(
        "--credentials-dir",
        metavar="DIR",
        default=DEFAULT_CREDENTIALS_DIR,
        help=f"where LoadCredential= files live (default {DEFAULT_CREDENTIALS_DIR})",
    )
    parser.add_argument(
        "--role",
        choices=("auto", "control", "worker"),
        default="auto",
        help="which host this is (default: auto, a worker when symphony-worker.target is on)",
    )
    parser.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    ctx = Context(args.host_config, Path(args.credentials_dir))
    checks = list(run_checks(ctx, args.role))
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for c in checks:
            print(f"{c.status:<4} {c.name}: {_safe(c.detail)}")
            if c.fix:
                print(f"     fix: {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    if not args.json:
        warned = sum(c.status == "warn" for c in checks)
        print(f"{len(checks)} checks: {failed} failed, {warned} warnings")
    return EXIT_CHECK_FAILED if failed else EXIT_OK


def run_checks(ctx: Context, role: str = "auto") -> Iterator[Check]:
    yield from _run(ctx, [check_host_config])
    if doctor_worker.is_worker(ctx, role):
        # A worker host (docs/design/1100): the launcher, its audit writer and the link.
        yield ok("role", "worker host (symphony-worker.target)")
        yield from _run(ctx, [
            check_users, check_worker_units, check_worker_sockets, check_nftables, check_bwrap,
            check_resource_limits, doctor_worker.check_enrolment, doctor_worker.check_link_forward,
            check_audit_dir,
        ])  # fmt: skip
        return
    yield from _run(ctx, [
        check_workflow, check_tracker_workflow, check_users, check_units, check_sockets,
        check_nftables, check_bwrap, check_resource_limits, check_agent, check_credential,
        check_disk, check_audit_dir,
    ])  # fmt: skip


def _run(ctx: Context, steps: list[Callable[[Context], Iterator[Check]]]) -> Iterator[Check]:
    for step in steps:
        try:
            yield from step(ctx)
        except Exception as exc:  # a broken check must not hide the others
            yield fail(step.__name__.removeprefix("check_"), f"check crashed: {exc!r}", _BUG)


_BUG = "report this as a symphonyctl bug"


def check_host_config(ctx: Context) -> Iterator[Check]:
    try:
        loaded = load_host_config(ctx.host_config_path)
    except SymphonyError as exc:
        yield fail("host-config", exc.message, "correct the file; see docs/configuration.md")
        return
    ctx.host = loaded.config
    where = str(loaded.path) if loaded.path else "no file, built-in defaults"
    for w in loaded.warnings:
        yield warn("host-config", w, "remove or correct the key")
    yield ok("host-config", where)


def check_workflow(ctx: Context) -> Iterator[Check]:
    if ctx.host is None:
        return
    try:
        loaded, config = validate_workflow(
            ctx.host.workflow_path, ctx.host.sandbox.egress_presets_dir
        )
    except SymphonyError as exc:
        yield fail(
            "workflow",
            f"{ctx.host.workflow_path}: {exc.error_code}: {exc.message}",
            f"symphonyctl workflow check {ctx.host.workflow_path}",
        )
        return
    ctx.workflow = apply_host_overrides(config, ctx.host)
    yield ok("workflow", f"{loaded.path} (tracker {config.tracker.kind})")


def check_users(ctx: Context) -> Iterator[Check]:
    missing = [u for u in SYSTEM_USERS if _uid(u) is None]
    if missing:
        yield fail(
            "users",
            f"missing system users: {', '.join(missing)}",
            "systemd-sysusers /usr/lib/sysusers.d/symphonyd.conf (or reinstall the package)",
        )
    else:
        yield ok("users", ", ".join(SYSTEM_USERS))


def check_units(ctx: Context) -> Iterator[Check]:
    if not systemd_is_pid1():
        yield warn(
            "units",
            "systemd is not PID 1; unit states cannot be checked",
            "run the suite on a host booted with systemd (docs/install.md)",
        )
        return
    units = [TARGET_UNIT, *(service_unit(d) for d in SERVICES), *(s.unit for s in SOCKETS)]
    props = systemctl_show([*units, *RECEIVER_UNITS])
    for unit in units:
        yield unit_check(unit, props.get(unit, {}))
    yield from receiver_checks(props)


def check_worker_units(ctx: Context) -> Iterator[Check]:
    if not systemd_is_pid1():
        return  # the role came from the link socket: the units cannot be asked
    units = [*doctor_worker.UNITS, *(s.unit for s in doctor_worker.SPECS)]
    props = systemctl_show(units)
    for unit in units:
        yield unit_check(unit, props.get(unit, {}))


def check_sockets(ctx: Context) -> Iterator[Check]:
    yield from _socket_checks(ctx, SOCKETS)


def check_worker_sockets(ctx: Context) -> Iterator[Check]:
    yield from _socket_checks(ctx, doctor_worker.SPECS)


def _socket_checks(ctx: Context, specs: Iterable[SocketSpec]) -> Iterator[Check]:
    if ctx.host is None:
        return
    runtime = Path(ctx.host.runtime_dir)
    for spec in specs:
        path = runtime / spec.name
        name = f"socket {spec.name}"
        try:
            st = path.lstat()
        except FileNotFoundError:
            yield fail(name, f"{path} does not exist", f"systemctl start {spec.unit}")
            continue
        if not stat.S_ISSOCK(st.st_mode):
            yield fail(
                name, f"{path} is not a socket", f"remove it, then systemctl restart {spec.unit}"
            )
            continue
        mode = stat.S_IMODE(st.st_mode)
        want_uid = _uid(spec.owner)
        problems = []
        if mode != SOCKET_MODE:
            problems.append(f"mode {mode:04o}, want {SOCKET_MODE:04o}")
        if want_uid is None:
            problems.append(f"user {spec.owner} does not exist")
        elif st.st_uid != want_uid:
            problems.append(f"owner {_user(st.st_uid)}, want {spec.owner}")
        if problems:
            yield fail(
                name,
                f"{path}: {'; '.join(problems)}",
                f"check SocketMode=/SocketUser= in {spec.unit}; systemctl restart {spec.unit}",
            )
        else:
            yield ok(name, f"{SOCKET_MODE:04o} {spec.owner} (server {spec.server})")


def check_agent(ctx: Context) -> Iterator[Check]:
    if ctx.workflow is None:
        return
    runtime = ctx.workflow.agent.runtime
    name = f"agent {runtime}"
    try:
        words = shlex.split(ctx.workflow.agent_command)
    except ValueError as exc:
        yield fail(name, f"command does not parse: {exc}", f"fix {runtime}.command")
        return
    exe = shutil.which(words[0]) if words else None
    if exe is None:
        yield fail(
            name,
            f"{words[0] if words else '(empty)'} not found on PATH",
            f"install the {runtime} CLI or set {runtime}.command to its absolute path",
        )
        return
    res = run_command([exe, "--version"])
    if res is None or res.returncode != 0:
        why = "timed out" if res is None else f"exit {res.returncode}"
        yield fail(name, f"{exe} --version failed ({why})", f"reinstall the {runtime} CLI")
    else:
        yield ok(name, f"{exe}: {first_line(res.stdout or res.stderr)}")


def check_credential(ctx: Context) -> Iterator[Check]:
    """The tracker credential file: the tracker and audit units load it with
    ``LoadCredential=``, so systemd refuses to start them without it (243/CREDENTIALS)
    whatever the tracker kind; only its content depends on the kind."""
    if ctx.host is None or ctx.workflow is None:
        return
    kind = (ctx.workflow.tracker.kind or "").strip().lower()
    defaults = KIND_DEFAULTS.get(kind)
    path = ctx.credentials_dir / ctx.host.tracker_credential
    secret_keys = defaults.secret_keys if defaults is not None else ()
    needs_token = bool(secret_keys)
    fix = f"write the token to {path} (mode 0600, root), then systemctl restart symphony-tracker"
    # A `$NAME` reference may also be satisfied from the tracker unit's environment, which
    # this process cannot see: then the file may stay empty, but it must exist.
    refs = [ctx.workflow.tracker.provider_env_refs[k] for k in secret_keys
            if k in ctx.workflow.tracker.provider_env_refs]  # fmt: skip
    try:
        st = path.stat()
    except OSError:
        if refs:
            need = f"the tracker needs ${refs[0]} in its environment or the token here"
        else:
            need = f"tracker kind {kind}" + ("" if needs_token else " needs no token")
        yield fail(
            "credential",
            f"{path} does not exist ({need}); the tracker and audit units load it "
            "(LoadCredential=) and cannot start without it",
            fix if needs_token and not refs else f"install -m 0600 /dev/null {path}",
        )
        return
    if stat.S_IMODE(st.st_mode) & 0o077:
        yield fail(
            "credential",
            f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o})",
            f"chmod 0600 {path}",
        )
    elif not needs_token:
        yield ok("credential", f"tracker kind {kind} needs no credential ({path} present)")
    elif st.st_size == 0 and refs:
        yield warn(
            "credential", f"{path} is empty; the tracker needs ${refs[0]} in its environment", fix
        )
    elif st.st_size == 0:
        yield fail("credential", f"{path} is empty (tracker kind {kind})", fix)
    elif kind == "jira" and not jira_credential_usable(path):
        yield fail(
            "credential",
            f"{path} does not hold 'account-email:api-token' on one line (value not shown)",
            fix.replace("the token", "account-email:api-token"),
        )
    else:
        yield ok("credential", f"{path} present ({st.st_size} bytes, value not shown)")


def check_disk(ctx: Context) -> Iterator[Check]:
    if ctx.workflow is None:
        return
    root = ctx.workflow.workspace.root
    want = ctx.workflow.workspace.cleanup.min_free_disk_mb
    probe = Path(root)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free // (1024 * 1024)
    detail = f"{free_mb} MiB free under {root} (minimum {want} MiB)"
    if free_mb < want:
        yield fail(
            "disk",
            detail,
            "symphonyctl prune --older-than 7d, or free space, or lower "
            "workspace.cleanup.min_free_disk_mb",
        )
    else:
        yield ok("disk", detail)


def check_audit_dir(ctx: Context) -> Iterator[Check]:
    if ctx.host is None:
        return
    path = Path(ctx.host.audit_dir)
    try:
        st = path.stat()
    except OSError:
        yield warn(
            "audit-dir", f"{path} does not exist yet", "systemctl start symphony-audit.service"
        )
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode != AUDIT_DIR_MODE:
        yield fail(
            "audit-dir",
            f"{path} has mode {mode:04o}, want {AUDIT_DIR_MODE:04o}",
            f"chmod 0700 {path}",
        )
    else:
        yield ok("audit-dir", f"{path} {mode:04o} {_user(st.st_uid)}:{_group(st.st_gid)}")


def _uid(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _safe(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
