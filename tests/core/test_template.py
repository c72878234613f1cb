"""Strict prompt rendering (SPEC 5.4, 12, 17.1), file isolation and hostile issue text."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from liquid import Environment, FileSystemLoader

from symphonyd.core.errors import TemplateError
from symphonyd.core.issue import BlockerRef, Issue
from symphonyd.core.template import DEFAULT_PROMPT, compile_prompt, render_prompt

ISSUE = Issue(
    id="i1",
    identifier="ABC-1",
    title="Fix the thing",
    state="Todo",
    dispatchable=True,
    description="It is broken.",
    priority=2,
    labels=("bug", "backend"),
    blocked_by=(BlockerRef(id="b1", identifier="ABC-0", state="Done"),),
    created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)
CANARY = "CANARY-planted-file-content-7f3a"


def render_error(source: str, attempt: int | None = None) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        render_prompt(source, ISSUE, attempt)
    return info.value


def test_renders_issue_fields_and_attempt() -> None:
    source = (
        "{{ issue.identifier }}: {{ issue.title }} [{{ issue.state }}] p{{ issue.priority }}\n"
        "{% for label in issue.labels %}<{{ label }}>{% endfor %}\n"
        "{% for b in issue.blocked_by %}{{ b.identifier }}={{ b.state }}{% endfor %}\n"
        "{{ issue.created_at }} {{ issue.labels | join: ',' | upcase }}\n"
        "{% if attempt %}retry {{ attempt }}{% else %}first run{% endif %}"
    )
    first = render_prompt(source, ISSUE, None)
    assert first == (
        "ABC-1: Fix the thing [Todo] p2\n<bug><backend>\nABC-0=Done\n"
        "2026-01-02T03:04:05Z BUG,BACKEND\nfirst run"
    )
    assert render_prompt(source, ISSUE, 3).endswith("retry 3")


def test_accepts_a_mapping_and_stringifies_keys() -> None:
    assert (
        render_prompt("{{ issue.title }}-{{ issue['7'] }}", {"title": "T", 7: "seven"}) == "T-seven"
    )
    assert render_prompt("{{ issue.title }}", ISSUE.to_dict()) == "Fix the thing"


@pytest.mark.parametrize(
    "source",
    [
        "{{ nope }}",
        "{{ issue.nope }}",
        "{% if issue.missing %}x{% endif %}",
        "{{ issue.labels[9] }}",
    ],
)
def test_unknown_variables_fail(source: str) -> None:
    err = render_error(source)
    assert err.error_code == "template_render_error"
    assert "undefined" in err.message or "out of range" in err.message


def test_unknown_variable_in_an_untaken_branch_fails_at_compile() -> None:
    with pytest.raises(TemplateError) as info:
        compile_prompt("{% if false %}{{ ghost }}{% endif %}")
    assert info.value.error_code == "template_render_error"
    assert "'ghost'" in info.value.message and "line 1" in info.value.message


def test_locals_are_not_unknown_variables() -> None:
    source = (
        "{% assign t = issue.title %}{% capture c %}x{% endcapture %}"
        "{% for l in issue.labels %}{{ forloop.index }}{{ l }}{% endfor %}{{ t }}{{ c }}"
    )
    assert render_prompt(source, ISSUE) == "1bug2backendFix the thingx"


@pytest.mark.parametrize(
    "source", ["{{ issue.title | shout }}", "{% if false %}{{ issue.title | shout }}{% endif %}"]
)
def test_unknown_filters_fail(source: str) -> None:
    err = render_error(source)
    assert err.error_code == "template_render_error"
    assert "shout" in err.message


def test_known_filters_work() -> None:
    assert render_prompt("{{ issue.title | downcase | replace: 'fix', 'mend' }}", ISSUE) == (
        "mend the thing"
    )


@pytest.mark.parametrize("source", ["{{ issue.title", "{% if %}", "{% bogus %}", "{% for x %}"])
def test_syntax_errors_are_parse_errors(source: str) -> None:
    assert render_error(source).error_code == "template_parse_error"


def test_empty_body_uses_the_default_prompt() -> None:
    assert render_prompt("", ISSUE) == DEFAULT_PROMPT
    assert render_prompt("  \n ", ISSUE, 2) == DEFAULT_PROMPT


def test_templates_are_parsed_once() -> None:
    source = "cached {{ issue.id }}"
    assert compile_prompt(source) is compile_prompt(source)


def test_attempt_must_be_an_integer_or_null() -> None:
    with pytest.raises(TemplateError):
        compile_prompt("{{ attempt }}").render(ISSUE, True)


def test_filter_errors_on_data_are_render_errors() -> None:
    assert render_error("{{ issue.priority | divided_by: 0 }}").error_code == (
        "template_render_error"
    )


def test_runaway_loops_hit_a_limit() -> None:
    err = render_error("{% for i in (1..100000000) %}x{% endfor %}")
    assert "limit" in err.message


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "planted.liquid").write_text(CANARY)
    (tmp_path / "planted").write_text(CANARY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_control_a_liquid_file_loader_would_read_the_planted_file(planted: Path) -> None:
    # Shows the planted file is reachable by an ordinary Liquid setup, so the isolation test
    # below would notice if our environment regained a file loader.
    env = Environment(loader=FileSystemLoader(planted))
    assert CANARY in env.from_string("{% include 'planted.liquid' %}").render()


@pytest.mark.parametrize(
    "template",
    [
        "{% include 'planted.liquid' %}",
        "{% include 'planted' %}",
        "{% render 'planted.liquid' %}",
        "{% include '{path}/planted.liquid' %}",
        "{% liquid\ninclude 'planted.liquid' %}",
        "{% include issue.title %}",
    ],
)
def test_templates_cannot_read_files(planted: Path, template: str) -> None:
    source = template.replace("{path}", str(planted))
    issue = {**ISSUE.to_dict(), "title": "planted.liquid"}
    with pytest.raises(TemplateError) as info:
        render_prompt(source, issue)
    assert CANARY not in str(info.value)
    assert "cannot read files" in info.value.message


def test_the_environment_loader_refuses_too(planted: Path) -> None:
    from symphonyd.core import template as module

    with pytest.raises(TemplateError):
        module._ENV.get_template("planted.liquid")


@pytest.mark.parametrize(
    "title",
    [
        "{{ issue.id }}",
        "{% raw %}{{ x }}{% endraw %}",
        "{% include 'planted.liquid' %}",
        "{{ nope | nofilter }}",
        "{%- comment -%}",
        "}}{{",
    ],
)
def test_hostile_issue_text_renders_literally(planted: Path, title: str) -> None:
    issue = {**ISSUE.to_dict(), "title": title, "description": title}
    out = render_prompt("[{{ issue.title }}] ({{ issue.description }})", issue)
    assert out == f"[{title}] ({title})"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_issue_title_renders_verbatim(title: str) -> None:
    issue = {**ISSUE.to_dict(), "title": title}
    # The bounded output stream normalises line endings (\r\n and \r become \n).
    expected = title.replace("\r\n", "\n").replace("\r", "\n")
    assert render_prompt("<{{ issue.title }}>", issue) == f"<{expected}>"
