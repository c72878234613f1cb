"""Strict Liquid rendering of the prompt template (SPEC 5.4, 12).

Strictness: an undefined variable and an unknown filter are errors, both at render time and,
where static analysis can see them, already when the template is compiled, so
``symphonyctl workflow check`` catches a typo in a branch that rarely runs.

File access: the environment has no usable loader and the ``include``/``render`` tags are not
registered, so a template cannot read any file (prompts must never pull in secret-bearing
files). Issue text is only ever data: Liquid never re-evaluates what a variable outputs.

Resource use is bounded (loop iterations, output size, context depth) because the template
comes from a repository and the data from a tracker. The bounded output stream normalises line
endings (``\r\n`` and ``\r`` become ``\n``), which prompts do not mind.
See docs/design/0103-prompt-templates.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from liquid import BoundTemplate, Environment, StrictUndefined
from liquid.exceptions import LiquidError, ResourceLimitError
from liquid.loader import BaseLoader, TemplateSource

from symphonyd.core.errors import TemplateError
from symphonyd.core.issue import Issue

DEFAULT_PROMPT = "You are working on an issue from the configured tracker."
TEMPLATE_PARSE_ERROR = "template_parse_error"
TEMPLATE_RENDER_ERROR = "template_render_error"
INPUT_NAMES = frozenset({"issue", "attempt"})
_FILE_TAGS = ("include", "render")
_MAX_SOURCE_CHARS = 1 << 20


class _RefusingLoader(BaseLoader):
    """Every template lookup fails: prompts are single, self-contained documents."""

    def get_source(self, env: Environment, template_name: str, **kwargs: object) -> TemplateSource:
        raise TemplateError(
            "prompt templates cannot load other templates or files",
            code=TEMPLATE_RENDER_ERROR,
        )


class _PromptEnvironment(Environment):
    loop_iteration_limit = 100_000
    output_stream_limit = 4 << 20
    local_namespace_limit = 1 << 20
    context_depth_limit = 30


def _environment() -> Environment:
    env = _PromptEnvironment(
        undefined=StrictUndefined, strict_filters=True, loader=_RefusingLoader()
    )
    for tag in _FILE_TAGS:
        env.tags.pop(tag, None)
    return env


_ENV = _environment()


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A parsed prompt template; render it once per run attempt."""

    source: str
    _template: BoundTemplate | None

    def render(self, issue: Issue | Mapping[Any, Any], attempt: int | None = None) -> str:
        if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int)):
            raise TemplateError("attempt must be an integer or null", code=TEMPLATE_RENDER_ERROR)
        if self._template is None:
            return DEFAULT_PROMPT
        data = issue.to_dict() if isinstance(issue, Issue) else _string_keys(issue)
        try:
            return self._template.render(issue=data, attempt=attempt)
        except TemplateError:
            raise
        except ResourceLimitError as exc:
            raise TemplateError(
                f"prompt template exceeded a resource limit: {_describe(exc, self.source)}",
                code=TEMPLATE_RENDER_ERROR,
            ) from None
        except LiquidError as exc:
            raise TemplateError(_describe(exc, self.source), code=TEMPLATE_RENDER_ERROR) from None
        except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
            # Filters raise plain Python errors on odd data (e.g. divided_by: 0).
            raise TemplateError(
                f"prompt template failed: {type(exc).__name__}", code=TEMPLATE_RENDER_ERROR
            ) from None


def compile_prompt(source: str) -> PromptTemplate:
    """Parse (and statically check) a template; cached by source text."""
    return _compile_cached(source)


def render_prompt(source: str, issue: Issue | Mapping[Any, Any], attempt: int | None = None) -> str:
    """Compile (cached) and render in one call."""
    return compile_prompt(source).render(issue, attempt)


@lru_cache(maxsize=32)
def _compile_cached(source: str) -> PromptTemplate:
    if not source.strip():
        return PromptTemplate(source=source, _template=None)
    if len(source) > _MAX_SOURCE_CHARS:
        raise TemplateError("prompt template is too large", code=TEMPLATE_PARSE_ERROR)
    try:
        template = _ENV.from_string(source)
        analysis = template.analyze(include_partials=False)
    except LiquidError as exc:
        message = _describe(exc, source)
        if any(f"'{tag}'" in message for tag in _FILE_TAGS):
            message += " (include and render are disabled: prompts cannot read files)"
        raise TemplateError(message, code=TEMPLATE_PARSE_ERROR) from None
    except RecursionError:
        raise TemplateError("prompt template nests too deeply", code=TEMPLATE_PARSE_ERROR) from None
    for name, spans in analysis.filters.items():
        if name not in _ENV.filters:
            raise TemplateError(
                f"unknown filter {name!r}{_where(source, spans)}", code=TEMPLATE_RENDER_ERROR
            )
    for name, variables in analysis.globals.items():
        if name not in INPUT_NAMES:
            where = _where(source, [v.span for v in variables])
            raise TemplateError(
                f"undefined variable {name!r}{where} "
                f"(available: {', '.join(sorted(INPUT_NAMES))})",
                code=TEMPLATE_RENDER_ERROR,
            )
    return PromptTemplate(source=source, _template=template)


def _string_keys(value: Any) -> Any:
    """SPEC 12.2: keys become strings; lists and maps stay iterable."""
    if isinstance(value, Mapping):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_string_keys(v) for v in value]
    return value


def _describe(exc: LiquidError, source: str) -> str:
    """One line: the Liquid message plus line/column, without the multi-line source excerpt."""
    message = str(exc.message)
    if exc.token is not None and 0 <= exc.token.start_index <= len(source):
        line, column = _line_col(source, exc.token.start_index)
        return f"{message} (line {line}, column {column})"
    return message


def _where(source: str, spans: Any) -> str:
    for span in spans:
        index = getattr(span, "index", -1)
        if isinstance(index, int) and 0 <= index <= len(source):
            line, column = _line_col(source, index)
            return f" (line {line}, column {column})"
    return ""


def _line_col(source: str, index: int) -> tuple[int, int]:
    before = source[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1
