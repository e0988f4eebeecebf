"""`make demo`: the example Stack on the local control plane.

Installs the CRDs, applies examples/hello-stack.yaml and lists the stacks with
kubectl, so a user sees what `kubectl apply` of a stack looks like. The control
plane keeps running afterwards for exploring (`make env`); `make
controlplane-down` stops it.
"""

from __future__ import annotations

import sys

from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import (
    REPO_ROOT,
    ControlPlane,
    ControlPlaneError,
)

EXAMPLE = REPO_ROOT / "examples" / "hello-stack.yaml"


def run(cluster: Cluster) -> None:
    def show(*args: str) -> None:
        print(f"$ kubectl {' '.join(args)}", flush=True)
        print(cluster.kubectl(*args).stdout, end="", flush=True)

    show("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    show("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO_ROOT / "crds"))
    show("apply", "-f", str(EXAMPLE.relative_to(REPO_ROOT)))
    show("get", "stacks")


def main() -> int:
    plane = ControlPlane()
    try:
        kubeconfig = plane.up()
        run(Cluster(kubeconfig, str(plane.bin_dir / "kubectl")))
    except (ControlPlaneError, AssertionError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print('\nThe control plane keeps running: eval "$(make -s env)" to use kubectl on it,')
    print("make controlplane-down to stop it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
