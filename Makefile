# Two commands for a newcomer:  `make demo` (set up, then build a small dataset) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench

setup: $(VENV)/.installed

# Pinned versions for a reproducible environment; pyproject.toml keeps loose ranges for users.
$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c .ci/constraints.txt -e '.[models,dev]'
	touch $@

demo: setup
	$(BIN)/python -m curation.run recipe=improving_full

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/offline_throughput.py
