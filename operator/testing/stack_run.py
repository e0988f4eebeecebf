"""One seeded run of a stack under faults, and the checks every fault test makes afterwards.

The kill test (tests/integration/test_kill.py) and the fault tests
(tests/integration/test_faults.py) drive one stack in a namespace of its own
with the operator as a subprocess, break something at random (seeded)
moments, and then require, once the operator went quiet:

- the stack in the expected phase;
- reality exact: one physical copy per resource, holding the template's
  resolved properties, and nothing else of the stack (`reality_errors`);
- no duplicate: one StackResource per resource, none in progress, none
  hanging in deletion (a stuck finalizer);
- after a delete: no Stack (its finalizer released), no StackResource, and
  nothing the operator made left behind (ConfigMaps, Secrets).

A failure message names the seed, every fault and when it struck, the
StackResources, the operator's log tail, and the one command that runs the
same seed again (`replay`).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping, Sequence, Set
from pathlib import Path
from typing import Any, cast

from kubernetes.client import CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.plugin import MANAGED_BY, MANAGED_BY_LABEL, TypeRegistry
from convergence.operator.engine.sim.scenario import Observation, ScenarioError, reality_errors
from convergence.operator.kube.names import GROUP, STACK_RESOURCES, STACKS, VERSION
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.kube_driver import KubernetesDriver
from convergence.operator.testing.operator_process import OperatorProcess

TEST_RESOURCE = "OS::Heat::TestResource"
# Seconds the garbage collector gets to delete what a deleted Stack owned.
GC_GRACE = 15.0

Template = dict[str, Any]


def seeds_from_env(seeds_var: str, runs_var: str, default_runs: int) -> list[int]:
    """The seeds a seeded test runs: those `seeds_var` lists ("3,7"), else the first
    `runs_var` (default `default_runs`)."""
    chosen = [int(s) for s in os.environ.get(seeds_var, "").split(",") if s.strip()]
    return chosen or list(range(int(os.environ.get(runs_var, str(default_runs)))))


def random_resources(
    rng: random.Random, names: Sequence[str], slow: Mapping[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    """A random DAG of TestResources named `names`, in that order.

    Each resource depends on up to three earlier ones, by depends_on or by data
    (get_resource / get_attr), so data flows along the edges and a replacement
    forces its dependents to update. Those in `slow` wait that many seconds per action.
    """
    resources: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        earlier = rng.sample(list(names[:index]), min(index, rng.randint(0, 3)))
        properties: dict[str, Any] = {"update_replace_value": "v1"}
        resource: dict[str, Any] = {"type": TEST_RESOURCE, "properties": properties}
        if earlier:
            source = earlier[0]
            properties["value"] = rng.choice(
                [{"get_resource": source}, {"get_attr": [source, "output"]}]
            )
            if earlier[1:]:
                resource["depends_on"] = sorted(earlier[1:])
        else:
            properties["value"] = f"{name}-value"
        if slow and name in slow:
            properties["wait_secs"] = slow[name]
        resources[name] = resource
    return resources


def copy_resources(resources: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A copy of a template's resources whose properties may be changed."""
    return {
        name: {**resource, "properties": dict(resource["properties"])}
        for name, resource in resources.items()
    }


def edit_values(
    rng: random.Random, resources: dict[str, dict[str, Any]], count: int, suffix: str
) -> None:
    """Edit the value of `count` resources in place (those whose value is no get_* of another)."""
    for name in rng.sample(sorted(resources), count):
        value = resources[name]["properties"]["value"]
        if isinstance(value, str):
            resources[name]["properties"]["value"] = f"{value}-{suffix}"


def replace_some(
    rng: random.Random, resources: dict[str, dict[str, Any]], count: int, value: str
) -> set[str]:
    """Change update_replace_value of `count` resources, which replaces them; their names."""
    names = set(rng.sample(sorted(resources), count))
    for name in names:
        resources[name]["properties"]["update_replace_value"] = value
    return names


def kept_errors(
    before: Mapping[str, str], after: Mapping[str, str], may_change: Set[str]
) -> list[str]:
    """Resources updated in place (not in `may_change`) whose physical copy changed."""
    return [
        f"{name}: updated in place, yet its physical copy {before[name]} became {after[name]}"
        for name in sorted(before)
        if name not in may_change and after.get(name) != before[name]
    ]


