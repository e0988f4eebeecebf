#!/usr/bin/env bash
# make e2e-kind: the end-to-end suite on a kind cluster, for anyone with Docker.
#
# Everything but the cluster is `make e2e`'s (e2e/local.sh): the same kubectl
# and helm, the same chart, the same pytest suite. The differences: the cluster
# is kind's (e2e/kind.yaml, node image pinned by digest), the operator image is
# built from the Dockerfile and loaded into it, and the chart's Deployment runs
# it (E2E_OPERATOR=deployment) instead of an operator process here. On failure
# the cluster's logs are exported to $E2E_ARTIFACTS; the cluster is deleted at
# the end either way (KEEP_CLUSTER=1 keeps it). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# The kind release whose notes list e2e/kind.yaml's node image.
KIND_VERSION=v0.33.0
cluster=${KIND_CLUSTER:-convergence-e2e}
image=${E2E_IMAGE:-convergence:e2e}
artifacts=${E2E_ARTIFACTS:-$PWD/.state/e2e-kind-logs}

command -v docker >/dev/null || { echo "e2e-kind: docker is required" >&2; exit 1; }
command -v go >/dev/null || { echo "e2e-kind: go is required to install kind" >&2; exit 1; }

kind_bin=${XDG_CACHE_HOME:-$HOME/.cache}/convergence/kind-$KIND_VERSION/bin
if [[ ! -x "$kind_bin/kind" ]]; then
  GOBIN="$kind_bin" go install "sigs.k8s.io/kind@$KIND_VERSION"
fi
kind="$kind_bin/kind"

docker build --tag "$image" .

state=$(mktemp -d "${TMPDIR:-/tmp}/convergence-e2e-kind.XXXXXX")
export KUBECONFIG="$state/kubeconfig"
cleanup() {
  rc=$?
  if [[ $rc -ne 0 ]]; then
    rm -rf "$artifacts" && mkdir -p "$artifacts"
    "$kind" export logs "$artifacts" --name "$cluster" || true
    echo "e2e-kind: failed ($rc); cluster logs in $artifacts" >&2
  fi
  if [[ "${KEEP_CLUSTER:-}" != 1 ]]; then
    "$kind" delete cluster --name "$cluster" || true
  fi
  rm -rf "$state"
  exit "$rc"
}
trap cleanup EXIT
"$kind" create cluster --name "$cluster" --config e2e/kind.yaml --kubeconfig "$KUBECONFIG" --wait 3m
"$kind" load docker-image "$image" --name "$cluster"

USE_EXISTING_CLUSTER=1 E2E_OPERATOR=deployment E2E_IMAGE="$image" bash e2e/local.sh "$@"
