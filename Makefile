# Every target sets up .venv on first use, so a fresh machine needs only python3 (3.11+) and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt check bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,postgres,redis]"
	touch $(STAMP)

run: $(STAMP)  ## the main job: a worker and a stream of demo jobs on the embedded SQLite store
	$(BIN)/agentqueue demo

test: $(STAMP)  ## the whole test suite
	$(BIN)/pytest

lint: $(STAMP)  ## ruff (lint + format check) and pyright
	$(BIN)/ruff check agentqueue tests bench
	$(BIN)/ruff format --check agentqueue tests bench
	$(BIN)/pyright

fmt: $(STAMP)
	$(BIN)/ruff check --fix agentqueue tests bench
	$(BIN)/ruff format agentqueue tests bench

check: lint test  ## what CI runs

bench: $(STAMP)  ## agentqueue side by side with the peer queues (see bench/README.md)
	bench/run_peers.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
