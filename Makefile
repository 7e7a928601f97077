# dualstack-operator — see README.md. `make demo` and `make test` come first.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FAMILIES ?= ipv4,ipv6
NODES ?= 0
CLUSTER_DIR := .local/cluster
PYTEST_ARGS ?=

.PHONY: help demo test lint typecheck unit e2e deploy undeploy controlplane node image helm metallb kyverno cluster cluster-down run crds docs bench venv clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed ## create the Python environment in .venv

controlplane: ## build etcd, kube-apiserver, kube-controller-manager, kubectl (cached per user)
	hack/controlplane/build.sh >/dev/null

node: ## build kubelet, kube-proxy, kube-scheduler, containerd, runc and CoreDNS for a real node (cached per user)
	python3 hack/prereqs.py node
	hack/node/build.sh >/dev/null
	hack/coredns/build.sh >/dev/null

image: venv ## build the Dockerfile with buildah (.local/image/operator.tar; into a NODES=1 cluster's containerd)
	python3 hack/prereqs.py image
	$(BIN)/python hack/image.py --out .local/image/operator.tar \
		$(if $(wildcard $(CLUSTER_DIR)/node/containerd.sock),--import-to $(CLUSTER_DIR)/node/containerd.sock)

helm: ## build Helm from its Go module for the GitOps tests (cached per user)
	hack/helm/build.sh >/dev/null

metallb: ## build MetalLB's controller from its Go module for the LoadBalancer tests (cached per user)
	hack/metallb/build.sh >/dev/null

kyverno: ## build Kyverno's controllers from its Go module, for `make bench` only (cached per user)
	hack/kyverno/build.sh >/dev/null

demo: venv controlplane ## the whole story on a local dual-stack control plane
	hack/demo.sh

test: lint typecheck controlplane node helm metallb ## lint, type-check, then every unit and integration test
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv ## ruff lint and format check; the layers contract (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=operator $(BIN)/lint-imports

typecheck: venv ## mypy --strict on the package, hack/ and the tests
	$(BIN)/mypy

unit: venv ## only the tests that need no control plane (they start no process of it)
	$(BIN)/pytest -m 'not cluster' $(PYTEST_ARGS)

e2e: venv controlplane node helm ## only the slow end-to-end tiers: a real node, the image, the deployment, Helm
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

cluster: venv controlplane ## start the local control plane in the background (FAMILIES=ipv4,ipv6; NODES=1 adds a real node)
	$(if $(filter 1,$(NODES)),python3 hack/prereqs.py node)
	PYTHONPATH=hack $(BIN)/python -m localcluster up --state-dir $(CLUSTER_DIR) --families $(FAMILIES) --nodes $(NODES)

cluster-down: venv ## stop the processes `make cluster` started, by PID
	PYTHONPATH=hack $(BIN)/python -m localcluster down --state-dir $(CLUSTER_DIR)

# The image to deploy: on the local node cluster, the one `make image` loaded into it.
IMG ?= $(if $(wildcard $(CLUSTER_DIR)/node/containerd.sock),localhost/dualstack/dualstack-operator:dev,ghcr.io/dualstack-dev/dualstack-operator:0.1.0)
COMPONENTS ?=

deploy: venv ## install onto the current kubeconfig's cluster with IMG (COMPONENTS="native-admission recreate ...")
	PYTHONPATH=hack $(BIN)/python hack/deploy.py deploy --image $(IMG) --components "$(COMPONENTS)"

undeploy: venv ## remove what `make deploy` installed (CRDs, and with them every policy, included)
	PYTHONPATH=hack $(BIN)/python hack/deploy.py undeploy --image $(IMG) --components "$(COMPONENTS)"

run: venv ## the operator against the current kubeconfig
	$(BIN)/dualstack-operator run

bench: venv controlplane kyverno ## benchmarks: reconciler at 20,000 Services, admission latency, 10,000 namespaces, beside Kyverno (bench-results/)
	$(BIN)/python hack/bench.py
	$(BIN)/python hack/bench_admission.py
	$(BIN)/python hack/bench_namespaces.py
	$(BIN)/python hack/bench_peers.py

crds: venv ## regenerate crds/ from the pydantic models, and the chart's copies (CRDs, alerts, dashboard)
	$(BIN)/python -m dualstack_operator.api.crd crds
	$(BIN)/python hack/chart_files.py

docs: venv ## regenerate docs/reference/ from the models and the CLI
	$(BIN)/python hack/docs.py

clean: cluster-down ## remove the environment and local state (not the binary cache)
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache
