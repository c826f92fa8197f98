# Every target creates .venv if missing and installs lmlab first, so a fresh clone needs nothing else.
# Python 3.11: the offline CPU build of torch 2.13.0 on this kind of machine is a cp311 wheel.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
RUNS    ?= runs
STAMP   := $(VENV)/.installed

.PHONY: run run-all test test-fast bench report clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/lmlab run two-hop --quick --seed 0 --out $(RUNS)/two-hop-quick
	$(BIN)/lmlab report --runs $(RUNS) --out $(RUNS)/report.html
	@echo "Report: $(abspath $(RUNS))/report.html"

run-all: $(STAMP)
	$(BIN)/lmlab run two-hop --quick --seed 0 --out $(RUNS)/two-hop-quick
	$(BIN)/lmlab run extreme-tokens --quick --seed 0 --out $(RUNS)/extreme-tokens-quick
	$(BIN)/lmlab run reversal-curse --quick --out $(RUNS)/reversal-curse-quick
	$(BIN)/lmlab run tokenization --quick --seed 0 --out $(RUNS)/tokenization-quick
	$(BIN)/lmlab report --runs $(RUNS) --out $(RUNS)/report.html
	@echo "Report: $(abspath $(RUNS))/report.html"

report: $(STAMP)
	$(BIN)/lmlab report --runs $(RUNS) --out $(RUNS)/report.html

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
