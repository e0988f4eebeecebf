"""Pre-delete guard of the convergence chart: refuse to uninstall while Stacks exist.

Every Stack holds a finalizer that only the operator removes (after deleting
the stack's resources). Uninstalling the operator first would strand them:
`kubectl delete stack` would hang and so would the deletion of their
namespaces. Run as the chart's pre-delete hook (with the operator's
ServiceAccount, in the operator image), a non-zero exit makes `helm uninstall`
stop before anything is removed. WATCHED_NAMESPACES is a comma-separated list
(empty: all namespaces). Out of a cluster it uses KUBECONFIG.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import kubernetes

GROUP, VERSION, PLURAL = "convergence.dev", "v1alpha1", "stacks"


def remaining_stacks(namespaces: list[str]) -> list[str]:
    """namespace/name of every Stack in the watched namespaces."""
    api = kubernetes.client.CustomObjectsApi()
    listed: list[dict[str, Any]] = []
    if namespaces:
        for namespace in namespaces:
            found = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
            listed.extend(found["items"])
    else:
        listed = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    return sorted(f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in listed)


def main() -> int:
    if os.environ.get("KUBECONFIG"):
        kubernetes.config.load_kube_config()
    else:
        kubernetes.config.load_incluster_config()
    namespaces = [n for n in os.environ.get("WATCHED_NAMESPACES", "").split(",") if n]
    stacks = remaining_stacks(namespaces)
    if not stacks:
        print("convergence: no Stacks left; uninstalling the operator")
        return 0
    shown = ", ".join(stacks[:20]) + (" …" if len(stacks) > 20 else "")
    print(
        f"convergence: refusing to uninstall: {len(stacks)} Stack(s) still exist ({shown}).\n"
        "Only the running operator can delete their resources and remove their finalizers.\n"
        "Delete them first and wait until they are gone, e.g.\n"
        "  kubectl delete stacks --all --all-namespaces --wait\n"
        "then run helm uninstall again.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
