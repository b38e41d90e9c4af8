# The two commands of the README: `make demo` and `make test`. Each sets everything up first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: setup browser demo test test-slow bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Re-install only when the project's metadata or the pin changes.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/infoflow demo

# The report test drives a real headless Chromium (Debian's chromium + chromium-driver).
browser:
	@command -v chromium >/dev/null && test -x /usr/bin/chromedriver || \
	  { command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "note: could not install chromium; the browser test will be skipped"; }

test: setup browser
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache
