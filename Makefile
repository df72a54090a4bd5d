# wincontainers.gmsa developer entry point. `make test` is what CI runs; `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PIP_STAMP := $(VENV)/.deps-installed
# Tools from the virtual environment first (ansible-lint warns when it has to fix PATH itself).
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Where the lab builds the windows-gmsa webhook from (tests/lab/build.py): a checkout or git bundle named here, else
# GitHub. On machines without GitHub the team's bundle sits beside the checkout, as for CI (.ci/run).
export WGMSA_WINDOWS_GMSA_SOURCE ?= $(wildcard $(CURDIR)/../shared/upstream/windows-gmsa.bundle)

.PHONY: help deps sanity units lint changelog-lint build lab-deps lab-up lab-down lab-status integration demo demo-clean molecule test clean ee-image awx-up awx-down awx-status awx-lint awx-test host-list host-clean chaos

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(PY):
	"$$(hack/find-python.sh)" -m venv $(VENV)

$(PIP_STAMP): $(PY) requirements.txt tests/requirements-dev.txt
	hack/system-deps.sh
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -r tests/requirements-dev.txt
	touch $@

deps: $(PIP_STAMP) ## create the virtual environment with the pinned toolchain
	@# ansible-test --venv downloads get-pip.py from a host CI cannot reach; it uses a cached copy first.
	@pip_version=$$($(PY) -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages; \
		print(get_venv_packages(types.SimpleNamespace(version="3"))["pip"])'); \
	  mkdir -p ~/.ansible/test/cache; \
	  cp hack/get_pip_offline.py ~/.ansible/test/cache/get_pip_$${pip_version//./_}.py

sanity: deps ## ansible-test sanity (offline, in virtual environments)
	tree=$$(hack/collection-tree.sh $(PY)); version=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  cd "$$tree" && $(CURDIR)/$(BIN)/ansible-test sanity --venv --python "$$version" --color no

units: deps ## unit tests
	$(BIN)/pytest tests/unit -q

lint: deps ## ansible-lint, production profile
	$(BIN)/ansible-lint --profile production

changelog-lint: deps ## antsibull-changelog lint
	$(BIN)/antsibull-changelog lint

build: deps ## build the collection tarball, install it and render every plugin's docs
	hack/build-check.sh $(BIN)

LAB := $(PY) -m tests.lab.labctl

lab-deps: deps ## install Samba 4.22 (as root) and build the lab's Go binaries once per version
	hack/install-samba.sh
	$(PY) -m tests.lab.build

# How many Kubernetes clusters make lab-up runs (a fleet: examples/inventories/lab-fleet wants 3).
CLUSTERS ?= 1

lab-up: lab-deps ## start the lab (Samba AD DC + Kubernetes control plane; CLUSTERS=3 for a fleet); reuses what already runs
	$(LAB) up --clusters $(CLUSTERS)

lab-down: ## stop the lab (state and build caches stay for a fast next start)
	$(LAB) down
	@# The fleet suite (tests/integration/test_fleet.py) removes its own clusters; these are what an interrupted run left.
	$(LAB) down --only kube --cluster fleet --state-dir "$$($(PY) -c 'from tests.lab import fleet; print(fleet.suite_state_dir())')"
	@# So do the clusters of the fault and chaos suites (tests/integration/support.py, own_cluster).
	for cluster in $$($(PY) -c 'from tests.integration import support; print(*support.OWN_CLUSTERS)'); do \
	  $(LAB) down --only kube --cluster $$cluster --state-dir "$$($(PY) -c "from tests.integration import support; print(support.own_cluster_state_dir('$$cluster'))")"; \
	done

lab-status: ## show what of the lab runs (no secrets)
	$(LAB) status

integration: lab-up demo-clean ## integration tests against the lab's real servers
	$(PY) -m pytest tests/integration -q -rs

# The suites assume no other webhook intercepts their namespaces: what `make demo` (or a benchmark) left would.
demo-clean: lab-up ## take what make demo made off the lab (the cleanup playbook on its inventory; AD objects stay)
	ANSIBLE_COLLECTIONS_PATH="$$(hack/collections-path.sh)" $(BIN)/ansible-playbook -i examples/inventories/lab wincontainers.gmsa.cleanup

demo: lab-up ## the main job on the lab: site playbook (domain, cluster, workload, verify) and a summary
	hack/demo.sh $(BIN)

molecule: lab-up ## molecule scenario on the lab: converge, idempotence (changed=0), verify, cleanup
	hack/collections-path.sh >/dev/null
	$(BIN)/molecule test -s default

# The AWX lab (docs/awx.md): the execution environment image built here, and a real AWX running job templates.
# Sources of AWX, django-ansible-base and receptor: $$WGMSA_AWX_SOURCE, $$WGMSA_DJANGO_ANSIBLE_BASE_SOURCE,
# $$WGMSA_RECEPTOR_SOURCE (local checkouts or git bundles), else GitHub.
AWX := $(PY) -m tests.awx.awxctl
AWX_DIR = $$($(PY) -c 'from tests.awx import awx_dir; print(awx_dir())')

ee-image: deps ## build the execution environment image (debootstrap base, ansible-builder; cached per checkout)
	hack/awx-deps.sh "$(AWX_DIR)"
	$(PY) -m tests.awx.ee

awx-up: deps ## start a real AWX (PostgreSQL, Redis, receptor, AWX) on 127.0.0.1; builds what is missing
	hack/awx-deps.sh "$(AWX_DIR)"
	$(AWX) up

awx-down: ## stop every AWX lab process (state and caches stay for a fast next start)
	$(AWX) down

awx-status: ## show what of the AWX lab runs, its memory, its URL (no secrets)
	$(AWX) status

awx-lint: deps ## ansible-lint (production profile) of the awx.awx configuration-as-code playbook, with awx.awx built from AWX's source
	$(PY) -m tests.awx.build --only-awx-collection >/dev/null
	@# -c /dev/null: .ansible-lint excludes this directory from `make lint`, which would exclude it here too.
	ANSIBLE_COLLECTIONS_PATH="$(AWX_DIR)/collections" $(BIN)/ansible-lint --profile production -c /dev/null extensions/awx/

awx-test: awx-lint lab-up awx-up ## the AWX suite: the EE image against the lab, configure.yml, job templates through AWX's API
	$(PY) -m pytest tests/awx -q -rs

test: sanity units lint changelog-lint build integration molecule ## everything CI runs (leaves the lab up: make lab-down)

host-list: ## what the lab installed on this machine (Debian packages, apt sources), recorded as it installed them
	hack/host-packages.sh list

host-clean: lab-down ## purge what the lab installed on this machine (only what it recorded installing)
	hack/host-packages.sh remove

chaos: lab-up ## the site-like play interrupted (SIGINT/SIGKILL) at random points 20 times; WGMSA_CHAOS_SEED=N replays a run
	WGMSA_CHAOS_RUNS=$${WGMSA_CHAOS_RUNS:-20} $(PY) -m pytest tests/integration/test_chaos.py -q -rs -s

clean: ## remove build output (keeps the virtual environment)
	rm -rf build tests/output
