# The two commands: `make run` (the whole pipeline on the embedded default) and `make test`.
# Both set up everything they need on a fresh Debian machine (system packages, venv, Kafka jars).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ORT ?= cpu
PYTEST_ARGS ?=

.PHONY: run test setup system-deps venv helm s3 bench clean stop

setup: system-deps venv

system-deps:
	@if [ "$$(id -u)" -eq 0 ]; then bash scripts/install-system-deps.sh; \
	 else sudo bash scripts/install-system-deps.sh; fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(ORT),test]"
	touch $(STAMP)

helm:
	bash scripts/install-helm.sh

# SeaweedFS (the real S3 server of the evidence tests), built once per machine into ~/.cache/cctv-s3.
s3:
	bash scripts/install-seaweedfs.sh

run: setup
	$(PY) -m cctv.cli up

stop:
	-$(PY) -m cctv.cli down

# pytest exits 5 when it collects no test: report it instead of failing on it.
test: setup helm s3
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc

bench: setup
	$(PY) -m pip install -q -e ".[$(ORT),test,bench]"
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
