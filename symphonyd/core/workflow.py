"""Parse WORKFLOW.md text into a WorkflowDefinition (SPEC 4.1.2, 5.2).

The file is Markdown with optional YAML front matter between a first line ``---`` and the
next line ``---``. The front matter must be a map; the rest, trimmed, is the prompt template.

WORKFLOW.md comes from a repository, so it is treated as untrusted input: the file is capped
at :data:`MAX_WORKFLOW_BYTES` and its front matter at :data:`MAX_FRONT_MATTER_CHARS`, YAML is
read with the safe loader, and the composed YAML graph may not expand (through anchors and
aliases) past :data:`MAX_YAML_NODES` nodes or recurse into itself. Every failure is a
:class:`WorkflowError`; see docs/design/0101-workflow-yaml-limits.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from symphonyd.core.config_values import decode_bounded
from symphonyd.core.errors import WorkflowError

MAX_WORKFLOW_BYTES = 1 << 20
# PyYAML's pure-Python scanner runs at tens of microseconds per token; a front matter of a few
# KiB is normal, and this cap keeps a hostile one from stalling the dispatcher for long.
MAX_FRONT_MATTER_CHARS = 128 * 1024
# Nodes after alias expansion: a legitimate front matter has hundreds, a "billion laughs"
# document has billions while composing to a few dozen nodes.
MAX_YAML_NODES = 100_000

MISSING_WORKFLOW_FILE = "missing_workflow_file"
WORKFLOW_PARSE_ERROR = "workflow_parse_error"
FRONT_MATTER_NOT_A_MAP = "workflow_front_matter_not_a_map"

_FENCE = "---"


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """The front matter root map and the trimmed Markdown body."""

    config: dict[str, Any]
    prompt_template: str


def parse_workflow_bytes(data: bytes) -> WorkflowDefinition:
    """Size-check and decode file bytes (UTF-8, optional BOM), then :func:`parse_workflow`."""
    text = decode_bounded(
        data,
        limit=MAX_WORKFLOW_BYTES,
        what="workflow file",
        error=lambda message: WorkflowError(message, code=WORKFLOW_PARSE_ERROR),
    )
    return parse_workflow(text)


def parse_workflow(text: str) -> WorkflowDefinition:
    """Split front matter from body and decode the front matter."""
    if len(text) > MAX_WORKFLOW_BYTES:
        raise WorkflowError(
            f"workflow text is longer than {MAX_WORKFLOW_BYTES} characters",
            code=WORKFLOW_PARSE_ERROR,
        )
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    if not lines or lines[0].rstrip() != _FENCE:
        return WorkflowDefinition(config={}, prompt_template=text.strip())
    for index in range(1, len(lines)):
        if lines[index].rstrip() == _FENCE:
            front = "\n".join(lines[1:index])
            body = "\n".join(lines[index + 1 :])
            return WorkflowDefinition(config=_front_matter(front), prompt_template=body.strip())
    raise WorkflowError(
        "front matter starts with '---' on line 1 but has no closing '---' line",
        code=WORKFLOW_PARSE_ERROR,
    )


def _front_matter(source: str) -> dict[str, Any]:
    if len(source) > MAX_FRONT_MATTER_CHARS:
        raise WorkflowError(
            f"front matter is {len(source)} characters; the limit is {MAX_FRONT_MATTER_CHARS}",
            code=WORKFLOW_PARSE_ERROR,
        )
    value = _safe_yaml(source)
    if value is None:
        # Empty or comment-only front matter is an empty config, like no front matter at all.
        return {}
    if not isinstance(value, dict):
        raise WorkflowError(
            f"front matter must be a YAML map, got {type(value).__name__}",
            code=FRONT_MATTER_NOT_A_MAP,
        )
    return value


def _safe_yaml(source: str) -> Any:
    loader = yaml.SafeLoader(source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except WorkflowError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 2}, column {mark.column + 1}" if mark else ""
        raise WorkflowError(
            f"invalid YAML front matter{where}: {exc.problem or exc.context}",
            code=WORKFLOW_PARSE_ERROR,
        ) from None
    except RecursionError:
        raise WorkflowError(
            "invalid YAML front matter: nested too deeply", code=WORKFLOW_PARSE_ERROR
        ) from None
    except Exception as exc:
        # PyYAML has failure modes outside YAMLError (e.g. ValueError for "2020-13-45" read
        # as a date); on hostile input every one of them is simply a parse error.
        raise WorkflowError(
            f"invalid YAML front matter: {type(exc).__name__}", code=WORKFLOW_PARSE_ERROR
        ) from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Refuse alias graphs that expand past MAX_YAML_NODES or refer to themselves."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise WorkflowError(
                "invalid YAML front matter: an alias refers to its own anchor",
                code=WORKFLOW_PARSE_ERROR,
            )
        on_path.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                _cap(total)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                _cap(total)
        on_path.discard(key)
        sizes[key] = total
        return total

    size(root)


def _cap(total: int) -> None:
    if total > MAX_YAML_NODES:
        raise WorkflowError(
            f"invalid YAML front matter: expands to more than {MAX_YAML_NODES} nodes "
            "(anchors and aliases)",
            code=WORKFLOW_PARSE_ERROR,
        )
