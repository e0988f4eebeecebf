"""Restart safety: kill -9 of the operator at random moments never leaves reality wrong.

A seeded random DAG of 30 TestResources (a few taking a second per action, so
kills land in the middle of actions) is created, updated with replacements and
deleted; during each operation the operator is killed with SIGKILL at random
moments and started again. After each operation the stack must end *_COMPLETE
with exactly one physical ConfigMap per resource holding the template's
properties, nothing leaked and nothing IN_PROGRESS; after the delete no
StackResource, ConfigMap or Stack (finalizer released) may be left.

`KILL_RUNS` (default 5) sets the number of seeds; one run takes about a
minute and a quarter (20 runs would take about 25 minutes).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from convergence.operator.engine.plugin import TypeRegistry
from convergence.operator.engine.scenario import Operation, ScenarioError, reality_errors
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.kube_driver import KubernetesDriver
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

KILL_RUNS = int(os.environ.get("KILL_RUNS", "5"))
RESOURCES = 30
SLOW_RESOURCES = 4
REPLACED_RESOURCES = 5
KILLS_PER_OPERATION = 2
STACK = "kill"
TYPE = "OS::Heat::TestResource"
# Long enough for 30 resources along the longest dependency chain, with restarts.
CONVERGE_TIMEOUT = 120.0


def random_templates(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """A random DAG of TestResources and an update of it that replaces some and edits others.

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
    base = {"heat_template_version": "2021-04-16", "resources": resources}

    updated_resources: dict[str, dict[str, Any]] = {
        name: {**resource, "properties": dict(resource["properties"])}
        for name, resource in resources.items()
    }
    for name in rng.sample(names, REPLACED_RESOURCES):
        updated_resources[name]["properties"]["update_replace_value"] = "v2"
    for name in rng.sample(names, REPLACED_RESOURCES):
        value = updated_resources[name]["properties"]["value"]
        if isinstance(value, str):
            updated_resources[name]["properties"]["value"] = f"{value}-edited"
    updated = {"heat_template_version": "2021-04-16", "resources": updated_resources}
    return base, updated


class KillRun:
    """One seeded run: the operator, the driver, and the kills."""

    def __init__(self, cluster: Cluster, namespace: str, log: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.namespace = namespace
        self.operator = OperatorProcess(
            cluster.kubeconfig, log, "--namespace", namespace, "--metrics-port", "0"
        )
        self.driver = KubernetesDriver(cluster, namespace, timeout=CONVERGE_TIMEOUT)
        self.types = TypeRegistry.from_entry_points()
        self.kills: list[str] = []

    def apply_with_kills(self, operation: Operation, longest: float) -> None:
        """Apply `operation`, then kill -9 and restart the operator at random moments in it."""
        self.driver.apply(STACK, operation)
        started = time.monotonic()
        for _ in range(KILLS_PER_OPERATION):
            time.sleep(self.rng.uniform(0.0, longest / KILLS_PER_OPERATION))
            self.operator.kill()
            self.kills.append(f"{operation.kind} +{time.monotonic() - started:.1f}s")
            time.sleep(self.rng.uniform(0.0, 0.5))
            self.operator.start()

    def converged_errors(self, template: dict[str, Any] | None, phase: str) -> list[str]:
        """What is wrong with the stack once the operator went quiet."""
        self.driver.run_until_quiet()
        observation = self.driver.observe(STACK)
        errors = []
        if observation.phase != phase:
            errors.append(f"stack is {observation.phase} ({observation.reason}), expected {phase}")
        stuck = [f"{v.name}={v.phase}" for v in observation.resources if "IN_PROGRESS" in v.phase]
        if stuck:
            errors.append(f"resources stuck in progress: {', '.join(stuck)}")
        errors += reality_errors(observation, template, {}, STACK, self.types)
        if template is None and observation.resources:
            left = ", ".join(f"{v.name}={v.phase}" for v in observation.resources)
            errors.append(f"StackResources left after delete: {left}")
        return errors


@pytest.fixture
def kill_run(
    request: pytest.FixtureRequest, cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[KillRun]:
    run = KillRun(cluster, namespace, tmp_path / "operator.log", seed=request.param)
    run.operator.start()
    try:
        yield run
    finally:
        run.operator.stop()
        run.driver.close()


@pytest.mark.parametrize("kill_run", range(KILL_RUNS), indirect=True, ids=lambda s: f"seed{s}")
def test_kill_9_during_create_update_and_delete_leaves_reality_right(
    kill_run: KillRun, cluster: Cluster
) -> None:
    base, updated = random_templates(kill_run.rng)

    def check(stage: str, template: dict[str, Any] | None, phase: str) -> None:
        try:
            errors = kill_run.converged_errors(template, phase)
        except ScenarioError as exc:
            observation = kill_run.driver.observe(STACK)
            records = ", ".join(f"{v.name}={v.phase}" for v in observation.resources)
            errors = [str(exc), f"stack {observation.phase}; StackResources: {records}"]
        if errors:
            pytest.fail(
                f"after {stage} with kills at {kill_run.kills}:\n  "
                + "\n  ".join(errors)
                + f"\noperator log tail:\n{kill_run.operator.tail(60)}"
            )

    kill_run.apply_with_kills(Operation("create", base), longest=8.0)
    check("create", base, "CREATE_COMPLETE")
    kill_run.apply_with_kills(Operation("update", updated), longest=8.0)
    check("update with replacement", updated, "UPDATE_COMPLETE")
    kill_run.apply_with_kills(Operation("delete"), longest=6.0)
    check("delete", None, "DELETE_COMPLETE")

    stacks = cluster.kubectl("get", "stacks", f"--namespace={kill_run.namespace}", "-o", "name")
    assert stacks.stdout.strip() == "", f"the Stack is still there (finalizer): {stacks.stdout}"
    leaked = cluster.kubectl(
        "get",
        "configmaps",
        f"--namespace={kill_run.namespace}",
        "-l",
        "app.kubernetes.io/managed-by=convergence",
        "-o",
        "name",
    )
    assert leaked.stdout.strip() == "", f"physical resources leaked: {leaked.stdout}"
