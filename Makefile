# Two commands for a newcomer:  `make demo` (set up, then build a small dataset) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The real-engine environment (vLLM's CPU build): scripts/vllm_env.sh, pins in .ci/constraints-vllm.txt.
VLLM_VENV ?= .venv-vllm

.PHONY: setup demo test bench vllm-env test-real-engine

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

vllm-env: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: scripts/vllm_env.sh .ci/constraints-vllm.txt
	PYTHON=$(PYTHON) scripts/vllm_env.sh $(VLLM_VENV)

# The teacher on a real vLLM engine (tests/real_engine/). IRGL_REAL_ENGINE_REQUIRED turns the
# folder's "no vLLM environment" skip into a failure: through make, a missing engine is an error.
test-real-engine: setup vllm-env
	IRGL_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python IRGL_REAL_ENGINE_REQUIRED=1 \
		$(BIN)/python -m pytest -q tests/real_engine
