# chat-gateway: every target makes its own virtualenv from pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
SERVER := $(VENV)/.installed-server
DEV    := $(VENV)/.installed-dev
CLUSTER_PORT ?= 8080
REDIS ?= single

.PHONY: run test lint clean cluster

# setuptools' editable build warns (a banner of asterisks) about folders named like the
# package, which --quiet does not hide; the build runs in a child that inherits this.
PIP := PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip

# The server alone for run, cluster and fuzz; the development tools (pytest, Playwright,
# mypy, ...) only for test and lint.
$(SERVER): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $(SERVER)

$(DEV): $(SERVER)
	$(PIP) install --quiet -e '.[dev]'
	touch $(DEV)

run: $(SERVER)  ## one node on the embedded broker: page and /ws on 127.0.0.1:8080
	$(BIN)/chat-gateway

cluster: $(SERVER)  ## redis (REDIS=cluster: a Redis Cluster), 3 nodes and nginx as local processes on CLUSTER_PORT; Ctrl-C stops all
	$(BIN)/python deploy/cluster.py --port $(CLUSTER_PORT) --redis $(REDIS)

.PHONY: fuzz
fuzz: $(SERVER)  ## a bounded fuzz run against a live node; FUZZ_ARGS="--redis-url redis://..."
	$(BIN)/python -m bench.fuzz $(FUZZ_ARGS)

BENCH := $(VENV)/.installed-bench

$(BENCH): $(DEV)
	$(PIP) install --quiet -e '.[dev,bench]'
	touch $(BENCH)

.PHONY: bench
bench: $(BENCH)  ## the gateway against python-socketio (and Node socket.io); BENCH_ARGS="--quick"
	$(BIN)/python -m bench.run $(BENCH_ARGS)

CHAOS_SECONDS ?= 120
CHAOS_REDIS ?= single
CHAOS_SEED ?=

.PHONY: chaos
chaos: $(SERVER)  ## a randomized fault campaign and its checker: CHAOS_SECONDS, CHAOS_SEED, CHAOS_REDIS=single|cluster
	CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_REDIS=$(CHAOS_REDIS) CHAOS_SEED=$(CHAOS_SEED) \
		$(BIN)/python -m bench.chaos

test: $(DEV)  ## the whole suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(DEV)
	$(BIN)/ruff check gateway cli tests bench deploy tooling
	$(BIN)/ruff format --check gateway cli tests bench deploy tooling
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
