"""WORKFLOW.md parsing (SPEC 5.2, 5.5, 17.1) including hostile YAML."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symphonyd.core.errors import WorkflowError
from symphonyd.core.workflow import (
    MAX_FRONT_MATTER_CHARS,
    MAX_WORKFLOW_BYTES,
    WorkflowDefinition,
    parse_workflow,
    parse_workflow_bytes,
)


def parse_error(text: str) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        parse_workflow(text)
    return info.value


def test_front_matter_and_trimmed_body() -> None:
    wf = parse_workflow("---\ntracker:\n  kind: linear\n---\n\n  Hello {{ issue.title }}\n\n")
    assert wf == WorkflowDefinition(
        config={"tracker": {"kind": "linear"}}, prompt_template="Hello {{ issue.title }}"
    )


def test_no_front_matter_means_empty_config_and_whole_body() -> None:
    wf = parse_workflow("\n# Title\n\nDo the thing.\n---\nnot front matter\n")
    assert wf.config == {}
    assert wf.prompt_template == "# Title\n\nDo the thing.\n---\nnot front matter"


def test_empty_front_matter_is_empty_config() -> None:
    assert parse_workflow("---\n---\nbody").config == {}
    assert parse_workflow("---\n# only a comment\n---\nbody").config == {}


def test_crlf_and_bom_are_handled() -> None:
    wf = parse_workflow_bytes(b"\xef\xbb\xbf---\r\npolling:\r\n  interval_ms: 5\r\n---\r\nBody\r\n")
    assert wf.config == {"polling": {"interval_ms": 5}}
    assert wf.prompt_template == "Body"


def test_only_the_first_closing_fence_ends_front_matter() -> None:
    wf = parse_workflow("---\na: 1\n---\nbody\n---\nmore")
    assert wf.config == {"a": 1}
    assert wf.prompt_template == "body\n---\nmore"


def test_invalid_yaml_is_a_typed_error_with_location() -> None:
    err = parse_error("---\ntracker: [unclosed\n---\nbody")
    assert err.error_code == "workflow_parse_error"
    assert "line" in err.message


@pytest.mark.parametrize("front", ["- a\n- b", "just a string", "42", "!!set {a}"])
def test_non_map_front_matter_is_a_typed_error(front: str) -> None:
    err = parse_error(f"---\n{front}\n---\nbody")
    assert err.error_code == "workflow_front_matter_not_a_map"


def test_unclosed_front_matter_is_an_error() -> None:
    err = parse_error("---\ntracker:\n  kind: linear\n")
    assert err.error_code == "workflow_parse_error"
    assert "closing" in err.message


def test_multiple_yaml_documents_are_refused() -> None:
    assert parse_error("---\na: 1\n...\nb: 2\n---\n").error_code == "workflow_parse_error"


def test_unsafe_yaml_tags_are_refused() -> None:
    err = parse_error("---\nx: !!python/object/apply:os.system ['true']\n---\n")
    assert err.error_code == "workflow_parse_error"


def test_billion_laughs_is_refused() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    err = parse_error("---\n" + "\n".join(lines) + "\n---\n")
    assert "expands" in err.message


def test_modest_alias_use_is_allowed() -> None:
    wf = parse_workflow("---\nbase: &b {x: 1}\nother: *b\n---\n")
    assert wf.config == {"base": {"x": 1}, "other": {"x": 1}}


def test_recursive_alias_is_refused() -> None:
    err = parse_error("---\na: &a [1, *a]\n---\n")
    assert "refers to its own anchor" in err.message


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    depth = 60_000  # far past the recursion limit, still under the front matter cap
    err = parse_error("---\nx: " + "[" * depth + "]" * depth + "\n---\n")
    assert "nested too deeply" in err.message
    assert err.error_code == "workflow_parse_error"


def test_invalid_date_is_a_parse_error() -> None:
    # PyYAML raises ValueError (not YAMLError) for this one.
    assert parse_error("---\nd: 2020-13-45\n---\n").error_code == "workflow_parse_error"


def test_oversized_file_is_refused() -> None:
    with pytest.raises(WorkflowError) as info:
        parse_workflow_bytes(b"x" * (MAX_WORKFLOW_BYTES + 1))
    assert info.value.error_code == "workflow_parse_error"
    assert "larger than" in info.value.message


def test_oversized_front_matter_is_refused_but_a_long_body_is_fine() -> None:
    big = "---\n" + "x: " + "a" * MAX_FRONT_MATTER_CHARS + "\n---\nbody"
    assert "front matter" in parse_error(big).message
    wf = parse_workflow("---\na: 1\n---\n" + "word " * 100_000)
    assert len(wf.prompt_template) == 5 * 100_000 - 1


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(WorkflowError) as info:
        parse_workflow_bytes(b"---\na: \xff\n---\n")
    assert "UTF-8" in info.value.message


_TOKENS = [*"-:[]{}&*!|>'\"#%@`?,. \n\tab01\\", "---\n", "\n---\n", "&a ", "*a", "!!str "]
_yamlish = st.lists(st.sampled_from(_TOKENS), max_size=120).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), _yamlish, _yamlish.map(lambda s: "---\n" + s)))
def test_arbitrary_text_only_ever_raises_workflow_error(text: str) -> None:
    try:
        wf = parse_workflow(text)
    except WorkflowError:
        return
    assert isinstance(wf.config, dict)
    assert wf.prompt_template == wf.prompt_template.strip()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_workflow_error(data: bytes) -> None:
    with contextlib.suppress(WorkflowError):
        parse_workflow_bytes(b"---\n" + data)
