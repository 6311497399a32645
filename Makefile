# The two commands: `make run` (the whole pipeline on the embedded default) and `make test`.
# Both set up everything they need on a fresh Debian machine (system packages, venv, Kafka jars).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ORT ?= cpu
PYTEST_ARGS ?=
RUN_ARGS ?=
BENCH_ARGS ?=
CHAOS_ARGS ?=
SOAK_ARGS ?=

.PHONY: run test lint setup system-deps venv helm k8s s3 bench chaos soak clean stop reset

setup: system-deps venv

system-deps:
	@if [ "$$(id -u)" -eq 0 ]; then bash scripts/install-system-deps.sh; \
	 else sudo bash scripts/install-system-deps.sh; fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(ORT),test,plan]"
	touch $(STAMP)

helm:
	bash scripts/install-helm.sh

# etcd + kube-apiserver + kube-controller-manager for the Camera CRD tests: built once per machine
# from the Go module proxy into ~/.cache/cctv-k8s (CCTV_K8S_CACHE), so fresh clones reuse them.
k8s:
	bash scripts/build-k8s.sh

# SeaweedFS (the real S3 server of the evidence tests), built once per machine into ~/.cache/cctv-s3.
s3:
	bash scripts/install-seaweedfs.sh

# `make run` refuses (one line) while another `make run` / `cctv up` uses the same broker port; it says
# which state it starts from. Extra options: make run RUN_ARGS="--cameras mycams.yaml".
run: setup
	$(PY) -m cctv.cli up $(RUN_ARGS)

# Stops the running `make run` (its services, Kafka, registry) and names each thing it stopped.
stop:
	@if [ -x $(PY) ]; then $(PY) -m cctv.cli down; else echo "no $(VENV): nothing to stop"; fi

# Back to a fresh state: stops the stack and deletes broker data, registry database and run/ (cameras,
# backlog, alerts, logs, dev credentials). Downloaded jars and the venv stay.
reset:
	@if [ -x $(PY) ]; then $(PY) -m cctv.cli down --purge; \
	 else rm -rf .cache/kafka/node-* .cache/registry/node-* run && echo "removed broker data and run/"; fi

# Lint (ruff) and format check, then types (mypy on libs/ and services/): part of `make test`, so of CI.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# pytest exits 5 when it collects no test: report it instead of failing on it.
test: setup helm k8s s3 lint
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc

# Results go to run/bench/; `make bench BENCH_ARGS=--publish` updates docs/benchmarks. Other options the
# same way: make bench BENCH_ARGS="--quick --only detector" (plain `make bench --quick` is read by make).
bench: setup
	$(PY) -m pip install -q -e ".[$(ORT),test,plan,bench]"
	$(PY) -m bench $(BENCH_ARGS)

# Faults with accounting: every service killed -9 in turn, broker restarted, a camera dropped; then the
# topics are read whole and accounted. Report in run/chaos/<time>/; CHAOS_ARGS="--duration 600 --cameras 4
# --publish" also writes docs/benchmarks/chaos.{md,json}. Exits 1 when anything was lost or split.
chaos: setup
	$(PY) -m cctv.chaos $(CHAOS_ARGS)

# Many cameras for a long time (30 min by default; SOAK_ARGS="--minutes 15 --cameras 16 --publish"):
# RSS per service, lag and alert rate over time into run/soak/<time>/ (CSV + plot); exits 1 when a
# service's memory grows faster than --max-slope MB/min.
soak: setup
	$(PY) -m cctv.chaos.soak $(SOAK_ARGS)

# Everything `make setup` and `make run` created: the stack's state (as `make reset`), then the venv.
clean: reset
	rm -rf $(VENV) .pytest_cache
