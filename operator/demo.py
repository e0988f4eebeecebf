"""`make demo`: the web application example converging on the local control plane.

Installs the CRDs, starts the operator (`convergence run`, a subprocess) and
applies examples/webapp/stack.yaml: a generated password, a Secret holding
it, a ConfigMap, a Deployment reading both and a Service in front of it. It
prints each resource as it starts, waits and completes (the Service waits for
the Deployment to be Available), then the outputs and the objects; then
rotates the password (a new salt), which replaces the RandomString, updates
the Secret and rolls the Deployment, and shows the old password's record
cleaned up after the rest is in service, and what the kubectl plugin shows of
it (`kubectl convergence resources` and `trace`, and the picture of the
update's graph, written to docs/graph.svg by `kubectl convergence graph`);
then deletes the stack and shows that nothing is left. The control plane
keeps running for exploring (`make env`); `make controlplane-down` stops it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import (
    REPO_ROOT,
    ControlPlane,
    ControlPlaneError,
)
from convergence.operator.testing.operator_process import OperatorProcess

EXAMPLE = REPO_ROOT / "examples" / "webapp" / "stack.yaml"
STACK = "webapp"
NAMESPACE = "default"
OBJECTS = "deployments,services,configmaps,secrets"
ROTATE_PASSWORD = {"spec": {"parameters": {"password_salt": "2"}}}
# The picture of the update's graph (the README shows it).
GRAPH_PICTURE = Path("docs") / "graph.svg"


class DemoError(Exception):
    """The demo cannot go on; the message says why."""


def say(text: str = "") -> None:
    print(text, flush=True)


def get_json(cluster: Cluster, *what: str) -> Any:
    result = cluster.kubectl("get", f"--namespace={NAMESPACE}", *what, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def records(cluster: Cluster) -> dict[str, tuple[str, str, str]]:
    """StackResource name -> (logical name, phase, what it waits for) for the stack."""
    found = get_json(cluster, "stackresources") or {"items": []}
    result = {}
    for item in found["items"]:
        if item["spec"].get("stack") != STACK:
            continue
        status = item.get("status") or {}
        waiting = (status.get("pluginData") or {}).get("waitingFor", "")
        if not status.get("phase", "").endswith("IN_PROGRESS"):
            waiting = ""
        result[item["metadata"]["name"]] = (
            item["spec"]["resource"],
            status.get("phase", "INIT_COMPLETE"),
            waiting,
        )
    return result


def template_order() -> dict[str, int]:
    """Logical name -> position in the example (its resources are in dependency order)."""
    body = yaml.safe_load(EXAMPLE.read_text())
    return {name: i for i, name in enumerate(body["spec"]["template"]["resources"])}


def follow(
    cluster: Cluster,
    generation: int,
    final_phase: str,
    seen: dict[str, tuple[str, str, str]],
    timeout: float = 240,
) -> Any:
    """Print each StackResource's progress until the stack reaches `final_phase`.

    `seen` holds what was printed already (kept from one operation to the next).
    """
    order = template_order()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = records(cluster)
        # Several changes can happen between two looks: show what finished before what
        # started, each in dependency order, so the story reads in the order it happened.
        for name, (logical, phase, waiting) in sorted(
            current.items(),
            key=lambda kv: (kv[1][1].endswith("IN_PROGRESS"), order.get(kv[1][0], 0)),
        ):
            if seen.get(name) != (logical, phase, waiting):
                note = f"  waiting for {waiting}" if waiting else ""
                say(f"  {logical:<12} {name[-8:]}  {phase}{note}")
                seen[name] = (logical, phase, waiting)
        for name in sorted(set(seen) - set(current)):
            say(f"  {seen[name][0]:<12} {name[-8:]}  cleaned up (StackResource deleted)")
            del seen[name]
        stack = get_json(cluster, "stack", STACK) or {}
        status = stack.get("status") or {}
        if status.get("observedGeneration") == generation:
            deleting = any(phase.startswith("DELETE") for _, phase, _ in current.values())
            # A cleaned-up record goes just after the stack completes: show that too.
            if status.get("phase") == final_phase and not deleting:
                return status
            if str(status.get("phase", "")).endswith("_FAILED"):
                raise DemoError(f"the stack failed: {status.get('statusReason')}")
        time.sleep(0.3)
    raise DemoError(f"the stack did not reach {final_phase} in {timeout:.0f}s")


def left_behind(cluster: Cluster, timeout: float = 90) -> str:
    """What is still labelled with the stack once the garbage collector has had its turn.

    The Stack's template revisions (Secrets owned by the Stack) go with the garbage
    collector, which on a fresh control plane may take half a minute to notice.
    """
    deadline = time.monotonic() + timeout
    told = False
    while True:
        left = cluster.kubectl(
            "get", f"--namespace={NAMESPACE}", f"stackresources,{OBJECTS}",
            "-l", f"convergence.dev/stack={STACK}", "-o", "name",
        ).stdout.split()  # fmt: skip
        if not left or time.monotonic() > deadline:
            return " ".join(left)
        if not told:
            say(f"  the garbage collector takes the Stack's template revisions: {' '.join(left)}")
            told = True
        time.sleep(1)


def kubectl_plugin(cluster: Cluster, *args: str) -> None:
    """Show `kubectl convergence ARGS` run as the kubectl plugin it is, from the repository.

    kubectl finds `kubectl-convergence` beside this Python (the venv's bin) and takes no
    flag before a plugin's name, so the kubeconfig goes by KUBECONFIG.
    """
    say(f"$ kubectl convergence {' '.join(args)}")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(
        [cluster.kubectl_binary, "convergence", *args],
        env={**os.environ, "PATH": path, "KUBECONFIG": str(cluster.kubeconfig)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise DemoError(f"kubectl convergence {' '.join(args)} failed: {result.stderr}")
    print(result.stdout, end="", flush=True)


def generation(cluster: Cluster) -> int:
    return int(get_json(cluster, "stack", STACK)["metadata"]["generation"])


def run(cluster: Cluster) -> None:
    def show(*args: str) -> None:
        say(f"$ kubectl {' '.join(args)}")
        print(cluster.kubectl(*args).stdout, end="", flush=True)

    def outputs(status: Any) -> None:
        for key, value in sorted((status.get("outputs") or {}).items()):
            say(f"  {key}: {json.dumps(value)}")

    crds = str(REPO_ROOT / "crds")
    show("apply", "--server-side", "--force-conflicts", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
    cluster.kubectl(
        "delete", "stack", STACK, f"--namespace={NAMESPACE}", "--ignore-not-found", "--timeout=120s"
    )

    say("\nCreate: the password, Secret and ConfigMap first; the Deployment when both")
    say("exist; the Service only once the Deployment is Available.")
    show("apply", f"--namespace={NAMESPACE}", "-f", str(EXAMPLE.relative_to(REPO_ROOT)))
    seen: dict[str, tuple[str, str, str]] = {}
    status = follow(cluster, generation(cluster), "CREATE_COMPLETE", seen)
    show("get", f"--namespace={NAMESPACE}", "stacks")
    say("outputs:")
    outputs(status)
    # The resources' objects (the Stack's template revisions, also Secrets, have no
    # resource label).
    show(
        "get", f"--namespace={NAMESPACE}", OBJECTS,
        "-l", f"convergence.dev/stack={STACK},convergence.dev/resource",
    )  # fmt: skip

    say("\nUpdate: a new password salt. The RandomString cannot change in place, so it is")
    say("replaced: the new password is made, the Secret gets it, the Deployment rolls")
    say("(its pod template names the password's version), and the old password goes last.")
    old_secret = (status.get("outputs") or {}).get("password_secret")
    show(
        "patch", "stack", STACK, f"--namespace={NAMESPACE}", "--type=merge",
        "-p", json.dumps(ROTATE_PASSWORD),
    )  # fmt: skip
    status = follow(cluster, generation(cluster), "UPDATE_COMPLETE", seen)
    show(
        "get", f"--namespace={NAMESPACE}", "stackresources", "-l", f"convergence.dev/stack={STACK}"
    )
    say("outputs:")
    outputs(status)
    if (status.get("outputs") or {}).get("password_secret") == old_secret:
        say(f"  (the Secret {old_secret} was updated in place with the new password)")

    say("\nThe kubectl plugin (kubectl-convergence, installed with the package) shows the")
    say("resources, what each one manages, and the update's graph: the old password's")
    say("update node, the replacement beside it, and the cleanup nodes.")
    ns = f"--namespace={NAMESPACE}"
    kubectl_plugin(cluster, "resources", STACK, ns)
    kubectl_plugin(cluster, "trace", STACK, ns)
    (REPO_ROOT / GRAPH_PICTURE.parent).mkdir(exist_ok=True)
    kubectl_plugin(cluster, "graph", STACK, ns, "-o", "svg", "--output", str(GRAPH_PICTURE))
    say(f"  the picture of the graph: {GRAPH_PICTURE}")

    say("\nDelete: resources go in reverse dependency order, then the Stack's finalizer goes.")
    show("delete", "stack", STACK, f"--namespace={NAMESPACE}", "--timeout=120s")
    say(f"left behind: {left_behind(cluster) or 'nothing'}")


def main() -> int:
    plane = ControlPlane()
    try:
        kubeconfig = plane.up()
        cluster = Cluster(kubeconfig, str(plane.bin_dir / "kubectl"))
        log = plane.state_dir / "operator.log"
        say(f"operator log: {log}")
        with OperatorProcess(kubeconfig, log, "--namespace", NAMESPACE):
            run(cluster)
    except (ControlPlaneError, AssertionError, DemoError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    say('\nThe control plane keeps running: eval "$(make -s env)" to use kubectl on it,')
    say("make controlplane-down to stop it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
