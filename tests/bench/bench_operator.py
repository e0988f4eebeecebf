"""The operator beside `kubectl apply` on one real local control plane (a script, not a test).

For each size N, in one run and on one API server:
- the floor: `kubectl apply --server-side` of N ConfigMaps as one List;
- a Stack of N zero-wait TestResources in a seeded random DAG (each uses up to
  3 earlier ones through get_attr): create until CREATE_COMPLETE, an update
  that changes every value in place until UPDATE_COMPLETE (both with
  `status.observedGeneration` caught up), then delete until the Stack is gone;
- for each traversal: time and its ratio to the floor, the API writes the API
  server itself counted (`apiserver_request_total`) by resource and verb, per
  resource and per (resource + edge), against the design's budget
  (create and delete <= 3n + m, update <= 2n + m), Events created (outside the
  budget, <= 2 per resource), the operator's CPU seconds and peak RSS, and the
  API server's and etcd's CPU seconds;
- t(N2)/t(N1) for consecutive sizes.
Once per run: time per hop on a chain (r1 uses r0, r2 uses r1, ...), the load
average at start and end, optionally a warm-up of many small stacks first (to
compare a long-running operator with a fresh one) and a profile of the
operator. It prints figures and asserts nothing about time.

With `--replicas R` the operator runs as R replicas sharing the work (CPU
seconds are their sum, RSS the largest one's); `--spread K` adds K stacks of
`--spread-size` resources created, updated and deleted at once, each in a
namespace of its own. `make bench-replicas` runs 1000 resources and 10 x 100
with 1, 2 and 3 replicas.

    make bench                        # SIZES="100 1000"; BIG=1 WARM=1 PROFILE=1
    PYTHONSAFEPATH=1 .venv/bin/python tests/bench/bench_operator.py 100 1000 --chain 100
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pstats
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

import kubernetes

from convergence.operator.kube.api import (
    APPLY_PATCH,
    FIELD_MANAGER,
    JSON_PATCH,
    MERGE_PATCH,
    request,
)
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import REPO_ROOT, ControlPlane
from convergence.operator.testing.operator_process import CLI, OperatorProcess

GROUP, VERSION = "convergence.dev", "v1alpha1"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}
SAMPLE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")
# The API server's own time per request: sum of seconds and count, by resource and verb.
DURATION = re.compile(r"^apiserver_request_duration_seconds_(sum|count)\{([^}]*)\} ([0-9.e+]+)$")
# Written by the control plane on its own clock whatever the operator does (leader
# leases of kube-controller-manager and kube-scheduler, kwok's node heartbeats):
# left out of the budget, and shown apart.
BACKGROUND = {"leases", "nodes", "nodes/status"}
# The bench sees a phase end through a watch of its Stacks, as `kubectl wait` does.
# It polled with GETs before: each read the whole Stack (at 3000 resources the
# template, with its managedFields, took the API server 350 ms to answer, 45 GETs and
# 15.7 s of its time in one create), and a poll paced to keep that load down saw the
# end up to 1.4 s late. A watch costs the API server one more receiver of events it
# encodes for the operator's own watch, and sees the end when it happens.
# Seconds one watch request stays open before it is made again.
WATCH_SECONDS = 60
# How long after a phase's end the operator may go on writing before the phase is
# reported as never settling.
SETTLE_LIMIT = 10.0
# Seconds of each phase the API server's CPU profile covers (--server-profile).
SERVER_PROFILE_SECONDS = 10
# Client threads of the design floor: as many as the operator's workers.
DESIGN_FLOOR_THREADS = 16
BENCH_LABEL = "convergence.dev/bench"


def random_dag(size: int, seed: int, suffix: str = "") -> tuple[dict[str, Any], int]:
    """A template of `size` TestResources, each using up to 3 earlier ones; and its edge count.

    The same seed gives the same graph; a `suffix` joined to every value changes them
    all (an update in place of every resource).
    """
    rng = random.Random(seed)
    resources: dict[str, Any] = {}
    edges = 0
    for index in range(size):
        name = f"r{index}"
        deps = rng.sample(range(index), k=min(index, rng.randint(0, 3)))
        edges += len(deps)
        value: Any = f"{name}-{suffix}" if suffix else name
        if deps:
            parts: list[Any] = [{"get_attr": [f"r{d}", "output"]} for d in deps]
            value = {"list_join": ["-", [*parts, suffix] if suffix else parts]}
        resources[name] = {"type": "OS::Heat::TestResource", "properties": {"value": value}}
    return hot.template(resources), edges


def _used(value: Any) -> list[str]:
    """The resources a value `random_dag` made takes an attribute of."""
    if not isinstance(value, dict):
        return []
    return [part["get_attr"][0] for part in value["list_join"][1] if isinstance(part, dict)]


def chain(length: int) -> dict[str, Any]:
    """A template of `length` TestResources, each using the one before it."""
    resources: dict[str, Any] = {"r0": {"type": "OS::Heat::TestResource"}}
    for index in range(1, length):
        value = {"get_attr": [f"r{index - 1}", "output"]}
        resources[f"r{index}"] = {"type": "OS::Heat::TestResource", "properties": {"value": value}}
    return hot.template(resources)


# --- what the API server counted ----------------------------------------------


class Request(NamedTuple):
    """One line of apiserver_request_total, summed over the labels not named here."""

    resource: str  # with its subresource: "stackresources/status"
    verb: str
    code: str


def request_counts(cluster: Cluster) -> Counter[Request]:
    """Requests the API server has served since it started."""
    counts: Counter[Request] = Counter()
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = SAMPLE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        key = Request(resource, labels.get("verb", ""), labels.get("code", ""))
        counts[key] += int(float(match.group(2)))
    return counts


def request_seconds(
    cluster: Cluster,
) -> tuple[dict[tuple[str, str], float], Counter[tuple[str, str]]]:
    """Seconds the API server spent on requests, and how many, by (resource, verb)."""
    seconds: dict[tuple[str, str], float] = {}
    count: Counter[tuple[str, str]] = Counter()
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = DURATION.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if labels.get("verb") in {"WATCH", "CONNECT"}:
            continue
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        key = (resource, labels.get("verb", ""))
        if match.group(1) == "sum":
            seconds[key] = seconds.get(key, 0.0) + float(match.group(3))
        else:
            count[key] += int(float(match.group(3)))
    return seconds, count


def is_write(request: Request) -> bool:
    return request.verb in WRITE_VERBS


def operator_writes(counts: Counter[Request]) -> int:
    """Writes in `counts` that are not the control plane's own (Events included)."""
    return sum(n for r, n in counts.items() if is_write(r) and r.resource not in BACKGROUND)


