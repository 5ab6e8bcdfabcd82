# The README's commands. Each one installs what it needs first, so a fresh clone works.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Temporary files go to memory when the machine has room for them, unless TMPDIR is set:
# on disk, the lab's resets made every new file slow (scripts/scratch_dir.py says why).
TMPDIR ?= $(shell $(PYTHON) scripts/scratch_dir.py)
export TMPDIR

# Sweeps side by side: each has its own lab and ports, and they mostly wait.
RELIABILITY_JOBS ?= 5

.PHONY: setup demo test lint bench reliability lab-up lab-down clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m commands.demo

# Two pytest processes: the unit tier first (pure logic, no lab; its modules import prefect,
# which must not be imported before the lab configures it), then everything else, on four
# xdist workers with a lab each (tests/labharness.py gives each its own ports and starts
# them one at a time), a test file per worker at a time so that a module's fixtures start
# once. Four on two cores keep them about two thirds busy; five kept both busy, and a
# saturated host's slow replies failed a test that judges latency (README, "the lab suite").
test: $(STAMP)
	$(BIN)/pytest -q tests/unit
	$(BIN)/pytest -q --durations=15 -n 4 --dist loadfile --no-loadscope-reorder --ignore=tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench

# Issue 15's sweeps (lock storm, ...): name=value lines; not a test, not run by CI.
reliability: $(STAMP)
	$(BIN)/python -m reliability --jobs $(RELIABILITY_JOBS)

lab-up: $(STAMP)
	$(BIN)/lifeboat lab up

lab-down: $(STAMP)
	$(BIN)/lifeboat lab down

clean: lab-down
	rm -rf $(VENV) .lab
