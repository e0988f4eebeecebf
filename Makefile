# The two commands of the README: `make demo` and `make test`. Everything they
# need is installed by the targets below; nothing is expected on the machine
# but Python 3.11 and Go 1.26.

SHELL := /bin/bash
# The top-level folder operator/ would shadow the standard library's `operator`
# module for any Python started here with the working directory on sys.path.
export PYTHONSAFEPATH := 1
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CONTROLPLANE := $(PY) -m convergence.operator.testing.controlplane

.PHONY: venv lock graphviz-bin controlplane-bin controlplane controlplane-down env demo test lint unit integration clean chart-crds e2e e2e-kind bench faults kill-replicas bench-replicas

# The venv is rebuilt when pyproject.toml or the lock changes.
$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# mypy cannot follow setuptools' editable finder; give it a tree that
	@# spells the import names (convergence/operator -> operator/ ...).
	mkdir -p $(VENV)/typing/convergence
	ln -sfn $(CURDIR)/operator $(VENV)/typing/convergence/operator
	ln -sfn $(CURDIR)/reconcilers $(VENV)/typing/convergence/reconcilers
	touch $@

venv: $(VENV)/.installed

# Refreshes constraints.txt from what is installed (run after changing
# dependencies in pyproject.toml, then commit both).
lock: venv
	$(PY) -m pip freeze --exclude-editable | sort > constraints.txt

# Graphviz's `dot` renders `kubectl convergence graph -o svg|png` (the demo's picture, the
# plugin's tests); `-o dot` needs only the Python package. Debian's package, when missing.
graphviz-bin:
	@command -v dot >/dev/null || { \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) \
			apt-get install -y -qq graphviz >/dev/null; }

controlplane-bin:
	@e2e/controlplane/build.sh >/dev/null

# Starts (or finds running) etcd, kube-apiserver and kube-controller-manager;
# prints the kubeconfig path as the only line on stdout.
controlplane: venv controlplane-bin
	@$(CONTROLPLANE) up

controlplane-down: venv
	@$(CONTROLPLANE) down

env: venv controlplane-bin
	@$(CONTROLPLANE) env

demo: controlplane graphviz-bin
	@$(PY) -m convergence.operator.demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	MYPYPATH=$(VENV)/typing $(VENV)/bin/mypy -p convergence.operator -p convergence.reconcilers
	MYPYPATH=$(VENV)/typing $(VENV)/bin/mypy tests
	MYPYPATH=$(VENV)/typing:e2e $(VENV)/bin/mypy e2e/*.py
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest tests/unit

# The whole suite. Integration tests start their own control plane (and stop
# it) unless KUBECONFIG and USE_EXISTING_CLUSTER=1 point at a cluster.
# Then the end-to-end suite (make e2e); both must pass.
test: venv controlplane-bin graphviz-bin lint
	$(VENV)/bin/pytest
	bash e2e/local.sh

# The fault tests (tests/integration/test_faults.py: the API server and etcd
# restarted, expired watches, an update storm, a namespace deleted under a
# stopped operator, two operators with one frozen) over more seeds than
# `make test` runs (one): FAULT_RUNS seeds 0.., or FAULT_SEEDS=3,7 for chosen
# ones. About 5 minutes a seed.
FAULT_RUNS ?= 5
FAULT_SEEDS ?=
KILL_REPLICA_RUNS ?= 5
KILL_REPLICA_SEEDS ?=
faults: venv controlplane-bin
	FAULT_RUNS=$(FAULT_RUNS) FAULT_SEEDS=$(FAULT_SEEDS) $(VENV)/bin/pytest tests/integration/test_faults.py

# The benchmark with 1, 2 and 3 operator replicas: 1000 resources, and 10 stacks of 100.
bench-replicas: venv controlplane-bin
	for replicas in 1 2 3; do \
	  $(PY) tests/bench/bench_operator.py 1000 --chain=0 --spread=10 --replicas=$$replicas || exit 1; \
	done

# The three-replica kill test over many seeds, 10 kills each (`make test` runs one).
kill-replicas: venv controlplane-bin
	KILL_REPLICA_RUNS=$(KILL_REPLICA_RUNS) KILL_REPLICA_SEEDS=$(KILL_REPLICA_SEEDS) \
	  $(VENV)/bin/pytest tests/integration/test_kill.py -k replicas

# The chart ships a copy of crds/ (Helm reads only the chart's own folder);
# tests/integration/test_chart.py fails while the copy is stale.
chart-crds:
	cp crds/*.yaml charts/convergence/crds/

# The end-to-end suite on a private local control plane: the chart installed
# by Helm, the operator run here with a token of the chart's ServiceAccount.
e2e: venv controlplane-bin
	bash e2e/local.sh

# The same suite on a kind cluster (needs Docker and Go): builds the image,
# loads it, and lets the chart's Deployment run it.
e2e-kind: venv controlplane-bin
	bash e2e/kind.sh

# The operator beside `kubectl apply` on a fresh local control plane: figures,
# no assertions (tests/bench/bench_operator.py). SIZES="100 1000"; BIG=1 adds
# 3000; CHAIN=100 is the chain's length (0: none); WARM=1 first converges and
# deletes WARM_STACKS=50 small stacks; PROFILE=1 runs the operator under cProfile
# (every thread, wall clock; PROFILE=cpu: each thread's CPU time) into
# .state/bench/operator.pstats and prints its top entries; MEMORY=1 runs it under
# tracemalloc instead and prints what held the most memory near its highest point.
# DESIGN=1 (the default) first sends each size's budget of writes alone, before
# the operator starts; SERVER_PROFILE=1 takes the API server's CPU profile of each
# phase into .state/bench/server and prints its top entries.
SIZES ?= 100 1000
DESIGN ?= 1
CHAIN ?= 100
WARM_STACKS ?= 50
on = $(filter-out 0,$(1))
bench: venv controlplane-bin
	$(PY) tests/bench/bench_operator.py $(SIZES) $(if $(call on,$(BIG)),3000) --chain=$(CHAIN) \
		$(if $(call on,$(WARM)),--warm=$(WARM_STACKS)) \
		$(if $(call on,$(PROFILE)),--profile=.state/bench/operator.pstats \
			$(if $(filter cpu,$(PROFILE)),--profile-clock=cpu)) \
		$(if $(call on,$(MEMORY)),--trace-memory=.state/bench/operator.tracemalloc) \
		$(if $(call on,$(DESIGN)),--design-floor) \
		$(if $(call on,$(SERVER_PROFILE)),--server-profile=.state/bench/server)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .state
