"""Cost of the workflow/config/prompt path the dispatcher runs every tick.

Run: .venv/bin/python bench/workflow_config.py
Prints one line per figure and, last, ``RESULT {json}`` with microseconds per operation.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Runnable as `python bench/workflow_config.py` from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symphonyd.core.config import build_service_config
from symphonyd.core.errors import WorkflowError
from symphonyd.core.issue import Issue
from symphonyd.core.template import _compile_cached, compile_prompt
from symphonyd.core.workflow import parse_workflow
from symphonyd.runtime.workflow_file import LoadedWorkflow, WorkflowWatcher

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = (ROOT / "tests/core/data_full_workflow.md").read_text() + (
    "\n{% for l in issue.labels %}- {{ l }}\n{% endfor %}"
    "{% if attempt %}Retry {{ attempt }}.{% endif %}\n{{ issue.description }}\n"
)
ISSUE = Issue(
    id="i1",
    identifier="ABC-1",
    title="Fix the thing",
    state="Todo",
    dispatchable=True,
    description="x" * 4000,
    labels=("bug", "backend", "ui"),
)


def per_op_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def billion_laughs() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    try:
        parse_workflow("---\n" + "\n".join(lines) + "\n---\n")
    except WorkflowError:
        return
    raise AssertionError("billion laughs was accepted")


def main() -> None:
    definition = parse_workflow(WORKFLOW)
    env = {"HOME": "/home/op"}
    results: dict[str, float] = {}
    results["parse_workflow_us"] = per_op_us(lambda: parse_workflow(WORKFLOW), 100)
    results["build_service_config_us"] = per_op_us(
        lambda: build_service_config(definition, env=env, workflow_dir="/srv"), 2000
    )

    def compile_fresh() -> None:
        _compile_cached.cache_clear()
        compile_prompt(definition.prompt_template)

    results["compile_prompt_us"] = per_op_us(compile_fresh, 100)
    template = compile_prompt(definition.prompt_template)
    results["render_prompt_us"] = per_op_us(lambda: template.render(ISSUE, 2), 2000)
    results["refuse_billion_laughs_us"] = per_op_us(billion_laughs, 20)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "WORKFLOW.md"
        path.write_text(WORKFLOW)

        def build(loaded: LoadedWorkflow) -> object:
            return build_service_config(loaded.definition, env=env, workflow_dir=loaded.directory)

        watcher = WorkflowWatcher(path, build)
        results["poll_unchanged_us"] = per_op_us(watcher.poll, 20000)
        results["poll_forced_us"] = per_op_us(lambda: watcher.poll(force=True), 5000)

    for name, value in results.items():
        print(f"{name:28s} {value:10.1f}")
    print("RESULT " + json.dumps({k: round(v, 1) for k, v in results.items()}))


if __name__ == "__main__":
    main()
