"""The unit suite and the type checks under Debian 13's Python 3.13, in a booted trixie machine.

The host is Debian 12 (Python 3.11). Debian 13 ships Python 3.13, which removed modules the
older stack leaned on (``cgi``, ``crypt``, ...) and changed asyncio details. This runs the
same unit tests and mypy, from a copy of this tree, on trixie's own interpreter and Debian
packages, plus the pip-only test tools that ``.ci/run`` downloaded as cp313 wheels (the
container has no network).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from devtools.nspawn import CACHE_DIR, Container

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WHEELS = Path(os.environ.get("SYMPHONY_PY313_WHEELS", str(CACHE_DIR / "wheels-py313")))
SRC = "/srv/symphonyd-src"
BUILD = "/srv/symphonyd"
# What the container cannot do: root tests (namespaces, nftables) and the agent CLIs run on
# trixie through the package end-to-end tests instead; the browser test needs Chromium.
SELECTION = "not root and not agents"
EXCLUDES = ("--ignore", "tests/dashboard/test_browser.py")
# The modules that import Selenium, as a mypy --exclude pattern.
SELENIUM_MODULES = r"tests/dashboard/(test_browser|contrast)\.py"


@pytest.mark.timeout(1800)  # the whole unit suite, inside; its own run has a 1500 s limit
def test_unit_suite_and_type_checks_pass_on_python_3_13(tmp_path: Path) -> None:
    wheels = sorted(WHEELS.glob("*.whl"))
    assert any(
        w.name.startswith("mypy-") for w in wheels
    ), f"no cp313 test wheels in {WHEELS}: run `bash .ci/run` once to provision them"
    with Container(
        tmp_path, release="trixie", binds_ro=[(REPO, SRC), (WHEELS, "/srv/wheels")]
    ) as c:
        version = c.run(["python3", "-c", "import sys; print(*sys.version_info[:2])"])
        assert version.stdout.split() == ["3", "13"]
        copy = (
            f"mkdir -p {BUILD} && tar -C {SRC} --exclude=.venv --exclude=.git "
            "--exclude=__pycache__ --exclude=.mypy_cache --exclude=.pytest_cache "
            f"--exclude=.hypothesis -cf - . | tar -C {BUILD} -xf -"
        )
        c.run(["sh", "-c", copy])
        # At the tree's .venv, where the tests look for tools (schemathesis), as after `make venv`.
        c.run(["python3", "-m", "venv", "--system-site-packages", f"{BUILD}/.venv"])
        pip = [f"{BUILD}/.venv/bin/pip", "install", "-q", "--no-index"]
        pip.append("--disable-pip-version-check")
        c.run([*pip, "--no-deps", *(f"{BUILD}/{p}" for p in vendor_wheels())], timeout=300)
        requirements = f"{BUILD}/devtools/test-requirements.txt"
        c.run([*pip, "--find-links", "/srv/wheels", "-r", requirements], timeout=300)
        # Selenium (the browser tests) is not in the container; everything else is checked.
        # mypy runs beside the tests (both are single-threaded; the machine has two cores),
        # its output kept in a file until the tests are done.
        mypy_cmd = (
            f"{BUILD}/.venv/bin/python -m mypy --python-version 3.13 "
            f"--exclude '{SELENIUM_MODULES}' > /srv/mypy.out 2>&1; echo $? > /srv/mypy.rc"
        )
        pytest_cmd = (
            f"{BUILD}/.venv/bin/python -m pytest -q -p no:cacheprovider "
            f"-m '{SELECTION}' {' '.join(EXCLUDES)}"
        )
        tests = c.run(
            ["sh", "-c", f"cd {BUILD} && ( {mypy_cmd} ) & cd {BUILD} && {pytest_cmd}; "
             "rc=$?; wait; exit $rc"],
            check=False,
            timeout=1500,
        )  # fmt: skip
        mypy_out = c.run(["cat", "/srv/mypy.out"], check=False).stdout
        mypy_rc = c.run(["cat", "/srv/mypy.rc"], check=False).stdout.strip()
        assert mypy_rc == "0", mypy_out[-4000:]
        summary = tests.stdout[-6000:] + tests.stderr[-2000:]
        assert tests.returncode == 0, summary
        assert " passed" in tests.stdout, summary


def vendor_wheels() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "packaging" / "vendor").glob("*.whl"))


def test_every_module_importing_selenium_is_excluded_on_3_13() -> None:
    # A new Selenium helper would otherwise fail the 3.13 type check for want of Selenium.
    importing = {
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("*.py")
        if re.search(r"^\s*(from|import) selenium", p.read_text(), re.MULTILINE)
    }
    assert importing, "no Selenium user found: the scan is broken"
    assert {m for m in importing if not re.fullmatch(SELENIUM_MODULES, m)} == set()
