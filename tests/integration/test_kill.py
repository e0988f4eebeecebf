"""Restart safety: kill -9 of the operator at random moments never leaves reality wrong.

Each run is seeded. A random DAG of 30 TestResources (a few taking a second
per action, so kills land in the middle of actions) goes through four
operations, and during each the operator is killed with SIGKILL at random
moments and started again:

1. create;
2. an update that replaces some resources and edits others in place;
3. a rollback, in one of two ways (alternating by seed):
   - `failure`: an update with `disableRollback: false` that replaces and
     edits more resources and makes one fail (`fail: true`, after a wait), so
     the stack rolls back by itself;
   - `annotation`: an update that replaces and edits more resources, one of
     them slow, and the `convergence.dev/rollback` annotation while it runs;
   either way the stack must end ROLLBACK_COMPLETE with reality equal to the
   template of step 2;
4. delete.

After each of 1-3 the stack must end in the expected `*_COMPLETE` phase with:
exactly one StackResource per resource (none IN_PROGRESS, none being deleted),
exactly one physical ConfigMap per resource holding the template's resolved
properties and nothing else of the stack; a resource updated in place keeps
its physical copy (only a replacement, or the rollback of a resource that was
replaced or failed, may make a new one). After the delete nothing of the stack
is left: no Stack (its finalizer was released), no StackResource, ConfigMap or
Secret.

A failure names the seed, the mode and each kill moment (time since the
operation started, and the stack's phase then), with the StackResources and
the operator's log; `KILL_SEEDS=7,12` runs just those seeds again. Timing
cannot be replayed exactly, so the same seed may need a few runs to fail
again. `KILL_RUNS` (default 20) sets the number of seeds; a run takes about
a minute on two cores.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes.client import CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.plugin import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TypeRegistry,
)
from convergence.operator.engine.sim.scenario import (
    Observation,
    Operation,
    ScenarioError,
    reality_errors,
)
from convergence.operator.kube.names import (
    GROUP,
    STACK_RESOURCES,
    STACKS,
    VERSION,
)
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.kube_driver import KubernetesDriver
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

KILL_RUNS = int(os.environ.get("KILL_RUNS", "20"))
SEEDS = [int(s) for s in os.environ.get("KILL_SEEDS", "").split(",") if s.strip()] or list(
    range(KILL_RUNS)
)
RESOURCES = 30
SLOW_RESOURCES = 4
REPLACED_RESOURCES = 5
EDITED_RESOURCES = 5
KILLS_PER_OPERATION = 2
# Seconds the failing resource of the `failure` rollback waits before it fails.
FAIL_AFTER_SECS = 2
# Seconds the slow update of the `annotation` rollback takes: the rollback
# annotation comes while it runs.
SLOW_UPDATE_SECS = 5
# Random moments are drawn from [0, window) after the operation started; the
# windows are about how long each operation takes without kills.
CREATE_WINDOW = 8.0
UPDATE_WINDOW = 8.0
ROLLBACK_WINDOW = 10.0
DELETE_WINDOW = 6.0
# Seconds the garbage collector gets to delete what the deleted Stack owned.
GC_GRACE = 15.0
# Seconds the operator stays dead at most before it is started again.
DOWNTIME = 0.5
STACK = "kill"
TYPE = "OS::Heat::TestResource"
ROLLBACK_MODES = ("failure", "annotation")
# Long enough for 30 resources along the longest dependency chain, with restarts.
CONVERGE_TIMEOUT = 120.0

Template = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """The templates of one run and what each operation may replace."""

    base: Template
    updated: Template
    # The update of step 3 (it fails, or is rolled back by annotation).
    rolled_back: Template
    mode: str
    # Resources the update of step 2 replaces.
    replaced: frozenset[str]
    # Resources that may come back from the rollback as another physical copy:
    # those the update of step 3 replaces, and the one that fails (Heat
    # replaces a failed resource on its next update).
    may_change_in_rollback: frozenset[str]
    # The resource that fails (`failure`) or is slow (`annotation`) in step 3.
    culprit: str


def _copy(resources: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: {**resource, "properties": dict(resource["properties"])}
        for name, resource in resources.items()
    }


def _edit(rng: random.Random, resources: dict[str, dict[str, Any]], suffix: str) -> None:
    """Edit the value of some resources in place (those whose value is no get_* of another)."""
    for name in rng.sample(sorted(resources), EDITED_RESOURCES):
        value = resources[name]["properties"]["value"]
        if isinstance(value, str):
            resources[name]["properties"]["value"] = f"{value}-{suffix}"


def _replace(rng: random.Random, resources: dict[str, dict[str, Any]], value: str) -> set[str]:
    """Change update_replace_value of some resources, which replaces them."""
    names = set(rng.sample(sorted(resources), REPLACED_RESOURCES))
    for name in names:
        resources[name]["properties"]["update_replace_value"] = value
    return names


def random_plan(rng: random.Random, mode: str) -> Plan:
    """A random DAG of TestResources, an update of it, and an update to be rolled back.

    Each resource depends on up to three earlier ones, by depends_on or by data
    (get_resource / get_attr), so data flows along the edges and a replacement
    forces its dependents to update.
    """
    names = [f"r{i:02d}" for i in range(RESOURCES)]
    slow = set(rng.sample(names, SLOW_RESOURCES))
    resources: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        earlier = rng.sample(names[:index], min(index, rng.randint(0, 3)))
        properties: dict[str, Any] = {"update_replace_value": "v1"}
        resource: dict[str, Any] = {"type": TYPE, "properties": properties}
        if earlier:
            source = earlier[0]
            properties["value"] = rng.choice(
                [{"get_resource": source}, {"get_attr": [source, "output"]}]
            )
            if earlier[1:]:
                resource["depends_on"] = sorted(earlier[1:])
        else:
            properties["value"] = f"{name}-value"
        if name in slow:
            properties["wait_secs"] = 1
        resources[name] = resource

    updated = _copy(resources)
    replaced = _replace(rng, updated, "v2")
    _edit(rng, updated, "edited")

    bad = _copy(updated)
    replaced_again = _replace(rng, bad, "v3")
    _edit(rng, bad, "edited-again")
    # The culprit is updated in place, never replaced: its slow update is what
    # keeps the update in progress until the rollback is asked for (a replaced
    # one is created, and the whole update may be in service before that).
    culprit = rng.choice([name for name in names if name not in replaced_again])
    culprit_properties = bad[culprit]["properties"]
    # A changed value makes the update of the culprit wait (and fail).
    culprit_properties["value"] = f"{culprit}-{mode}"
    if mode == "failure":
        culprit_properties["fail"] = True
        culprit_properties["wait_secs"] = FAIL_AFTER_SECS
    else:
        culprit_properties["action_wait_secs"] = {"update": SLOW_UPDATE_SECS}
    return Plan(
        base=hot.template(resources),
        updated=hot.template(updated),
        rolled_back=hot.template(bad),
        mode=mode,
        replaced=frozenset(replaced),
        may_change_in_rollback=frozenset(replaced_again | {culprit}),
        culprit=culprit,
    )


class KillRun:
    """One seeded run: the operator, the driver, and the kills."""

    def __init__(self, cluster: Cluster, namespace: str, log: Path, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.mode = ROLLBACK_MODES[seed % len(ROLLBACK_MODES)]
        self.namespace = namespace
        self.log = log
        self.operator = OperatorProcess(
            cluster.kubeconfig, log, "--namespace", namespace, "--metrics-port", "0"
        )
        self.driver = KubernetesDriver(cluster, namespace, timeout=CONVERGE_TIMEOUT)
        self._objects = CustomObjectsApi(self.driver.api)
        self._core = CoreV1Api(self.driver.api)
        self.types = TypeRegistry.from_entry_points()
        self.kills: list[str] = []
        self.timings: list[str] = []

    # -- kills -------------------------------------------------------------------------------------

    def kill_moments(self, window: float) -> list[float]:
        return sorted(self.rng.uniform(0.0, window) for _ in range(KILLS_PER_OPERATION))

    def kill_at(self, stage: str, started: float, moments: list[float]) -> None:
        """kill -9 the operator at each moment after `started`, starting it again soon after."""
        for moment in moments:
            time.sleep(max(0.0, started + moment - time.monotonic()))
            self.operator.kill()
            elapsed = time.monotonic() - started
            self.kills.append(f"{stage} +{elapsed:.1f}s ({self._progress()})")
            time.sleep(self.rng.uniform(0.0, DOWNTIME))
            self.operator.start()

    def apply_with_kills(self, stage: str, operation: Operation, window: float) -> None:
        """Apply `operation`, then kill -9 and restart the operator at random moments in it."""
        moments = self.kill_moments(window)
        started = time.monotonic()
        self.driver.apply(STACK, operation)
        self.kill_at(stage, started, moments)

    def rollback_by_annotation(self, stage: str, update: Operation) -> None:
        """Start `update`, annotate a rollback while it runs, and kill during the rollback."""
        annotate_after = self.rng.uniform(0.5, 2.0)
        moments = self.kill_moments(ROLLBACK_WINDOW)
        started = time.monotonic()
        self.driver.apply(STACK, update)
        time.sleep(max(0.0, started + annotate_after - time.monotonic()))
        progress = self._progress()
        self.driver.apply(STACK, Operation("rollback"))
        self.kills.append(f"(rollback annotated at +{annotate_after:.1f}s: {progress})")
        self.kill_at(stage, time.monotonic(), moments)

    def _progress(self) -> str:
        """The stack's phase and how many resources are in progress (for the kill log)."""
        body = self._stack_body()
        if body is None:
            return "stack gone"
        phase = (body.get("status") or {}).get("phase")
        running = sum(
            1
            for item in self._stack_resources()
            if "IN_PROGRESS" in str((item.get("status") or {}).get("phase") or "")
        )
        return f"{phase}, {running} resources in progress"

    # -- observation -------------------------------------------------------------------------------

    def _stack_body(self) -> Mapping[str, Any] | None:
        try:
            body = self._objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, STACKS, STACK
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(Mapping[str, Any], body)

    def _stack_resources(self) -> list[Mapping[str, Any]]:
        """Every StackResource of the namespace (the run's namespace holds only this stack)."""
        listed = self._objects.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, STACK_RESOURCES
        )
        return list(cast(Mapping[str, Any], listed).get("items", []))

    def _managed(self, kind: str) -> list[str]:
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

    def records_errors(self, template: Template) -> list[str]:
        """One StackResource per resource of `template`, none in progress or being deleted."""
        errors = []
        per_name: dict[str, list[str]] = {}
        for item in self._stack_resources():
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
            return self.driver.observe(STACK), [str(exc)]
        observation = self.driver.observe(STACK)
        errors = []
        if observation.phase != phase:
            errors.append(f"stack is {observation.phase} ({observation.reason}), expected {phase}")
        errors += self.records_errors(template)
        errors += reality_errors(observation, template, {}, STACK, self.types)
        return observation, errors

    def deleted_errors(self) -> list[str]:
        """What is left of the stack once the operator went quiet after its delete."""
        try:
            self.driver.run_until_quiet()
        except ScenarioError as exc:
            return [str(exc)]
        errors = []
        body = self._stack_body()
        if body is not None:
            status = body.get("status") or {}
            errors.append(
                f"the Stack is still there ({status.get('phase')}, "
                f"finalizers {body['metadata'].get('finalizers')})"
            )
        errors += [
            f"StackResource {item['metadata']['name']} ({item['spec']['resource']}) left"
            for item in self._stack_resources()
        ]
        # Template revisions' Secrets are the garbage collector's (owned by the
        # Stack): give it a few seconds.
        deadline = time.monotonic() + GC_GRACE
        while (leaked := self._managed("ConfigMap") + self._managed("Secret")) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.5)
        if leaked:
            errors.append(f"leaked: {', '.join(leaked)}")
        return errors

    def report(self, stage: str, errors: list[str]) -> str:
        """A failure message with all it takes to understand and reproduce it."""
        body = self._stack_body()
        status = (body or {}).get("status") or {}
        records = []
        for item in self._stack_resources():
            item_status = item.get("status") or {}
            metadata = item["metadata"]
            records.append(
                f"    {item['spec']['resource']} {metadata['name'][-8:]} "
                f"{item_status.get('phase')} replaces={str(item['spec'].get('replaces'))[-8:]} "
                f"replacedBy={str(item_status.get('replacedBy'))[-8:]}"
                + (" DELETING" if metadata.get("deletionTimestamp") else "")
            )
        return (
            f"seed {self.seed} (rollback mode {self.mode}) after {stage}; "
            f"reproduce with KILL_SEEDS={self.seed}\n"
            f"kills: {self.kills}\ntimings: {self.timings}\n  "
            + "\n  ".join(errors)
            + f"\nstack: {status.get('phase')} traversal {status.get('traversal')} "
            f"reason {status.get('statusReason')!r}\nStackResources:\n"
            + "\n".join(sorted(records))
            + f"\noperator log {self.log}, tail:\n{self.operator.tail(60)}"
        )


