# Set-up is two commands: `make run` and `make test`. Each installs what is
# missing (system packages, the venv, noVNC) and then does its job.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
export QTWEBENGINE_CHROMIUM_FLAGS ?= --no-sandbox --disable-gpu
export PYTHONASYNCIODEBUG ?=

.PHONY: run test lint bench soak setup system services clean

run: setup services
	$(PY) -m backend.cli ui

# A missing component fails the run instead of skipping its tests (tests/require.py);
# `make test CORRAL_REQUIRE=` runs what this machine can and skips the rest.
# Exit 5 (nothing collected) is fine only when PYTEST_ARGS chose what to run.
CORRAL_REQUIRE ?= docker,postgres,display,xvnc
test: setup services lint
	CORRAL_REQUIRE=$(CORRAL_REQUIRE) PYTHONASYNCIODEBUG=1 xvfb-run -a -s "-screen 0 1920x1080x24" \
		$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
		if [ $$rc -eq 5 ] && [ -n "$(PYTEST_ARGS)" ]; then echo "no tests selected"; rc=0; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy backend agent corral

# Every benchmark runs; fails if any missed a target (figures in build/bench/*.json).
bench: setup services
	xvfb-run -a -s "-screen 0 1920x1080x24" env PY=$(PY) BENCH_OUT=build/bench bench/run_all.sh

# Faults at random for 10 minutes against a farm of 4-8 devices; SOAK_ARGS="--minutes 3 --seed 7".
soak: setup services
	$(PY) bench/soak.py --json build/bench/soak.json $(SOAK_ARGS)

setup: system $(STAMPS)/venv $(STAMPS)/novnc

system:
	@installer/bootstrap.sh

services: system
	@installer/services.sh

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

$(STAMPS)/novnc: resources/package.json resources/package-lock.json
	@mkdir -p $(STAMPS)
	cd resources && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf $(STAMPS) $(VENV) resources/node_modules