def budget_writes(counts: Counter[Request]) -> Counter[tuple[str, str]]:
    """Writes in the budget, by (resource, verb): all but Events and the control plane's own."""
    writes: Counter[tuple[str, str]] = Counter()
    for counted, count in counts.items():
        if is_write(counted) and counted.resource not in BACKGROUND | {"events"}:
            writes[counted.resource, counted.verb] += count
    return writes


# --- a process's own figures ----------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    times = os.times()
    return times.user + times.system


def rss_mib(pid: int, field: str = "VmHWM") -> float:
    """The most resident memory the process has had (VmHWM), in MiB; `VmRSS`: now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- phases -------------------------------------------------------------------


@dataclass
class Phase:
    """What one timed step cost: a floor apply, a traversal, a chain."""

    name: str
    resources: int
    edges: int
    budget: int | None  # writes the design allows; None for the floor
    seconds: float = 0.0
    counts: Counter[Request] = field(default_factory=Counter)
    # Requests after the end until the operator stopped writing (then in `counts`), or
    # for SETTLE_LIMIT seconds if it never stopped (then not in `counts`).
    trailing: Counter[Request] = field(default_factory=Counter)
    settled: bool = True
    # The bench's own requests to see the phase end (Bench.wait).
    reads: int = 0
    operator_cpu: float = 0.0
    control_plane_cpu: float = 0.0
    peak_rss_mib: float = 0.0
    # The API server's seconds and requests by (resource, verb), watches left out.
    server_seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    server_requests: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def writes(self) -> Counter[tuple[str, str]]:
        return budget_writes(self.counts)

    @property
    def total_writes(self) -> int:
        return sum(self.writes.values())

    @property
    def events(self) -> int:
        return sum(n for r, n in self.counts.items() if r.resource == "events" and r.verb == "POST")

    @property
    def served(self) -> int:
        """Requests the API server finished in the window (watches left out: they stay open)."""
        return sum(n for r, n in self.counts.items() if r.verb not in {"WATCH", "CONNECT"})

    def per_resource(self, count: float) -> float:
        return count / max(self.resources, 1)


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


class Bench:
    """The control plane, the operator and the figures gathered so far."""

    def __init__(
        self,
        cluster: Cluster,
        plane: ControlPlane,
        operators: list[OperatorProcess],
        poll_slowdown: float,
        server_profiles: Path | None = None,
        trace_memory: Path | None = None,
    ) -> None:
        self.cluster = cluster
        # Where each phase's CPU profile of the API server goes (None: not taken).
        self.server_profiles = server_profiles
        # The snapshot file of an operator run under tracemalloc (None: not traced).
        self.trace_memory = trace_memory
        self.operators = operators
        self.operator = operators[0]
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        self.stacks = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.server_pids = [
            c.pid for c in plane.components() if c.name in {"kube-apiserver", "etcd"}
        ]
        # Profiling slows the operator down several times; wait longer before giving up.
        self.poll_slowdown = poll_slowdown
        self.phases: list[Phase] = []

    @property
    def operator_pid(self) -> int:
        return self.operator_pids[0]

    @property
    def operator_pids(self) -> list[int]:
        pids = []
        for operator in self.operators:
            if operator.pid is None:
                raise SystemExit(f"an operator is not running; its log:\n{operator.tail()}")
            pids.append(operator.pid)
        return pids

    def operator_cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.operator_pids)

    def server_cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.server_pids)

    @contextmanager
    def phase(
        self,
        name: str,
        resources: int,
        edges: int,
        budget: int | None,
        operator: bool = True,
    ) -> Iterator[Phase]:
        """Time the body; count requests and CPU from just before it until its writes settle.

        `operator`: whether the operator runs (without, its CPU and RSS are 0).
        """
        phase = Phase(name, resources, edges, budget)
        counts = request_counts(self.cluster)
        seconds, requests = request_seconds(self.cluster)
        operator_cpu = self.operator_cpu() if operator else 0.0
        server_cpu = self.server_cpu()
        profile = self.start_server_profile(f"{name}-{resources}")
        start = time.monotonic()
        yield phase
        phase.seconds = time.monotonic() - start
        if profile is not None:
            profile.join()
        seconds_after, requests_after = request_seconds(self.cluster)
        phase.server_seconds = {
            key: spent - seconds.get(key, 0.0) for key, spent in seconds_after.items()
        }
        phase.server_requests = requests_after - requests
        # Writes that trail the end (a last report, an Event) belong to the traversal:
        # read again until a second passes without a write of the operator's. An
        # operator that never stops is shown apart rather than counted for however long
        # the wait was.
        at_end = request_counts(self.cluster)
        after, phase.settled = self.settled_counts(at_end)
        phase.trailing = after - at_end
        phase.counts = (after if phase.settled else at_end) - counts
        if operator:
            phase.operator_cpu = self.operator_cpu() - operator_cpu
            phase.peak_rss_mib = max(rss_mib(pid) for pid in self.operator_pids)
        phase.control_plane_cpu = self.server_cpu() - server_cpu
        self.phases.append(phase)
        print_phase(phase, self.floor(resources))

    def start_server_profile(self, name: str) -> threading.Thread | None:
        """Take the API server's CPU profile over the phase's first seconds, in the background.

        Written to `server_profiles/<name>.pprof`; its top entries are printed
        (`go tool pprof`) once the phase is over. A phase shorter than the
        profile makes the profile cover what follows it too: the length is
        `SERVER_PROFILE_SECONDS`, shorter than a create of 1000.
        """
        if self.server_profiles is None:
            return None
        self.server_profiles.mkdir(parents=True, exist_ok=True)
        target = self.server_profiles / f"{name}.pprof"

        def take() -> None:
            path = f"/debug/pprof/profile?seconds={SERVER_PROFILE_SECONDS}"
            kubectl = (self.cluster.kubectl_binary, f"--kubeconfig={self.cluster.kubeconfig}")
            taken = subprocess.run(
                [*kubectl, "get", "--raw", path],
                capture_output=True,
                timeout=SERVER_PROFILE_SECONDS + 60,
            )
            if taken.returncode != 0:
                print(f"  (no profile of the API server: {taken.stderr.decode().strip()})")
                return
            target.write_bytes(taken.stdout)
            top = subprocess.run(
                ["go", "tool", "pprof", "-top", "-nodecount=18", str(target)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            lines = (top.stdout or top.stderr).splitlines()
            print(
                f"  the API server's CPU profile of its first {SERVER_PROFILE_SECONDS} s: {target}"
            )
            print("\n".join(f"    {line}" for line in lines if line.strip()))

        thread = threading.Thread(target=take, name=f"profile-{name}", daemon=True)
        thread.start()
        return thread

    def settled_counts(self, counts: Counter[Request]) -> tuple[Counter[Request], bool]:
        """The counts once a second passes without an operator's write; and whether it did."""
        deadline = time.monotonic() + SETTLE_LIMIT
        while time.monotonic() < deadline:
            time.sleep(1.0)
            again = request_counts(self.cluster)
            if not operator_writes(again - counts):
                return again, True
            counts = again
        return counts, False

    def floor(self, resources: int) -> Phase | None:
        return next(
            (p for p in self.phases if p.name == "floor" and p.resources == resources), None
        )

    # --- stacks ---------------------------------------------------------------

    def wait(
        self,
        phase: Phase,
        what: str,
        timeout: float,
        namespaces: list[str],
        done: Callable[[dict[str, dict[str, Any] | None]], bool],
    ) -> None:
        """Watch the Stacks `bench` of `namespaces` until `done` says so of their newest
        bodies (None: gone). The bench's own requests (one LIST, then a WATCH, made again
        each WATCH_SECONDS or when the API server ends it) are counted in `phase.reads`."""
        deadline = time.monotonic() + timeout * self.poll_slowdown
        selector = "metadata.name=bench"
        bodies: dict[str, dict[str, Any] | None] = {}
        version: str | None = None
        while True:
            if version is None:  # (first, or the watch's version expired: list again)
                phase.reads += 1
                listed = cast(
                    dict[str, Any],
                    self.stacks.list_cluster_custom_object(
                        GROUP, VERSION, "stacks", field_selector=selector
                    ),
                )
                bodies = dict.fromkeys(namespaces)
                for item in listed["items"]:
                    if item["metadata"]["namespace"] in bodies:
                        bodies[item["metadata"]["namespace"]] = item
                version = str(listed["metadata"]["resourceVersion"])
            if done(bodies):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"{what}: not reached in time; operator log:\n{self.log()}")
            phase.reads += 1
            watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in watch.stream(  # type: ignore[no-untyped-call]
                    self.stacks.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    "stacks",
                    field_selector=selector,
                    resource_version=version,
                    timeout_seconds=int(min(left, WATCH_SECONDS)) + 1,
                ):
                    body = event["object"]
                    version = str(body["metadata"]["resourceVersion"])
                    namespace = body["metadata"]["namespace"]
                    if namespace in bodies:
                        bodies[namespace] = None if event["type"] == "DELETED" else body
                    if done(bodies):
                        watch.stop()  # type: ignore[no-untyped-call]
                        return
            except kubernetes.client.ApiException as exc:
                if exc.status != 410:
                    raise
                version = None

    def converged(self, body: dict[str, Any] | None, phase: str) -> bool:
        """The Stack is in `phase` for its current generation (a failure ends the run)."""
        if body is None:
            return False
        status = body.get("status") or {}
        if status.get("observedGeneration") != body["metadata"].get("generation"):
            return False
        got = str(status.get("phase", ""))
        if got.endswith("_FAILED"):
            name = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
            raise SystemExit(f"stack {name} {got}: {status.get('statusReason')}")
        return got == phase

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))

    def traverse(
        self, name: str, namespace: str, template: dict[str, Any], edges: int, phase: str
    ) -> Phase:
        """Apply a Stack `bench` and wait until it reaches `phase` for that generation."""
        resources = len(template["resources"])
        budget = (2 if phase == "UPDATE_COMPLETE" else 3) * resources + edges
        with self.phase(name, resources, edges, budget) as measured:
            self.apply(hot.stack("bench", template, namespace))
            self.wait(
                measured,
                f"{namespace}/bench {phase}",
                120 + resources * 3,
                [namespace],
                lambda bodies: self.converged(bodies[namespace], phase),
            )
        return measured

    def delete(self, name: str, namespace: str, resources: int, edges: int) -> Phase:
        with self.phase(name, resources, edges, 3 * resources + edges) as measured:
            # Not `kubectl delete --wait`: one kubectl call may not outlast Cluster's limit.
            self.cluster.kubectl("delete", "-n", namespace, "stack", "bench", "--wait=false")
            self.wait(
                measured,
                f"{namespace}/bench deleted",
                120 + resources * 3,
                [namespace],
                lambda bodies: bodies[namespace] is None,
            )
        return measured

    def create_namespace(self, namespace: str) -> None:
        self.cluster.kubectl("create", "namespace", namespace)
        self.cluster.kubectl("label", "namespace", namespace, f"{BENCH_LABEL}=run")

    def drop_namespaces(self, selector: str) -> None:
        """Delete namespaces and wait until they are gone, so their clean-up writes
        (the namespace controller's) fall in no measured window."""
        self.cluster.kubectl("delete", "namespace", "-l", selector, "--wait=false")
        deadline = time.monotonic() + 600
        while self.core.list_namespace(label_selector=selector).items:
            if time.monotonic() > deadline:
                raise SystemExit(f"namespaces {selector} not gone in 600 s")
            time.sleep(1.0)

    def log(self) -> str:
        return "\n".join(f"{o.log}:\n{o.tail()}" for o in self.operators)

    # --- the runs ----------------------------------------------------------------

    def floor_apply(self, size: int) -> Phase:
        namespace = f"bench-floor-{size}"
        self.create_namespace(namespace)
        config_maps = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cm{i}", "namespace": namespace},
                    "data": {"value": f"cm{i}"},
                }
                for i in range(size)
            ],
        }
        with self.phase("floor", size, 0, None) as measured:
            self.apply(config_maps)
        return measured

    def design_floor(self, size: int) -> Phase:
        """The writes the design's budget allows for a create (3n + m), of the stack's own
        objects, sent from `DESIGN_FLOOR_THREADS` threads with no logic in between.

        Each resource: its StackResource created; one status write (what a
        completion writes: phase, conditions, attributes, the sync points' maps);
        its TestResource's ConfigMap applied as the operator applies it. Each
        edge: one push into its successor's sync point. Run before the operator
        starts (it would look for the Stack the records name), and the namespace
        is deleted after. What the operator cannot go below on this control
        plane with the budget's writes, as against the ConfigMap floor.
        """
        namespace = f"bench-design-{size}"
        self.create_namespace(namespace)
        template, edges = random_dag(size, seed=size)
        names = list(template["resources"])
        uses = {
            name: _used(spec["properties"]["value"]) for name, spec in template["resources"].items()
        }
        api = kubernetes.config.new_client_from_config(config_file=str(self.cluster.kubeconfig))  # type: ignore[no-untyped-call]
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = DESIGN_FLOOR_THREADS
        records = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/stackresources"
        config_maps = f"/api/v1/namespaces/{namespace}/configmaps"
        traversal = "0f4c2d3e-6a57-4c1b-9d3e-bench0000000"

        def make(name: str) -> None:
            labels = {"convergence.dev/stack": "absent", "convergence.dev/resource": name}
            spec = {"stack": "absent", "resource": name, "type": "OS::Heat::TestResource"}
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "StackResource",
                "metadata": {"name": f"absent-{name}", "labels": labels},
                "spec": {**spec, "createdAt": time.time(), "deletionPolicy": "Delete"},
            }
            request(api, "POST", records, body=body)

        def complete(name: str) -> None:
            value = f"{name}-value"
            condition = {
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
                "status": "True",
            }
            status = {
                "phase": "CREATE_COMPLETE",
                "reportedPhase": "CREATE_COMPLETE",
                "statusReason": "state changed",
                "converged": traversal,
                "version": 2,
                "resourceId": f"absent-{name}",
                "referenceId": f"absent-{name}",
                "attributes": {"output": value},
                "properties": {"value": value},
                "pluginData": {"value": value},
                "requires": [f"absent-{used}" for used in uses[name]],
                "conditions": [
                    {
                        **condition,
                        "type": "DependenciesReady",
                        "reason": "DependenciesReady",
                        "message": "All dependencies are ready",
                    },
                    {
                        **condition,
                        "type": "Ready",
                        "reason": "CreateComplete",
                        "message": "state changed",
                    },
                ],
                "syncPoints": {"update": {}, "cleanup": {}},
            }
            request(
                api,
                "PATCH",
                f"{records}/absent-{name}/status",
                body={"status": status},
                content_type=MERGE_PATCH,
            )

        def reality(name: str) -> None:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"absent-{name}",
                    "labels": {"convergence.dev/stack": "absent"},
                },
                "data": {"properties": json.dumps({"value": name}), "attributes": "{}"},
            }
            request(
                api,
                "PATCH",
                f"{config_maps}/absent-{name}",
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                body=body,
                content_type=APPLY_PATCH,
            )

        def push(edge: tuple[str, str]) -> None:
            sender, receiver = edge
            entry = {
                "traversal": traversal,
                "data": {
                    "name": sender,
                    "recordId": f"absent-{sender}",
                    "referenceId": f"absent-{sender}",
                    "attributes": {"output": f"{sender}-value"},
                },
            }
            patch = [
                {
                    "op": "add",
                    "path": f"/status/syncPoints/update/update:absent-{sender}",
                    "value": entry,
                }
            ]
            request(
                api,
                "PATCH",
                f"{records}/absent-{receiver}/status",
                body=patch,
                content_type=JSON_PATCH,
            )

        pushes = [(used, name) for name in names for used in uses[name]]
        client_cpu = own_cpu_seconds()
        with (
            self.phase("design floor", size, edges, None, operator=False) as measured,
            ThreadPoolExecutor(DESIGN_FLOOR_THREADS) as pool,
        ):
            list(pool.map(make, names))
            list(pool.map(complete, names))
            list(pool.map(reality, names))
            list(pool.map(push, pushes))
        print(f"  the client's (this process's) CPU {own_cpu_seconds() - client_cpu:.1f} s")
        self.drop_namespaces(f"{BENCH_LABEL}=run")
        return measured

    def size(self, size: int) -> None:
        print(f"\n== {size} resources")
        self.floor_apply(size)
        namespace = f"bench-{size}"
        self.create_namespace(namespace)
        template, edges = random_dag(size, seed=size)
        self.traverse("create", namespace, template, edges, "CREATE_COMPLETE")
        self.print_held_memory(size)
        template, _ = random_dag(size, seed=size, suffix="v2")
        self.traverse("update", namespace, template, edges, "UPDATE_COMPLETE")
        self.delete("delete", namespace, size, edges)
        self.drop_namespaces(f"{BENCH_LABEL}=run")

    def spread(self, stacks: int, size: int) -> None:
        """`stacks` stacks of `size` resources, each in its own namespace, converged at once."""
        print(f"\n== {stacks} stacks of {size} resources at once")
        namespaces = [f"bench-spread-{index}" for index in range(stacks)]
        for namespace in namespaces:
            self.create_namespace(namespace)
        resources = stacks * size
        for name, suffix, phase in (
            ("spread create", "", "CREATE_COMPLETE"),
            ("spread update", "v2", "UPDATE_COMPLETE"),
        ):
            dags = [random_dag(size, seed=index, suffix=suffix) for index in range(stacks)]
            edges = sum(e for _, e in dags)
            budget = (2 if phase == "UPDATE_COMPLETE" else 3) * resources + edges
            items = [hot.stack("bench", t, n) for (t, _), n in zip(dags, namespaces, strict=True)]
            with self.phase(name, resources, edges, budget) as measured:
                self.apply({"apiVersion": "v1", "kind": "List", "items": items})
                self.wait(
                    measured,
                    f"{stacks} stacks {phase}",
                    120 + resources * 3,
                    namespaces,
                    lambda bodies: all(self.converged(b, phase) for b in bodies.values()),  # noqa: B023
                )
            self.print_held_memory(resources)
        with self.phase("spread delete", resources, edges, 3 * resources + edges) as measured:
            for namespace in namespaces:
                self.cluster.kubectl("delete", "-n", namespace, "stack", "bench", "--wait=false")
            self.wait(
                measured,
                f"{stacks} stacks deleted",
                120 + resources * 3,
                namespaces,
                lambda bodies: all(b is None for b in bodies.values()),
            )
        self.drop_namespaces(f"{BENCH_LABEL}=run")

    def print_held_memory(self, records: int, seconds: float = 10.0) -> None:
        """The operator's resident memory now, `seconds` after a phase, with `records` held;
        under tracemalloc, what holds it."""
        time.sleep(seconds)
        now = [rss_mib(pid, "VmRSS") for pid in self.operator_pids]
        print(
            f"  operator RSS {seconds:.0f} s later, {records} StackResources in its cache: "
            + ", ".join(f"{mib:.0f} MiB" for mib in now)
        )
        if self.trace_memory is None:
            return
        request = held_request(self.trace_memory)
        request.touch()
        deadline = time.monotonic() + 300
        while request.exists() and time.monotonic() < deadline:
            time.sleep(1.0)
        if not request.exists():
            print_snapshot(held_snapshot(self.trace_memory), title="what it holds then")

    def chain(self, length: int) -> None:
        print(f"\n== a chain of {length}")
        namespace = "bench-chain"
        self.create_namespace(namespace)
        created = self.traverse("chain", namespace, chain(length), length - 1, "CREATE_COMPLETE")
        print(f"  per hop {created.seconds / length * 1000:.0f} ms")
        self.delete("chain delete", namespace, length, length - 1)
        self.drop_namespaces(f"{BENCH_LABEL}=run")

    def warm_up(self, stacks: int, size: int = 10) -> None:
        """Converge and delete `stacks` small stacks in their own namespaces, then drop those."""
        print(f"\n== warm-up: {stacks} stacks of {size} resources, created and deleted")
        selector = f"{BENCH_LABEL}=warm"
        start = time.monotonic()
        items: list[dict[str, Any]] = []
        for index in range(stacks):
            namespace = f"bench-warm-{index}"
            labels = {BENCH_LABEL: "warm"}
            items.append(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "labels": labels},
                }
            )
            manifest = hot.stack("warm", random_dag(size, seed=index)[0], namespace)
            manifest["metadata"]["labels"] = labels
            items.append(manifest)
        self.apply({"apiVersion": "v1", "kind": "List", "items": items})
        deadline = time.monotonic() + 120 + stacks * size * 3 * self.poll_slowdown

        def listed() -> list[dict[str, Any]]:
            found = self.stacks.list_cluster_custom_object(
                GROUP, VERSION, "stacks", label_selector=selector
            )
            return cast(list[dict[str, Any]], cast(dict[str, Any], found)["items"])

        while not all(self.converged(s, "CREATE_COMPLETE") for s in listed()):
            if time.monotonic() > deadline:
                raise SystemExit(f"warm-up stacks not created in time; log:\n{self.log()}")
            time.sleep(1.0)
        self.cluster.kubectl("delete", "stacks", "-A", "-l", selector, "--wait=false")
        while listed():
            if time.monotonic() > deadline:
                raise SystemExit(f"warm-up stacks not deleted in time; log:\n{self.log()}")
            time.sleep(1.0)
        self.drop_namespaces(selector)
        pid = self.operator_pid
        print(
            f"  {time.monotonic() - start:.1f} s; operator CPU {cpu_seconds(pid):.1f} s so far, "
            f"peak RSS {rss_mib(pid):.0f} MiB"
        )

    def idle(self, seconds: float = 5.0) -> None:
        """What the control plane writes by itself (the operator has nothing to do)."""
        before = request_counts(self.cluster)
        time.sleep(seconds)
        writes = Counter(
            {r: n for r, n in (request_counts(self.cluster) - before).items() if is_write(r)}
        )
        shown = ", ".join(f"{r.resource} {r.verb} {n}" for r, n in writes.most_common()) or "none"
        print(f"idle {seconds:.0f} s, writes: {shown}")


