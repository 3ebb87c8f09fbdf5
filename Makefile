# `make run` and `make test` each do all of their own set-up on a fresh Debian
# machine with Python 3.11+: a virtual environment in .venv, the dependencies,
# the compiled signal core, and (for tests) a mosquitto binary.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.dev-installed
SOURCES := setup.py pyproject.toml $(wildcard ext/*.pyx ext/*.pxd ext/*.pxi)

.PHONY: run test test-compiled test-python check lint typecheck fmt bench backbone clean help

$(STAMP): $(SOURCES)
	PYTHON=$(PYTHON) sh scripts/host-deps.sh build
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q Cython
	$(BIN)/python -m pip install -q --no-build-isolation -e '.[test]'
	$(BIN)/python -c 'import edge_agent.dsp as d; print("edge-agent: signal core =", d.IMPLEMENTATION)'
	touch $@

run: $(STAMP)
	$(BIN)/edge-agent run --simulate --state-dir state

test: $(DEV)
	sh scripts/host-deps.sh test
	$(MAKE) test-compiled test-python

test-compiled: $(DEV)
	$(BIN)/python -m pytest -q

test-python: $(DEV)
	EDGE_AGENT_PUREPYTHON=1 $(BIN)/python -m pytest -q

$(DEV): $(STAMP)
	$(BIN)/python -m pip install -q --no-build-isolation -e '.[test,dev]'
	touch $@

# lint, type check and the fast unit tests (no process, broker or database; four
# workers, as most of their time is a simulated chip waiting): 33 s here
check: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 4 --ignore=tests/integration -m "not broker"

lint: $(DEV)
	$(BIN)/ruff check edge_agent drivers tests bench
	$(BIN)/ruff format --check edge_agent drivers tests bench

typecheck: $(DEV)
	$(BIN)/mypy

fmt: $(DEV)
	$(BIN)/ruff check --fix edge_agent drivers tests bench
	$(BIN)/ruff format edge_agent drivers tests bench

bench: $(STAMP)
	sh scripts/host-deps.sh test
	$(BIN)/python -m pip install -q --no-build-isolation -e '.[test,bench]'
	$(BIN)/python bench/bench_stages.py --json bench-stages.json
	$(BIN)/python bench/bench_bits.py --json bench-bits.json
	$(BIN)/python bench/bench_chain.py
	$(BIN)/python bench/bench_drain.py
	$(BIN)/python bench/bench_ttl.py
	$(BIN)/python bench/bench_salvage.py --tops 100000,1000000
	$(BIN)/python bench/bench_writes.py --cycles 6
	$(BIN)/python bench/bench_status.py

# a local backbone: Mosquitto, PostgreSQL, two ingest workers, a small simulated fleet;
# prints how to query it; Ctrl-C stops it all (scripts/backbone_demo.py)
backbone: $(DEV)
	sh scripts/host-deps.sh test
	$(BIN)/python scripts/backbone_demo.py $(if $(NODES),--nodes $(NODES))

help:
	@echo 'make run        the agent on simulated sensors, with its defaults'
	@echo 'make test       the whole suite, compiled core then pure-Python twin'
	@echo 'make check      lint, type check and the fast unit tests'
	@echo 'make fmt        format and fix what ruff can'
	@echo 'make bench      the benchmarks (installs the bench extra)'
	@echo 'make backbone   a local broker, database, two ingest workers and a simulated fleet'

clean:
	rm -rf $(VENV) build *.egg-info ext/*.c edge_agent/*.so edge_agent/*.pyd

# The SD image built and booted (tests/integration/test_image_boot.py; images/README.md):
# an arm64 Debian 12 card from images/debian/build.sh (its root file system cached in
# ~/.cache/edge-agent-image), provisioned, booted in qemu-system-aarch64, checked from
# the host. As root. Not in `make test`: see images/README.md for the times.
.PHONY: image-test
image-test: $(DEV)
	sh scripts/image-deps.sh
	EDGE_AGENT_IMAGE_TEST=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/integration/test_image_boot.py