@pytest.fixture
def kill_run(
    request: pytest.FixtureRequest, cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[KillRun]:
    run = KillRun(cluster, namespace, tmp_path / "operator.log", seed=request.param)
    run.operator.start()
    try:
        yield run
    finally:
        # SIGKILL: a graceful stop takes seconds and there is nothing left to tidy up.
        run.operator.kill()
        run.driver.close()


@pytest.mark.parametrize("kill_run", SEEDS, indirect=True, ids=lambda s: f"seed{s}")
def test_kill_9_during_create_update_rollback_and_delete_leaves_reality_right(
    kill_run: KillRun,
) -> None:
    run = kill_run
    plan = random_plan(run.rng, run.mode)
    started = time.monotonic()

    def check(stage: str, template: Template, phase: str) -> dict[str, str]:
        observation, errors = run.converged(template, phase)
        run.timings.append(f"{stage} done at {time.monotonic() - started:.0f}s")
        if errors:
            pytest.fail(run.report(stage, errors))
        return run.physical_names(observation)

    def kept_errors(
        before: Mapping[str, str], after: Mapping[str, str], may_change: frozenset[str]
    ) -> list[str]:
        return [
            f"{name}: updated in place, yet its physical copy {before[name]} became {after[name]}"
            for name in sorted(before)
            if name not in may_change and after.get(name) != before[name]
        ]

    run.apply_with_kills("create", Operation("create", plan.base), CREATE_WINDOW)
    created = check("create", plan.base, "CREATE_COMPLETE")

    run.apply_with_kills("update", Operation("update", plan.updated), UPDATE_WINDOW)
    updated = check("update with replacement", plan.updated, "UPDATE_COMPLETE")
    errors = kept_errors(created, updated, plan.replaced)
    errors += [
        f"{name}: replaced, yet its physical copy {created[name]} is still the one"
        for name in sorted(plan.replaced)
        if updated.get(name) == created[name]
    ]
    if errors:
        pytest.fail(run.report("update with replacement", errors))

    stage = f"rollback ({run.mode} of {plan.culprit})"
    if run.mode == "failure":
        update = Operation("update", plan.rolled_back, options={"disable_rollback": False})
        run.apply_with_kills(stage, update, ROLLBACK_WINDOW)
    else:
        run.rollback_by_annotation(stage, Operation("update", plan.rolled_back))
    rolled_back = check(stage, plan.updated, "ROLLBACK_COMPLETE")
    errors = kept_errors(updated, rolled_back, plan.may_change_in_rollback)
    if errors:
        pytest.fail(run.report(stage, errors))

    run.apply_with_kills("delete", Operation("delete"), DELETE_WINDOW)
    errors = run.deleted_errors()
    run.timings.append(f"delete done at {time.monotonic() - started:.0f}s")
    if errors:
        pytest.fail(run.report("delete", errors))
    print(f"seed {run.seed} ({run.mode}): {run.timings}; kills {run.kills}")