# --- printing -----------------------------------------------------------------


def print_phase(phase: Phase, floor: Phase | None) -> None:
    ratio = f" (x{phase.seconds / floor.seconds:.1f} the floor)" if floor and phase.budget else ""
    share = phase.reads / max(phase.served, 1) * 100
    print(
        f"{phase.name}: {phase.seconds:.2f} s{ratio}; n={phase.resources} m={phase.edges}; "
        f"the bench's {phase.reads} reads = {share:.1f}% of the {phase.served} requests served"
    )
    total = phase.total_writes
    budget = ""
    if phase.budget is not None:
        budget = f" (budget {phase.budget} {mark(total <= phase.budget)})"
    per_edge = total / max(phase.resources + phase.edges, 1)
    print(
        f"  writes {total}{budget}: {phase.per_resource(total):.2f} per resource, "
        f"{per_edge:.2f} per (resource + edge)"
    )
    for (resource, verb), count in sorted(phase.writes.items(), key=lambda item: -item[1]):
        print(f"    {resource or '(none)':<28} {verb:<8} {count:>7}")
    failed = Counter(
        {
            f"{r.code} {r.verb} {r.resource}": n
            for r, n in phase.counts.items()
            if is_write(r) and not r.code.startswith("2")
        }
    )
    if failed:
        print("  of which refused: " + ", ".join(f"{k} x{n}" for k, n in failed.most_common()))
    trailing = operator_writes(phase.trailing)
    if not phase.settled:
        top = Counter(
            {
                f"{r.resource} {r.verb}": n
                for r, n in phase.trailing.items()
                if is_write(r) and r.resource not in BACKGROUND
            }
        )
        print(
            f"  ✗ still writing {SETTLE_LIMIT:.0f} s after the end, not counted above: "
            f"{trailing} writes ({', '.join(f'{k} x{n}' for k, n in top.most_common(4))})"
        )
    elif trailing:
        print(f"  of which {trailing} after the end (Events included)")
    if phase.budget is not None:
        per_resource = phase.per_resource(phase.events)
        print(
            f"  Events created {phase.events}: {per_resource:.2f} per resource "
            f"{mark(per_resource <= 2)} (≤ 2)"
        )
    if phase.server_requests:
        print("  the API server's requests by time spent (resource, verb: count, mean latency):")
        slowest = sorted(phase.server_seconds.items(), key=lambda item: -item[1])[:8]
        for (resource, verb), spent in slowest:
            count = phase.server_requests[(resource, verb)]
            print(
                f"    {resource or '(none)':<28} {verb:<8} {count:>7} "
                f"{spent / max(count, 1) * 1000:>7.1f} ms  ({spent:.1f} s)"
            )
    background = sum(n for r, n in phase.counts.items() if is_write(r) and r.resource in BACKGROUND)
    print(
        f"  operator CPU {phase.operator_cpu:.1f} s, peak RSS {phase.peak_rss_mib:.0f} MiB; "
        f"API server + etcd CPU {phase.control_plane_cpu:.1f} s; "
        f"control plane's own writes {background}"
    )


