"""Benchmark the operator on the real local control plane (a script, not a test).

Creates stacks of N zero-wait TestResources in a random DAG, times create and
delete, and counts the API server's own write requests
(`apiserver_request_total`, verbs POST/PUT/PATCH/DELETE) by resource, so the
writes per resource and per edge can be read off.

    PYTHONSAFEPATH=1 .venv/bin/python tests/bench/bench_operator.py 100 1000
"""

from __future__ import annotations

import json
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import REPO_ROOT, ControlPlane
from convergence.operator.testing.operator_process import OperatorProcess

WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"}
SAMPLE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")


def random_dag(size: int, seed: int) -> tuple[dict[str, Any], int]:
    """A template of `size` TestResources, each using up to 3 earlier ones; and its edge count."""
    rng = random.Random(seed)
    resources: dict[str, Any] = {}
    edges = 0
    for index in range(size):
        name = f"r{index}"
        deps = rng.sample(range(index), k=min(index, rng.randint(0, 3)))
        edges += len(deps)
        value: Any = (
            {"list_join": ["-", [{"get_attr": [f"r{d}", "output"]} for d in deps]]}
            if deps
            else name
        )
        resources[name] = {"type": "OS::Heat::TestResource", "properties": {"value": value}}
    return {"heat_template_version": "2021-04-16", "resources": resources}, edges


def requests(cluster: Cluster) -> tuple[Counter[str], Counter[str]]:
    """Requests the API server has served so far: writes by resource, reads by verb and resource."""
    writes: Counter[str] = Counter()
    reads: Counter[str] = Counter()
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = SAMPLE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        count = int(float(match.group(2)))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        if labels.get("verb") in WRITE_VERBS:
            writes[resource] += count
        elif labels.get("verb") in {"GET", "LIST"}:
            reads[f"{labels['verb']} {resource}"] += count
    return writes, reads


def wait_phase(cluster: Cluster, namespace: str, phase: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        got = cluster.kubectl(
            "get",
            "-n",
            namespace,
            "stack",
            "bench",
            "-o",
            "jsonpath={.status.phase}",
            check=False,
        ).stdout
        if got == phase:
            return time.monotonic() - start
        if got.endswith("_FAILED"):
            reason = cluster.kubectl(
                "get", "-n", namespace, "stack", "bench", "-o", "jsonpath={.status.statusReason}"
            ).stdout
            raise SystemExit(f"stack {got}: {reason}")
        time.sleep(0.5)
    raise SystemExit(f"stack did not reach {phase} in {timeout:.0f}s")


def bench(cluster: Cluster, size: int) -> None:
    namespace = f"bench-{size}"
    cluster.kubectl("create", "namespace", namespace)
    template, edges = random_dag(size, seed=size)
    stack = {
        "apiVersion": "convergence.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": "bench"},
        "spec": {"template": template},
    }
    before, reads_before = requests(cluster)
    start = time.monotonic()
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(stack))
    created = wait_phase(cluster, namespace, "CREATE_COMPLETE", timeout=60 + size * 2.0)
    elapsed = time.monotonic() - start
    after, reads_after = requests(cluster)
    delta = after - before
    read_delta = reads_after - reads_before
    total = sum(delta.values())
    print(
        f"{size} resources, {edges} edges: create {elapsed:.1f} s "
        f"(phase reached after {created:.1f} s of polling)"
    )
    print(
        f"  API writes {total}: per resource {total / size:.2f}, "
        f"per (resource + edge) {total / (size + edges):.2f}"
    )
    for resource, count in delta.most_common():
        print(f"    {resource or '(none)':<32} {count}")
    read_total = sum(read_delta.values())
    print(f"  API reads {read_total}: per resource {read_total / size:.2f}")
    for resource, count in read_delta.most_common(8):
        print(f"    {resource:<32} {count}")
    start = time.monotonic()
    # Not `kubectl delete --timeout`: one kubectl call may not outlast Cluster's own limit.
    cluster.kubectl("delete", "-n", namespace, "stack", "bench", "--wait=false")
    while cluster.kubectl("get", "-n", namespace, "stack", "bench", check=False).returncode == 0:
        if time.monotonic() - start > 60 + size * 2:
            raise SystemExit("stack not deleted in time")
        time.sleep(0.5)
    print(f"  delete {time.monotonic() - start:.1f} s")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so the control plane is stopped


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_term)
    sizes = [int(a) for a in argv] or [100, 1000]
    with tempfile.TemporaryDirectory() as tmp:
        plane = ControlPlane(Path(tmp) / "cp")
        kubeconfig = plane.up()
        try:
            cluster = Cluster(kubeconfig, str(plane.bin_dir / "kubectl"))
            cluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
            cluster.kubectl("wait", "--for=condition=Established", "-f", str(REPO_ROOT / "crds"))
            log = Path(tmp) / "operator.log"
            with OperatorProcess(kubeconfig, log):
                for size in sizes:
                    bench(cluster, size)
        finally:
            plane.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
