"""``symphonyctl workflow``: check a WORKFLOW.md and preview its prompt, offline.

``check`` runs what the dispatcher runs before dispatching (parse, typed config, SPEC 6.3
preflight, template compile) on the named file or, by default, on the installed workflow
(the host config's ``workflow``), against the caller's environment, so ``$NAME`` references
resolve as they would for a daemon started with the same variables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from symphonyd.core.config import ServiceConfig
from symphonyd.core.egress_presets import DEFAULT_OPERATOR_DIR, expand, preset_dirs
from symphonyd.core.errors import SymphonyError, ValidationError
from symphonyd.core.issue import Issue
from symphonyd.core.prompt_guard import guarded_issue_data, guarded_prompt
from symphonyd.core.template import compile_prompt
from symphonyd.core.workflow_accept import accepted_service_config
from symphonyd.ctl.main import EXIT_OK, EXIT_USAGE
from symphonyd.runtime.hostconfig_file import load_host_config
from symphonyd.runtime.workflow_file import LoadedWorkflow, load_workflow, resolve_workflow_path
from symphonyd.tracker.provider_check import check_provider

MAX_ISSUE_FILE_BYTES = 1 << 20


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("workflow", help="check or preview a WORKFLOW.md")
    sub = group.add_subparsers(dest="workflow_command", metavar="ACTION", required=True)

    check = sub.add_parser(
        "check", help="validate a workflow file (default: the installed one the daemons run)"
    )
    check.add_argument(
        "path",
        nargs="?",
        help="workflow file (default: the host config's workflow, /etc/symphony/WORKFLOW.md)",
    )
    check.add_argument(
        "--host-config",
        metavar="FILE",
        help="host config naming the installed workflow "
        "(default $SYMPHONY_CONFIG, else /etc/symphony/symphonyd.toml)",
    )
    check.set_defaults(func=run_check)

    render = sub.add_parser("render", help="print the prompt a workflow renders for an issue")
    render.add_argument("path", help="workflow file")
    render.add_argument("--issue", required=True, metavar="FILE.json", help="issue as JSON")
    render.add_argument("--attempt", type=_attempt, default=None, help="retry attempt (1-based)")
    render.set_defaults(func=run_render)


def validate_workflow(
    path: str | None, presets_dir: str = DEFAULT_OPERATOR_DIR
) -> tuple[LoadedWorkflow, ServiceConfig]:
    """Everything the dispatcher checks before dispatching, and the ``@name`` egress presets
    the launcher would expand (from ``presets_dir`` and the shipped ones); raises
    SymphonyError."""
    loaded = load_workflow(resolve_workflow_path(path))
    config = accepted_service_config(
        loaded.definition, env=dict(os.environ), workflow_dir=loaded.directory
    )
    check_provider(config.tracker, dict(os.environ))  # the adapter's own key rules
    dirs = preset_dirs(presets_dir)
    for key, egress in (
        ("egress", config.sandbox.egress),
        ("hooks_egress", config.sandbox.hooks_egress),
    ):
        for field in ("allowed_domains", "denied_domains"):
            expand(getattr(egress, field), dirs, f"sandbox.{key}.{field}")
    return loaded, config


def run_check(args: argparse.Namespace) -> int:
    try:
        # The installed workflow, not ./WORKFLOW.md: an operator checking "the workflow"
        # from any directory means the one the daemons load.
        host_config = args.host_config or os.environ.get("SYMPHONY_CONFIG") or None
        host = load_host_config(host_config).config
        path = args.path or host.workflow_path
        loaded, config = validate_workflow(path, host.sandbox.egress_presets_dir)
    except SymphonyError as exc:
        return _fail(exc)
    prompt = loaded.definition.prompt_template
    print(
        f"ok: {loaded.path} (tracker {config.tracker.kind}, runtime {config.agent.runtime}, "
        f"workspace root {config.workspace.root}, "
        f"prompt {len(prompt)} chars{'' if prompt else ' (default prompt)'}, "
        f"sha256 {loaded.sha256[:12]})"
    )
    return EXIT_OK


def run_render(args: argparse.Namespace) -> int:
    try:
        loaded = load_workflow(resolve_workflow_path(args.path))
        issue = Issue.from_dict(_read_issue(args.issue))
        # Exactly what the launcher sends: fenced, capped fields and the preamble (0502).
        template = compile_prompt(loaded.definition.prompt_template)
        prompt = guarded_prompt(template.render(guarded_issue_data(issue), args.attempt))
    except SymphonyError as exc:
        return _fail(exc)
    sys.stdout.write(prompt if prompt.endswith("\n") else prompt + "\n")
    return EXIT_OK


def _read_issue(path: str) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ISSUE_FILE_BYTES + 1)
    except OSError as exc:
        raise ValidationError(f"cannot read issue file {path}: {exc.strerror}") from None
    if len(data) > MAX_ISSUE_FILE_BYTES:
        raise ValidationError(f"issue file {path} is larger than {MAX_ISSUE_FILE_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"issue file {path} is not valid JSON: {exc}") from None


def _attempt(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("attempt is 1-based")
    return value


def _fail(exc: SymphonyError) -> int:
    print(f"error: {exc.error_code}: {exc.message}", file=sys.stderr)
    return EXIT_USAGE
