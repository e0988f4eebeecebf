#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy into a
# cache outside the clone, keyed by version, and prints the bin directory.
#
# A stamp file records the versions and the go.sum hashes; a warm call with a
# matching stamp builds nothing. Everything Go writes (module and build
# caches) lives under the same cache root, so `rm -rf` of it is a clean slate.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"

cache=${CONVERGENCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/convergence}
bin="$cache/k8s-$K8S_VERSION/bin"
log="$cache/k8s-$K8S_VERSION/build.log"

die() { echo "controlplane build: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 ||
  die "Go is not installed (need Go >= 1.26 on PATH, e.g. /usr/local/go/bin); the control plane is built from source"
gover=$(go env GOVERSION)
case "$gover" in
  go1.2[6-9]* | go1.[3-9]* | go[2-9]*) ;;
  *) die "Go $gover is too old: Kubernetes ${K8S_VERSION} needs Go >= 1.26" ;;
esac

stamp_want="k8s=$K8S_VERSION etcd=$ETCD_VERSION helm=$HELM_VERSION kwok=$KWOK_VERSION go=$gover $(cat "$here/k8s/go.sum" "$here/etcd/go.sum" | sha256sum | cut -c1-16)"
if [[ -f "$bin/.stamp" && "$(cat "$bin/.stamp")" == "$stamp_want" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOFLAGS=-modcacherw
export GOTOOLCHAIN=local CGO_ENABLED=0 GOPATH="$cache/go/path"
: >"$log"

run() {
  echo "+ $*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    echo "controlplane build failed: $*" >&2
    echo "--- last lines of $log ---" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

# Without these, /version answers v0.0.0-master and kubectl, helm's
# kubeVersion checks and kwok all misread the cluster.
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$now"
done

start=$(date +%s)
echo "building Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION into $bin (log: $log)" >&2
(cd "$here/k8s" && run go build -p 2 -trimpath -ldflags "$ldflags" -o "$bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl)
(cd "$here/etcd" && run go build -p 2 -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
GOBIN="$bin" run go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
GOBIN="$bin" run go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"

"$bin/kube-apiserver" --version | grep -q "$K8S_VERSION" ||
  die "kube-apiserver reports $("$bin/kube-apiserver" --version), expected $K8S_VERSION"
echo "$stamp_want" >"$bin/.stamp"
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
