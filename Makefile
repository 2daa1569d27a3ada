# The README's commands. Each target does its own set-up on a fresh machine.
#   make demo   — set up, then run the lab's main job (`labkit demo`)
#   make test   — set up, then the whole test suite
#   make setup  — only the set-up (skipped quickly when nothing changed)
#   make lab    — JupyterLab on notebooks/
#   make ui     — the MLflow UI on the local store
#   make gpu-check  — on a bare CUDA machine: the carried wheels, `labkit bench gpu` and `pytest -m gpu`, ≤ 8 min,
#                     results in one folder (GPU_CHECK_OUT, default $$OUT or outputs/gpu-check); see scripts/gpu_check.sh
#   make gpu-wheels — here, with pip and internet: the cp312 wheels gpu-check installs, into .whl/

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned so a CPU machine gets the local CPU build; on a CUDA machine pass e.g.
#   make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.labkit-setup
PYTEST_ARGS ?= -m "not slow"
# The suite runs on this many worker processes (pytest-xdist), whole test files per worker so module fixtures
# are made once: on 2 cores, 12 min instead of 21. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup demo test lab ui clean gpu-check gpu-wheels

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev,c2pa]"
	@# The browser test drives JupyterLab in the distribution's Chromium (no browser download).
	@test -x $(CHROMIUM) || { if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "note: $(CHROMIUM) is missing: install the 'chromium' package for the browser test"; fi; }
	touch $(STAMP)

demo: setup
	$(BIN)/labkit demo

test: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks

ui: setup
	$(BIN)/labkit ui

# No set-up on purpose: the GPU machine has its own Python stack and no internet (the wheels travel in .whl/).
gpu-check:
	scripts/gpu_check.sh $(GPU_CHECK_OUT)

gpu-wheels:
	PYTHON=$(PYTHON) scripts/gpu_wheels.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
