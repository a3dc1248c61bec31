# Reverse Shell Responder. `make demo` and `make test` work on a fresh machine: they set up what they need.
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup test unit guard contract integration node e2e lint typecheck run demo bench bench-redelivery bench-fleet kube-up kube-down kube-build clean

help:
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

setup: $(STAMP) ## create .venv and install runtime + dev dependencies

$(STAMP): requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

lint: $(STAMP) ## ruff (lint + format check)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy strict on responder/ and main.py
	$(BIN)/mypy

# Test tiers: one folder and one marker each (tests/README.md says what each needs). `make test` runs them all.
unit: $(STAMP) ## tests/unit: in process, fakes of the ports (no server, no Go, no terraform)
	$(BIN)/pytest -q -m unit

guard: $(STAMP) ## tests/guard: the admission guard in Kubernetes' own CEL (Go; the first build uses the Go module proxy)
	$(BIN)/pytest -q -m guard

contract: $(STAMP) kube-build ## tests/contract: FakeKube and KubeAdapter on the same cases (local apiserver; exec cases: the node)
	$(BIN)/pytest -q -m contract

integration: $(STAMP) kube-build ## tests/integration: real clients against the local apiserver, Pub/Sub emulator, wire fakes
	$(BIN)/pytest -q -m integration

node: $(STAMP) kube-build ## tests/node: the real node (root): containers, exec, logs, the NetworkPolicy dataplane
	$(BIN)/pytest -q -m node

e2e: $(STAMP) kube-build ## tests/e2e: Pub/Sub emulator push -> functions-framework -> responder -> apiserver; make demo
	$(BIN)/pytest -q -m e2e

test: lint typecheck tf-check kube-build ## everything CI runs: lint, types, terraform checks, every test tier (unit, guard, contract, integration, node, e2e, terraform)
	$(BIN)/pytest -q

run: $(STAMP) ## serve the function locally on :8080 (dry-run unless RESPONDER_MODE=enforce)
	$(BIN)/functions-framework --target handle_finding --signature-type cloudevent --host 127.0.0.1 --port 8080

demo: $(STAMP) ## real local cluster + findings replayed in enforce mode (see README)
	$(BIN)/python tools/demo.py $(DEMO_ARGS)

kube-build: ## build Kubernetes 1.35 (apiserver, controller-manager, scheduler, kubelet) and etcd with Go from the module proxy (cached in ~/.cache/rsr; RSR_KUBE=1.20: the old Debian build); as root, install the node's packages
	$(PY) tools/kubeenv.py build

kube-up: ## start the local cluster (as root with a real node, sealed in its own network namespace), apply the responder's RBAC and install the admission guard; kubeconfigs in .testenv/
	$(PY) tools/kubeenv.py up --dir .testenv

kube-down: ## stop the local cluster and remove everything it created
	$(PY) tools/kubeenv.py down --dir .testenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

-include mk/*.mk
