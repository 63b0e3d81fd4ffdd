# Two commands on a fresh clone: `make demo` (the whole system locally) and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
SETUP_STAMP := $(VENV)/.stamp-setup
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export XDG_RUNTIME_DIR ?= /tmp

.PHONY: setup lock system-deps cdk-cli demo test test-fast lint format openapi docs synth deploy rehearse bench chaos clean

## setup: create .venv and install everything (idempotent; instant when nothing changed)
setup: $(SETUP_STAMP)

# uv installs the two locked files (pip took ~130 s on a fresh clone, uv ~10 s: it downloads and
# unpacks in parallel). uv itself comes from requirements-dev.txt's pin, installed by pip with its
# hashes. Both files carry hashes, so every download is checked against the lock (--require-hashes).
# uv reads no pip configuration: the folder holding torch's CPU build is passed as find-links
# (TORCH_WHEELS, as `make lock` does). The packages are byte-compiled at install, as pip does by
# default (uv does not): ~30 s once on 2 cores. Left to the first imports, each parallel test worker
# compiled the same modules at the same moment on a fresh clone (~12 s of CPU per worker while
# collecting alone), and so did each process of the first local stacks.
TORCH_WHEELS ?= /opt/wheels
UV := $(BIN)/uv pip install --quiet --python $(PY) --require-hashes --find-links $(TORCH_WHEELS)
$(SETUP_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	awk '/^uv==/ {p = 1; print; next} p && /^ +--hash/ {print; next} {p = 0}' requirements-dev.txt > $(VENV)/uv-requirement.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r $(VENV)/uv-requirement.txt
	$(UV) --compile-bytecode -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

# Python caches the bytecode of what it imports (in __pycache__, next to the sources). Some machines
# turn that off for every process (PYTHONDONTWRITEBYTECODE=1, this one among them); then every process
# the tests start (each Emu worker, listener, queue server, web worker and CLI run) compiles boto3,
# moto and the rest from source again: 2-4x slower imports (boto3 0.45 -> 1.7 s, moto 0.6 -> 2.8 s).
unexport PYTHONDONTWRITEBYTECODE

## lock: resolve pyproject.toml's dependencies into requirements.lock and regenerate every requirement
## file from it (tools/lock.py says which file is for what); ARGS=--upgrade for the newest versions
lock: setup
	$(PY) -m tools.lock $(ARGS)

## system-deps: Chromium (Debian package) for the browser tests, the CDK CLI (npm) for synth tests
system-deps: cdk-cli
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

## cdk-cli: the CDK CLI from npm (all that synth and deploy need beyond the virtualenv)
cdk-cli: node_modules/.stamp

node_modules/.stamp: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

## demo: run the whole system locally (Postgres, SQS, listener, Emu, web) and open http://127.0.0.1:8000
demo: setup
	$(BIN)/refarch demo $(ARGS)

# Tests run in parallel worker processes (pytest-xdist); each worker has its own Postgres, SQS server
# and temp dirs. The whole suite runs two more workers than the cores: its tests also wait (on their
# local stacks' processes, on stand-ins that answer late on purpose), and with one worker per core a
# third of the CPU sat idle. Measured on 2 cores: 3 workers ~560 s, 4 ~515 s, 5 ~530 s. The fast loop
# is mostly work in the test processes themselves: one more worker than the cores (4 were slower than
# 3 there). `--dist loadgroup` keeps an xdist_group on one worker (the CDK synth tests: each stage
# synthesized once). TEST_WORKERS=0 runs them in this process.
CORES := $(shell nproc 2>/dev/null || echo 1)
TEST_WORKERS ?= $(shell echo $$(( $(CORES) + 2 )))
FAST_TEST_WORKERS ?= $(shell echo $$(( $(CORES) + 1 )))

## test: install everything the tests need, lint, then run them all (in parallel)
test: setup system-deps lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

## test-fast: the edit-run loop: unit, web and infra tests (no whole local stacks), in parallel
test-fast: setup
	$(PY) -m pytest -n $(FAST_TEST_WORKERS) --dist loadgroup tests/unit tests/web tests/infra

## lint: ruff (lint + format check) and mypy
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## openapi: regenerate web/openapi.yaml from the API's pydantic models (web/contract.py)
openapi: setup
	$(PY) -m web.openapi > web/openapi.yaml.tmp && mv web/openapi.yaml.tmp web/openapi.yaml

## docs: redraw docs/architecture.svg (from a synth of the dev stage) and the benchmark plots (from bench/*.json)
docs: setup
	$(PY) -m refarch_local.architecture_picture docs/architecture.svg
	$(BIN)/refarch bench plot --from bench/results.json --out docs/bench
	$(BIN)/refarch bench plot --from bench/results-quick.json --out docs/bench/quick --only edit-latency-during-bootstrap

synth: setup cdk-cli
	npx cdk synth

deploy: setup cdk-cli
	npx cdk deploy --all

## rehearse: run cdk.out locally (migrate, bootstrap, an edit, reconcile, re-index); the last line is a JSON summary
rehearse: setup
	$(BIN)/refarch rehearse $(ARGS)

bench: setup
	$(BIN)/refarch bench $(ARGS)

chaos: setup
	$(BIN)/refarch chaos $(ARGS)

clean:
	rm -rf $(VENV) node_modules cdk.out .refarch
