# alm — two commands on a fresh machine: `make demo` (train + sample) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pin torch so a fresh venv gets a known build (override: make test TORCH_SPEC='torch>=2.6').
TORCH_SPEC ?= torch==2.13.0
RUNS ?= runs
DEMO_RUN ?= demo

.DEFAULT_GOAL := help
.PHONY: help install dev demo test test-fast test-interop test-device device-check check lint typecheck layers fmt \
	check-device bench clean

help:
	@echo "make demo          train the micro model on the built-in corpus, then sample from it"
	@echo "make test          lint, type check, layer contracts, then the test suite (creates .venv if missing)"
	@echo "make test-fast     the same without the slow end-to-end tests"
	@echo "make check         lint, type check and layer contracts only"
	@echo "make test-interop  build llama-cpp-python if missing, then the llama.cpp and mlx-lm export tests"
	@echo "make test-device   the device suite (tests/device) on this machine's GPU: cuda or mps, else cpu"
	@echo "make device-check  test-device, then decode/train benchmarks on the GPU, into device-check/"
	@echo "make lint | fmt    ruff check + format check | apply ruff format and fixes"
	@echo "make check-device  show devices, backends and the precision alm would use"
	@echo "make bench         run the benchmarks (figures go to docs/BENCHMARKS.md)"
	@echo "make clean         remove caches and build outputs (keeps data/ and runs/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/alm train --run $(DEMO_RUN) --overwrite
	$(BIN)/alm sample $(DEMO_RUN) --prompt "ROMEO:" --max-tokens 200 --seed 0 --ignore-eos

test: check
	$(BIN)/python -m pytest -q

test-fast: check
	$(BIN)/python -m pytest -q -m "not slow"

# Exports checked against the runtimes themselves. llama-cpp-python compiles llama.cpp (minutes); a portable
# build, since the -march=native one faulted with SIGILL on q8_0 on some VMs.
test-interop: $(VENV)/.installed-dev
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install "llama-cpp-python>=0.3"
	$(BIN)/python -m pytest -q tests/export/test_export_llama_cpp.py tests/export/test_export_mlx.py

# The model, decoding and training checks of tests/device on the accelerator (CI runs them on the CPU).
test-device: $(VENV)/.installed-dev
	ALM_TEST_DEVICES=$$($(BIN)/python -c "from alm.device import resolve_device; print(resolve_device().type)") \
		$(BIN)/python -m pytest -q tests/device

# test-device and the GPU benchmarks in one run (a rented GPU's minutes are few): JSON and a log in device-check/.
device-check: $(VENV)/.installed-dev
	PYTHON=$(BIN)/python scripts/device-check.sh device-check cuda

# The rules in AGENTS.md, enforced: style, types, and which layer may import which.
check: lint typecheck layers

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

typecheck: $(VENV)/.installed-dev
	$(BIN)/pyright

layers: $(VENV)/.installed-dev
	$(BIN)/lint-imports

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

check-device: $(VENV)/.installed
	$(BIN)/alm doctor

bench: $(VENV)/.installed-dev
	$(BIN)/alm bench train --model micro
	$(BIN)/alm bench train --model pico
	$(BIN)/alm bench sample --model pico
	$(BIN)/alm bench pack

clean:
	rm -rf build dist .pytest_cache .ruff_cache .hypothesis src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