def print_summary(bench: Bench, sizes: list[int]) -> None:
    print("\n== summary")
    print(
        f"{'N':>5} {'m':>5} {'floor s':>8} {'create s':>14} {'update s':>14} {'delete s':>14} "
        f"{'writes/res c/u/d':>17} {'budget c/u/d':>13} {'events/res c/u/d':>17} "
        f"{'CPU s':>6} {'RSS MiB':>7}"
    )
    times: dict[int, dict[str, float]] = {}
    for size in sizes:
        floor = bench.floor(size)
        phases = {p.name: p for p in bench.phases if p.resources == size and p.budget is not None}
        traversals = [phases[name] for name in ("create", "update", "delete") if name in phases]
        if floor is None or len(traversals) < 3:
            continue
        times[size] = {p.name: p.seconds for p in traversals}
        print(
            f"{size:>5} {traversals[0].edges:>5} {floor.seconds:>8.2f} "
            + " ".join(
                f"{f'{p.seconds:.1f} (x{p.seconds / floor.seconds:.1f})':>14}" for p in traversals
            )
            + f" {'/'.join(f'{p.per_resource(p.total_writes):.1f}' for p in traversals):>17}"
            + f" {' '.join(mark(p.total_writes <= (p.budget or 0)) for p in traversals):>13}"
            + f" {'/'.join(f'{p.per_resource(p.events):.1f}' for p in traversals):>17}"
            + f" {sum(p.operator_cpu for p in traversals):>6.1f}"
            + f" {max(p.peak_rss_mib for p in traversals):>7.0f}"
        )
    for design in (p for p in bench.phases if p.name == "design floor"):
        floor = bench.floor(design.resources)
        ratio = f", x{design.seconds / floor.seconds:.1f} the floor" if floor else ""
        print(
            f"the design's {design.total_writes} writes alone for {design.resources}: "
            f"{design.seconds:.1f} s{ratio} (API server + etcd CPU "
            f"{design.control_plane_cpu:.1f} s)"
        )
    spread = [p for p in bench.phases if p.name.startswith("spread ")]
    if spread:
        print(
            f"{len(bench.operators)} replica(s), stacks at once ({spread[0].resources} resources): "
            + ", ".join(
                f"{p.name.removeprefix('spread ')} {p.seconds:.1f} s "
                f"({p.per_resource(p.total_writes):.1f} writes/res)"
                for p in spread
            )
            + f"; CPU {sum(p.operator_cpu for p in spread):.1f} s"
        )
    hops = [p for p in bench.phases if p.name == "chain"]
    if hops:
        per_hop = hops[0].seconds / hops[0].resources * 1000
        print(f"chain of {hops[0].resources}: {per_hop:.0f} ms per hop")
    measured = sorted(times)
    for small, large in itertools.pairwise(measured):
        ratios = ", ".join(
            f"{name} x{times[large][name] / times[small][name]:.1f}" for name in times[small]
        )
        print(f"t({large})/t({small}) for x{large / small:.1f} the size: {ratios}")


