"""`make demo`: a real stack converging on the local control plane.

Installs the CRDs, starts the operator (`convergence run`, a subprocess),
applies examples/hello-stack.yaml and prints each resource as it completes,
then the outputs; then updates the stack so that one resource must be
replaced and shows the replacement created first and the old one cleaned up
afterwards; then deletes the stack. The control plane keeps running for
exploring (`make env`); `make controlplane-down` stops it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import (
    REPO_ROOT,
    ControlPlane,
    ControlPlaneError,
)
from convergence.operator.testing.operator_process import OperatorProcess

EXAMPLE = REPO_ROOT / "examples" / "hello-stack.yaml"
REPLACING_UPDATE = {
    "spec": {
        "parameters": {"greeting": "bonjour"},
        "template": {
            "resources": {
                "first": {
                    "properties": {
                        "value": {"get_param": "greeting"},
                        "wait_secs": 1,
                        # not updatable in place: `first` is replaced
                        "update_replace_value": "v2",
                    }
                }
            }
        },
    }
}


def say(text: str) -> None:
    print(text, flush=True)


def resources(cluster: Cluster) -> dict[str, tuple[str, str]]:
    """StackResource name -> (logical name, phase)."""
    items = json.loads(cluster.kubectl("get", "stackresources", "-o", "json").stdout)["items"]
    return {
        item["metadata"]["name"]: (
            item["spec"]["resource"],
            (item.get("status") or {}).get("phase", "INIT_COMPLETE"),
        )
        for item in items
    }


def follow(cluster: Cluster, final_phase: str, timeout: float = 90) -> dict[str, Any]:
    """Print every change of a StackResource's phase until the stack reaches `final_phase`."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = resources(cluster)
        # Within one look, what finished is shown before what started.
        changes = sorted(
            current.items(), key=lambda kv: (kv[1][1].endswith("IN_PROGRESS"), kv[1][0])
        )
        for name, (logical, phase) in changes:
            if seen.get(name) != phase:
                say(f"  {logical:<8} {name[:8]}  {phase}")
                seen[name] = phase
        for name in set(seen) - set(current):
            say(f"  {'':<8} {name[:8]}  cleaned up (StackResource deleted)")
            del seen[name]
        stack = json.loads(cluster.kubectl("get", "stack", "hello", "-o", "json").stdout)
        if (stack.get("status") or {}).get("phase") == final_phase:
            return dict(stack["status"])
        time.sleep(0.3)
    raise AssertionError(f"the stack did not reach {final_phase} in {timeout:.0f}s")


def run(cluster: Cluster) -> None:
    def show(*args: str) -> None:
        say(f"$ kubectl {' '.join(args)}")
        print(cluster.kubectl(*args).stdout, end="", flush=True)

    show("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO_ROOT / "crds")
    )
    cluster.kubectl("delete", "stack", "hello", "--ignore-not-found", "--timeout=60s")
    show("apply", "-f", str(EXAMPLE.relative_to(REPO_ROOT)))
    status = follow(cluster, "CREATE_COMPLETE")
    show("get", "stacks")
    say(f"outputs: {json.dumps(status.get('outputs'))}")
    say("physical resources (one ConfigMap each):")
    show(
        "get",
        "configmaps",
        "-l",
        "app.kubernetes.io/managed-by=convergence",
        "-L",
        "convergence.dev/resource",
    )

    say("\nUpdate: a new greeting, and `first` gets a property that cannot change in place.")
    show("patch", "stack", "hello", "--type=merge", "-p", json.dumps(REPLACING_UPDATE))
    status = follow(cluster, "UPDATE_COMPLETE")
    show("get", "stackresources")
    say(f"outputs: {json.dumps(status.get('outputs'))}")

    say("\nDelete: resources go in reverse dependency order, then the finalizer is released.")
    show("delete", "stack", "hello", "--timeout=60s")
    left = cluster.kubectl(
        "get",
        "stackresources,configmaps",
        "-l",
        "app.kubernetes.io/managed-by=convergence",
        "-o",
        "name",
    ).stdout.strip()
    say(f"left behind: {left or 'nothing'}")


def main() -> int:
    plane = ControlPlane()
    try:
        kubeconfig = plane.up()
        cluster = Cluster(kubeconfig, str(plane.bin_dir / "kubectl"))
        log = plane.state_dir / "operator.log"
        say(f"operator log: {log}")
        with OperatorProcess(kubeconfig, log, "--namespace", "default"):
            run(cluster)
    except (ControlPlaneError, AssertionError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    say('\nThe control plane keeps running: eval "$(make -s env)" to use kubectl on it,')
    say("make controlplane-down to stop it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