def random_template(rng: random.Random, count: int, slow: int, wait_secs: float = 1) -> Template:
    """A template of `count` random TestResources r00.., `slow` of them waiting `wait_secs`."""
    names = [f"r{i:02d}" for i in range(count)]
    waits = dict.fromkeys(rng.sample(names, slow), wait_secs)
    return hot.template(random_resources(rng, names, waits))


class StackRun:
    """One seeded run: the stack `stack` in `namespace`, its operator, driver and checks."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        log: Path,
        seed: int,
        *,
        stack: str,
        replay: str,
        timeout: float,
        operator_args: Sequence[str] = (),
        clusterwide: bool = False,
        replicas: int = 1,
        lease_seconds: float | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.namespace = namespace
        self.stack = stack
        # The command that runs this seed again, for failure messages.
        self.replay = replay
        self.log = log
        # The operator serves the run's namespace, or every one (`clusterwide`).
        scope = ("--all-namespaces",) if clusterwide else ("--namespace", namespace)
        self._operator_args = (*scope, "--metrics-port", "0", *operator_args)
        self._kubeconfig = cluster.kubeconfig
        self._env = {}
        if lease_seconds is not None:
            self._env["CONVERGENCE_LEASE_SECONDS"] = str(lease_seconds)
        # One operator (its identity the host's, the same after a restart), or `replicas`
        # operators sharing the work, each with an identity and a log of its own.
        self.operators = (
            [OperatorProcess(cluster.kubeconfig, log, *self._operator_args, env=self._env)]
            if replicas == 1
            else [self.replica(f"replica-{index}") for index in range(replicas)]
        )
        self.operator = self.operators[0]
        self.driver = KubernetesDriver(cluster, namespace, timeout=timeout)
        self._objects = CustomObjectsApi(self.driver.api)
        self._core = CoreV1Api(self.driver.api)
        self.types = TypeRegistry.from_entry_points()
        # Each fault and when it struck (time since its operation started, the stack then).
        self.faults: list[str] = []
        self.timings: list[str] = []

    def replica(self, identity: str) -> OperatorProcess:
        """An operator replica (not started) under `identity`, logging to its own file."""
        log = self.log.with_name(f"{self.log.stem}-{identity}.log")
        return OperatorProcess(
            self._kubeconfig, log, *self._operator_args, "--identity", identity, env=self._env
        )

    def close(self) -> None:
        """SIGKILL the operators (nothing is left to tidy up) and release the client."""
        for operator in self.operators:
            operator.kill()
        self.driver.close()

    # -- observation -------------------------------------------------------------------------------

    def progress(self) -> str:
        """The stack's phase and how many resources are in progress (for the fault log)."""
        body = self.stack_body()
        if body is None:
            return "stack gone"
        phase = (body.get("status") or {}).get("phase")
        running = sum(
            1
            for item in self.stack_resources()
            if "IN_PROGRESS" in str((item.get("status") or {}).get("phase") or "")
        )
        return f"{phase}, {running} resources in progress"

    def stack_body(self) -> Mapping[str, Any] | None:
        try:
            body = self._objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, STACKS, self.stack
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(Mapping[str, Any], body)

    def stack_resources(self) -> list[Mapping[str, Any]]:
        """Every StackResource of the namespace (the run's namespace holds only this stack)."""
        listed = self._objects.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, STACK_RESOURCES
        )
        return list(cast(Mapping[str, Any], listed).get("items", []))

    def managed(self, kind: str) -> list[str]:
        """Names of the ConfigMaps or Secrets the operator made in the namespace."""
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        listed: Any = (
            self._core.list_namespaced_config_map(self.namespace, label_selector=selector)
            if kind == "ConfigMap"
            else self._core.list_namespaced_secret(self.namespace, label_selector=selector)
        )
        return sorted(f"{kind}/{item.metadata.name}" for item in listed.items if item.metadata)

    def physical_names(self, observation: Observation) -> dict[str, str]:
        """Logical resource -> the name of its one physical copy."""
        return {record.logical_name: record.name for record in observation.reality}

    # -- checks ------------------------------------------------------------------------------------

    def records_errors(self, template: Template) -> list[str]:
        """One StackResource per resource of `template`, none in progress or being deleted."""
        errors = []
        per_name: dict[str, list[str]] = {}
        for item in self.stack_resources():
            name = str(item["spec"]["resource"])
            phase = str((item.get("status") or {}).get("phase") or "INIT_COMPLETE")
            per_name.setdefault(name, []).append(phase)
            if "IN_PROGRESS" in phase:
                errors.append(f"StackResource {item['metadata']['name']} ({name}) stuck in {phase}")
            if item["metadata"].get("deletionTimestamp"):
                errors.append(
                    f"StackResource {item['metadata']['name']} ({name}, {phase}) is hanging "
                    f"in deletion (finalizers {item['metadata'].get('finalizers')})"
                )
        for name in sorted(set(per_name) | set(template["resources"])):
            phases = per_name.get(name, [])
            if name not in template["resources"]:
                errors.append(f"StackResource of {name} left over: {phases}")
            elif len(phases) != 1:
                errors.append(f"{name}: expected 1 StackResource, found {len(phases)}: {phases}")
        return errors

    def converged(self, template: Template, phase: str) -> tuple[Observation, list[str]]:
        """The stack once the operator went quiet, and what is wrong with it."""
        try:
            self.driver.run_until_quiet()
        except ScenarioError as exc:
            return self.driver.observe(self.stack), [str(exc)]
        observation = self.driver.observe(self.stack)
        errors = []
        if observation.phase != phase:
            errors.append(f"stack is {observation.phase} ({observation.reason}), expected {phase}")
        errors += self.records_errors(template)
        errors += reality_errors(observation, template, {}, self.stack, self.types)
        return observation, errors

    def deleted_errors(self) -> list[str]:
        """What is left of the stack once the operator went quiet after its delete."""
        try:
            self.driver.run_until_quiet()
        except ScenarioError as exc:
            return [str(exc)]
        errors = []
        body = self.stack_body()
        if body is not None:
            status = body.get("status") or {}
            errors.append(
                f"the Stack is still there ({status.get('phase')}, "
                f"finalizers {body['metadata'].get('finalizers')})"
            )
        errors += [
            f"StackResource {item['metadata']['name']} ({item['spec']['resource']}) left"
            for item in self.stack_resources()
        ]
        # Template revisions' Secrets are the garbage collector's (owned by the
        # Stack): give it a few seconds.
        deadline = time.monotonic() + GC_GRACE
        while (leaked := self.managed("ConfigMap") + self.managed("Secret")) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.5)
        if leaked:
            errors.append(f"leaked: {', '.join(leaked)}")
        return errors

    def report(self, stage: str, errors: list[str]) -> str:
        """A failure message with all it takes to understand and reproduce it."""
        body = self.stack_body()
        status = (body or {}).get("status") or {}
        records = []
        try:
            items = self.stack_resources()
        except ApiException as exc:  # the namespace may be gone
            items, errors = [], [*errors, f"(StackResources unreadable: {exc.status})"]
        for item in items:
            item_status = item.get("status") or {}
            metadata = item["metadata"]
            records.append(
                f"    {item['spec']['resource']} {metadata['name'][-8:]} "
                f"{item_status.get('phase')} replaces={str(item['spec'].get('replaces'))[-8:]} "
                f"replacedBy={str(item_status.get('replacedBy'))[-8:]}"
                + (" DELETING" if metadata.get("deletionTimestamp") else "")
            )
        return (
            f"seed {self.seed} after {stage}; reproduce with: {self.replay}\n"
            f"faults: {self.faults}\ntimings: {self.timings}\n  "
            + "\n  ".join(errors)
            + f"\nstack: {status.get('phase')} traversal {status.get('traversal')} "
            f"reason {status.get('statusReason')!r}\nStackResources:\n"
            + "\n".join(sorted(records))
            + "".join(
                f"\noperator log {operator.log}, tail:\n{operator.tail(60 // len(self.operators))}"
                for operator in self.operators
            )
        )
