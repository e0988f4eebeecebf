#!/usr/bin/env bash
# make e2e: the end-to-end suite on the project's local control plane.
#
# Starts a private control plane (its own state directory, stopped at the
# end), puts its kubectl and helm first on PATH, and runs the suite with
# E2E_OPERATOR=local: the chart is installed by Helm with replicaCount=0 and
# the operator runs here under a token of the chart's ServiceAccount.
# With USE_EXISTING_CLUSTER=1 and KUBECONFIG set, that cluster is used instead
# (e2e/kind.sh runs this script so, with E2E_OPERATOR=deployment).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONSAFEPATH=1
py=.venv/bin/python

# The chart installs its own copy of the CRDs: a stale one makes the API
# server drop status fields the operator writes, and stacks hang.
if ! diff -rq crds charts/convergence/crds >/dev/null; then
  echo "e2e: charts/convergence/crds/ differs from crds/: run make chart-crds" >&2
  exit 1
fi

bin=$(bash e2e/controlplane/build.sh | tail -n 1)
export PATH="$bin:$PATH"

if [[ "${USE_EXISTING_CLUSTER:-}" == 1 ]]; then
  : "${KUBECONFIG:?USE_EXISTING_CLUSTER=1 needs KUBECONFIG}"
else
  state=$(mktemp -d "${TMPDIR:-/tmp}/convergence-e2e.XXXXXX")
  trap '"$py" -m convergence.operator.testing.controlplane down --state-dir "$state"' EXIT
  KUBECONFIG=$("$py" -m convergence.operator.testing.controlplane up --state-dir "$state")
  export KUBECONFIG
fi

# local: the operator runs here; deployment (e2e/kind.sh): the chart's Deployment runs it.
E2E_OPERATOR=${E2E_OPERATOR:-local} "$py" -m pytest e2e "$@"
