"""Benchmark: converge random DAGs of 1,000 and 10,000 resources on the simulator.

Not a test. For each size it creates a stack from a random DAG (each resource
requires up to three earlier ones, one through get_attr), updates it so that
every tenth resource is replaced and the others change in place, then deletes
it; for each traversal it prints wall time, the process's peak RSS, worker steps,
and store writes per graph node and per graph edge.

    cd /work/main && PYTHONSAFEPATH=1 .venv/bin/python tests/bench/bench_engine.py [SIZES...]
"""

from __future__ import annotations

import random
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot


def random_dag(size: int, seed: int, value: str, replace_every: int = 0) -> dict[str, Any]:
    """A HOT template of `size` TestResources forming a random DAG."""
    rng = random.Random(seed)
    resources: dict[str, Any] = {}
    for i in range(size):
        props: dict[str, Any] = {"value": f"{value}{i}"}
        deps = [f"r{j}" for j in {rng.randrange(i) for _ in range(rng.randint(0, 3))}] if i else []
        if deps:
            props["value"] = {"get_attr": [deps[0], "output"]}
        if replace_every:
            props["update_replace_value"] = value if i % replace_every == 0 else "keep"
        else:
            props["update_replace_value"] = "keep"
        resources[f"r{i}"] = {"properties": props, "depends_on": deps[1:]}
    return hot.template(hot.resources("OS::Heat::TestResource", resources))


def measure(label: str, sim: Simulator, start: Callable[[], object]) -> None:
    """Run one traversal to quiet and print its figures."""
    writes_before = sim.memory.total_writes
    steps_before = len(sim.trace)
    began = time.perf_counter()
    start()
    graph = sim.stack("bench").graph
    sim.run_until_quiet()
    elapsed = time.perf_counter() - began
    # Peak resident set size of the process so far (kilobytes on Linux).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    writes = sim.memory.total_writes - writes_before
    nodes, edges = len(graph), graph.edge_count()
    stack = sim.stack("bench")
    print(
        f"  {label:<7} {stack.phase:<16} {elapsed:7.2f} s  peak RSS {peak / 2**20:6.0f} MiB  "
        f"steps {len(sim.trace) - steps_before:>7}  nodes {nodes:>6}  edges {edges:>6}  "
        f"writes {writes:>7}  per node {writes / max(nodes, 1):5.2f}  "
        f"per edge {writes / max(edges, 1):5.2f}  "
        f"per (node+edge) {writes / max(nodes + edges, 1):5.2f}"
    )


def bench(size: int) -> None:
    """Create, update (with replacements) and delete a stack of `size` resources."""
    print(f"{size} resources")
    sim = Simulator()
    measure("create", sim, lambda: sim.create("bench", random_dag(size, 1, "a")))
    measure("update", sim, lambda: sim.update("bench", random_dag(size, 1, "b", replace_every=10)))
    measure("delete", sim, lambda: sim.delete("bench"))


def main(argv: list[str]) -> None:
    """Run the benchmark for the sizes given (default 1,000 and 10,000)."""
    for size in [int(a) for a in argv] or [1_000, 10_000]:
        bench(size)


if __name__ == "__main__":
    main(sys.argv[1:])
