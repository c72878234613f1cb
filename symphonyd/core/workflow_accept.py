"""The one rule for "is this WORKFLOW.md edit acceptable", shared by every daemon that loads it.

The dispatcher is the authority on the workflow (it validates before dispatching, SPEC 6.3),
but the tracker daemon reads the same file itself (it must not take tracker configuration
from another process: it holds the credential). If the two judged an edit differently, an
edit the dispatcher refused could still be adopted, or dropped, by the tracker, and the suite
would run on two workflows at once. Both call :func:`accepted_service_config`, so they accept
exactly the same versions and keep the same last good one (``symphonyctl workflow check``
applies it too). See docs/design/0155-one-last-good-workflow.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from symphonyd.core.config import (
    BUILTIN_TRACKER_KINDS,
    ServiceConfig,
    build_service_config,
    validate_for_dispatch,
)
from symphonyd.core.hostconfig import HostConfig, apply_host_overrides
from symphonyd.core.template import compile_prompt
from symphonyd.core.workflow import WorkflowDefinition


def accepted_service_config(
    definition: WorkflowDefinition,
    *,
    env: Mapping[str, str],
    workflow_dir: str | Path,
    host: HostConfig | None = None,
) -> ServiceConfig:
    """Build, preflight-validate and compile the prompt; raises the first SymphonyError."""
    cfg = build_service_config(definition, env=env, workflow_dir=workflow_dir)
    if host is not None:
        cfg = apply_host_overrides(cfg, host)
    errors = validate_for_dispatch(cfg, BUILTIN_TRACKER_KINDS)
    if errors:
        raise errors[0]
    # A template that does not compile would fail every run: the edit is refused up front.
    compile_prompt(definition.prompt_template)
    return cfg
