# Two front doors: `make demo` (set up, run a small simulated sweep, write runs + figures)
# and `make test` (set up, run the test suite). Both bootstrap .venv from the project's files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint setup clean

# torch first, pinned to the CPU build (on local disk on the project's machines): an unpinned
# torch, pulled in by `pip install -e .`, would download a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q --index-url https://download.pytorch.org/whl/cpu "torch>=2.4"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/commsim sweep examples/sweep_bandwidth.toml --out results/demo --jobs 2

# worksteal: a worker that runs out of tests takes the other's, so the slow real-process tests
# do not leave one worker idle at the end (a fresh clone, 2 cores: 588 s against 658 s).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) results