def print_profile(stats_file: Path) -> None:
    if not stats_file.exists():
        print(f"\nno profile at {stats_file} (the operator did not exit in time?)")
        return
    for order in ("cumulative", "tottime"):
        print(f"\n== operator profile, top 25 by {order} ({stats_file})")
        pstats.Stats(str(stats_file), stream=sys.stdout).sort_stats(order).print_stats(25)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so the control plane is stopped


# Allocations whose innermost frames are these are charged to the first frame outside them.
PLUMBING = ("/json/", "<frozen", "tracemalloc.py", "threading.py", "copy.py")


def held_request(snapshot_file: Path) -> Path:
    """The file whose making asks the traced operator for a snapshot of what it holds."""
    return snapshot_file.with_name(snapshot_file.name + ".take-held")


def held_snapshot(snapshot_file: Path) -> Path:
    """Where the traced operator writes that snapshot."""
    return snapshot_file.with_name(snapshot_file.name + ".held")


def print_snapshot(
    snapshot_file: Path, top: int = 25, title: str = "operator memory near its highest"
) -> None:
    """The snapshot's top allocations by the first line of the project's own code."""
    if not snapshot_file.exists():
        print(f"\nno memory snapshot at {snapshot_file}")
        return
    snapshot = tracemalloc.Snapshot.load(str(snapshot_file))
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    print(f"\n== {title}: {total / 2**20:.0f} MiB traced")
    by_site: dict[str, list[int]] = {}
    for stat in snapshot.statistics("traceback"):
        frames = list(reversed(stat.traceback))  # innermost first
        ours = [f for f in frames if "/convergence/" in f.filename or "/operator/" in f.filename]
        outside = [f for f in frames if not any(p in f.filename for p in PLUMBING)]
        frame = (ours or outside or frames)[0]
        site = f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
        sizes = by_site.setdefault(site, [0, 0])
        sizes[0] += stat.size
        sizes[1] += stat.count
    for site, (size, count) in sorted(by_site.items(), key=lambda item: -item[1][0])[:top]:
        print(f"  {size / 2**20:8.1f} MiB {count:>9} blocks  {site}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 1000])
    parser.add_argument("--chain", type=int, default=100, help="chain length (0: none)")
    parser.add_argument(
        "--warm", type=int, default=0, help="small stacks to converge and delete first"
    )
    parser.add_argument("--replicas", type=int, default=1, help="operator replicas sharing work")
    parser.add_argument("--spread", type=int, default=0, help="stacks converged at once (0: none)")
    parser.add_argument("--spread-size", type=int, default=100, help="resources of each")
    parser.add_argument("--profile", type=Path, help="run the operator under cProfile to here")
    parser.add_argument(
        "--trace-memory", type=Path, help="run the operator under tracemalloc, snapshot to here"
    )
    parser.add_argument(
        "--design-floor",
        action="store_true",
        help="first send the budget's writes of each size's create alone (no operator)",
    )
    parser.add_argument(
        "--server-profile",
        type=Path,
        help="take the API server's CPU profile of each phase into this folder",
    )
    parser.add_argument(
        "--profile-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time each thread spent (waits included) or its CPU time",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_term)
    print(f"load average at start: {load()} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        plane = ControlPlane(Path(tmp) / "cp", profiling=args.server_profile is not None)
        kubeconfig = plane.up()
        try:
            cluster = Cluster(kubeconfig, str(plane.bin_dir / "kubectl"))
            cluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
            cluster.kubectl("wait", "--for=condition=Established", "-f", str(REPO_ROOT / "crds"))
            entry: tuple[str, ...] = CLI
            if args.profile:
                args.profile.unlink(missing_ok=True)
                profiler = Path(__file__).with_name("profiled_operator.py")
                entry = (str(profiler), str(args.profile), args.profile_clock)
            elif args.trace_memory:
                args.trace_memory.unlink(missing_ok=True)
                tracer = Path(__file__).with_name("traced_operator.py")
                held = (held_request(args.trace_memory), held_snapshot(args.trace_memory))
                entry = (str(tracer), str(args.trace_memory), *(str(path) for path in held))
            # Kept after the run (the control plane's state is not), to read what a figure hides.
            log = REPO_ROOT / ".state" / "bench" / "operator.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.unlink(missing_ok=True)
            print(f"operator log: {log}")
            operators = [
                OperatorProcess(
                    kubeconfig,
                    log if args.replicas == 1 else log.with_name(f"operator-{index}.log"),
                    "--all-namespaces",
                    "--metrics-port=0",  # (no port to collide with another operator here)
                    *(("--identity", f"bench-{index}") if args.replicas > 1 else ()),
                    entry=entry,
                )
                for index in range(args.replicas)
            ]
            print(f"operator replicas: {args.replicas}")
            slowed = args.profile or args.trace_memory
            bench = Bench(
                cluster,
                plane,
                operators,
                poll_slowdown=3.0 if slowed else 1.0,
                server_profiles=args.server_profile,
                trace_memory=args.trace_memory,
            )
            if args.design_floor:
                print("\n== the design's writes alone, before the operator starts")
                for size in args.sizes:
                    bench.design_floor(size)
            with contextlib.ExitStack() as running:
                for operator in operators:
                    running.enter_context(operator)
                bench.idle()
                if args.warm:
                    bench.warm_up(args.warm)
                if args.chain:
                    bench.chain(args.chain)
                for size in args.sizes:
                    bench.size(size)
                if args.spread:
                    bench.spread(args.spread, args.spread_size)
            print_summary(bench, args.sizes)
            print(f"load average at end: {load()}")
        finally:
            plane.down()
    if args.profile:
        print_profile(args.profile)
    if args.trace_memory:
        print_snapshot(args.trace_memory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
