"""Pushes into one stack sync map against pushes spread over shards (a script, not a test).

A traversal's roots push their entries into ConfigMaps (kube/graphs.py), one
JSON patch `add` of one key each, and every step that acts reads the map that
says the traversal is current (its metadata only). This sends N such pushes,
each followed by that read, into 1 map and into K maps on a fresh local control
plane, from T threads (the operator sends one at a time per map), and prints
the time and the mean latency of the first and last tenth of the pushes and
reads: how the cost of a push grows with the map it lands in.

    PYTHONSAFEPATH=1 .venv/bin/python tests/bench/bench_sync_map.py 1152 --shards 1,16 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes
from kubernetes.client import V1ConfigMap, V1Namespace, V1ObjectMeta

from convergence.operator.kube.api import JSON_PATCH, request
from convergence.operator.kube.graphs import METADATA_ONLY
from convergence.operator.testing.controlplane import ControlPlane


def run(api: kubernetes.client.ApiClient, pushes: int, shards: int, threads: int) -> str:
    namespace = f"sync-{shards}-{uuid.uuid4().hex[:6]}"
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=namespace)))
    traversal = str(uuid.uuid4())
    for index in range(shards):
        meta = V1ObjectMeta(name=f"sync-{index}")
        core.create_namespaced_config_map(
            namespace, V1ConfigMap(metadata=meta, data={"traversal": traversal})
        )
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    value = json.dumps({"traversal": traversal})

    def push(number: int) -> tuple[float, float]:
        add = [{"op": "add", "path": f"/data/update_{uuid.uuid4()}", "value": value}]
        started = time.monotonic()
        path = f"{base}/sync-{number % shards}"
        request(api, "PATCH", path, body=add, content_type=JSON_PATCH)
        pushed = time.monotonic()
        request(api, "GET", f"{base}/sync-0", accept=METADATA_ONLY)
        return pushed - started, time.monotonic() - pushed

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        times = list(pool.map(push, range(pushes)))
    seconds = time.monotonic() - started
    tenth = max(1, pushes // 10)

    def mean_ms(part: list[tuple[float, float]], which: int) -> float:
        return 1000 * sum(t[which] for t in part) / len(part)

    first, last = times[:tenth], times[-tenth:]
    return (
        f"{shards:3d} maps: {pushes} pushes in {seconds:.2f} s; push "
        f"{mean_ms(first, 0):.1f} -> {mean_ms(last, 0):.1f} ms, read "
        f"{mean_ms(first, 1):.1f} -> {mean_ms(last, 1):.1f} ms (first -> last tenth)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pushes", type=int, nargs="?", default=1152)
    parser.add_argument("--shards", default="1,16", help="comma-separated map counts")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plane = ControlPlane(Path(tmp) / "cp")
        kubeconfig = plane.up()
        try:
            api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig)
            )
            for shards in (int(k) for k in args.shards.split(",")):
                print(run(api, args.pushes, shards, args.threads), flush=True)
        finally:
            plane.down()


if __name__ == "__main__":
    main()
