# Developer and CI entry points. `make test` is the README's test command.
PY       ?= /usr/bin/python3
VENV     ?= .venv
VPY       = $(VENV)/bin/python
STAMP     = $(VENV)/.deps-stamp

.PHONY: venv lint typecheck test unit clean

# The venv sees Debian's site-packages so tests exercise the same library
# versions the .deb depends on; pip adds only what Debian 12 lacks.
# python-liquid comes from the same wheels the .deb vendors (packaging/vendor), installed
# without dependencies so it runs on Debian's markupsafe, babel and dateutil as in production.
$(STAMP): pyproject.toml devtools/test-requirements.txt $(wildcard packaging/vendor/*.whl)
	$(PY) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --no-deps packaging/vendor/*.whl
	$(VPY) -m pip install -q --disable-pip-version-check -r devtools/test-requirements.txt
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VPY) -m ruff check symphonyd tests bench devtools
	$(VPY) -m ruff format --check symphonyd tests bench devtools

typecheck: $(STAMP)
	$(VPY) -m mypy

unit: $(STAMP)
	$(VPY) -m pytest -q -m "not root and not agents"

test: lint typecheck
	$(VPY) -m pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
