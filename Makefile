# Every target sets up .venv on first use, so a fresh machine needs only python3 (3.11+) and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt check bench clean chromium docs

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,postgres,redis]"
	touch $(STAMP)

run: $(STAMP)  ## the main job: agentqueue serve (API, dashboard, MCP, a worker, demo jobs) on SQLite
	$(BIN)/agentqueue serve

test: $(STAMP) chromium  ## the whole test suite
	$(BIN)/pytest $(PYTEST_ARGS)

# The dashboard's browser tests drive Debian's chromium (playwright never downloads one).
chromium:  ## install chromium with apt-get when /usr/bin/chromium is missing
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null \
	  && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	  || echo "chromium not installed (no apt-get, or it failed): the browser tests skip; CI fails them"

lint: $(STAMP)  ## ruff (lint + format check) and pyright
	$(BIN)/ruff check agentqueue tests bench examples
	$(BIN)/ruff format --check agentqueue tests bench examples
	$(BIN)/pyright

fmt: $(STAMP)
	$(BIN)/ruff check --fix agentqueue tests bench examples
	$(BIN)/ruff format agentqueue tests bench examples

check: lint test  ## what CI runs

bench: $(STAMP)  ## agentqueue side by side with the peer queues (see bench/README.md)
	bench/run_peers.sh

docs: $(STAMP)  ## regenerate docs/reference/ from the code, then build the site into site/
	$(BIN)/python docs/gen_reference.py
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
