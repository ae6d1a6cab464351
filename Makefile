# Two commands on a fresh machine: `make demo` (embedded corpus, CPU sweep, report) and
# `make test`. Both install into .venv first.

VENV ?= .venv
PYTHON ?= python3
# Pinned so that CPU machines take the local CPU wheel; on a CUDA machine the same pin takes
# PyPI's CUDA build. An unpinned torch may pull a multi-GB CUDA build onto a CPU machine.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test test-slow lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	# An editable install leaves jepardy uncompiled, as a wheel's would not be; where
	# PYTHONDONTWRITEBYTECODE is set, every command then compiled it again (bench/cli_latency.py).
	$(BIN)/python -m compileall -q jepardy
	touch $@

demo: install
	$(BIN)/jepardy data build
	$(BIN)/jepardy sweep experiments/smoke.toml
	$(BIN)/jepardy report --compare

# The fast lane; `test-slow` runs the tests that launch real training, sweeps, Slurm jobs and
# a browser (CI runs both: .ci/run).
test: install lint
	$(BIN)/pytest -q -m "not slow"

test-slow: install
	$(BIN)/pytest -q -m slow

lint: install
	$(BIN)/ruff check jepardy tests bench
	$(BIN)/ruff format --check jepardy tests bench

clean:
	rm -rf $(VENV) runs results.db results.db-wal results.db-shm data/embedded
