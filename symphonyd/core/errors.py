"""The typed error every layer raises.

Each error carries a stable machine-readable ``code`` (the SPEC's error class names, e.g.
``missing_workflow_file``) and a human message. Callers branch on ``code``; operators read the
message. ``details`` holds small JSON-safe context and must never hold a secret.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SymphonyError(Exception):
    """Base class: a stable ``code`` plus a human-readable message."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        # An instance may narrow the class code (e.g. WorkflowError covers several SPEC classes).
        self.error_code: str = code or type(self).code
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """The ``{"code", "message"}`` envelope used by IPC and HTTP error replies."""
        out: dict[str, Any] = {"code": self.error_code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


class ValidationError(SymphonyError):
    """Input failed typed validation (IPC payloads, issue records, config values)."""

    code = "invalid_input"


class WorkflowError(SymphonyError):
    """WORKFLOW.md could not be loaded: missing_workflow_file, workflow_parse_error, ..."""

    code = "workflow_parse_error"


class ConfigError(SymphonyError):
    """A configuration value is invalid (workflow front matter or host config)."""

    code = "invalid_config"


class TemplateError(SymphonyError):
    """Prompt template failed: template_parse_error or template_render_error."""

    code = "template_render_error"


class WorkspaceError(SymphonyError):
    """A workspace path is unsafe or could not be prepared."""

    code = "workspace_error"


class TrackerError(SymphonyError):
    """Tracker adapter failure; code is one of the SPEC 11.4 categories."""

    code = "tracker_request"
