"""Restart safety: kill -9 of the operator at random moments never leaves reality wrong.

Each run is seeded. A random DAG of TestResources (a few taking a second
per action, so kills land in the middle of actions) goes through its
operations, and during each the operator is killed with SIGKILL at random
moments and started again:

1. create;
2. an update that replaces some resources and edits others in place;
3. a rollback, in one of two ways (alternating by seed with one operator,
   always `failure` with replicas):
   - `failure`: an update with `disableRollback: false` that replaces and
     edits more resources and makes one fail (`fail: true`, after a wait), so
     the stack rolls back by itself;
   - `annotation`: an update that replaces and edits more resources, one of
     them slow, and the `convergence.dev/rollback` annotation while it runs;
   either way the stack must end ROLLBACK_COMPLETE with reality equal to the
   template of step 2;
4. (replicas only) a cancel: an update like the `annotation` one, cancelled
   with `convergence.dev/cancel=rollback` while it runs; again
   ROLLBACK_COMPLETE with the reality of step 2;
5. delete.

After each of 1-4 the stack must end in the expected `*_COMPLETE` phase with:
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
again. `KILL_RUNS` (default 20) sets the number of seeds of 30 resources; a
run takes about a minute on two cores.

The same runs with three replicas of the operator on a stack of 100
resources (`make kill-replicas`, or `KILL_REPLICA_SEEDS` / `KILL_REPLICA_RUNS`;
`make test` runs one seed, about 80 s): each kill takes down one replica, chosen by the
seed, and a replica of a new identity replaces it, as a Deployment replaces a
pod. The survivors hold on to the actions they started and take over the dead
replica's once its Lease has expired; the same checks must hold.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from convergence.operator.engine.sim.scenario import Operation
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.stack_run import (
    StackRun,
    Template,
    copy_resources,
    edit_values,
    kept_errors,
    random_resources,
    replace_some,
    seeds_from_env,
)

pytestmark = pytest.mark.controlplane

SEEDS = seeds_from_env("KILL_SEEDS", "KILL_RUNS", 20)
# The same runs with three operator replicas sharing the work, one of them killed at each
# moment and replaced by a replica of another identity (as a Deployment replaces a pod):
# the others take over its actions once its Lease has expired.
REPLICA_SEEDS = seeds_from_env("KILL_REPLICA_SEEDS", "KILL_REPLICA_RUNS", 1)
REPLICAS = 3
REPLICA_LEASE_SECONDS = 6.0
KILLS_PER_OPERATION = 2
# Seconds the failing resource of the `failure` rollback waits before it fails.
FAIL_AFTER_SECS = 2
# Seconds the slow update of the `annotation` rollback (and of the cancel) takes: the
# request comes while it runs.
SLOW_UPDATE_SECS = 5
# Seconds the operator stays dead at most before it is started again.
DOWNTIME = 0.5
STACK = "kill"
ROLLBACK_MODES = ("failure", "annotation")


@dataclass(frozen=True)
class Shape:
    """How big a run's stack is, what its updates change, and when kills may come.

    Kill moments are drawn from [0, window) after an operation started; the
    windows are about how long each operation takes without kills.
    """

    resources: int
    slow: int
    replaced: int
    edited: int
    create_window: float
    update_window: float
    rollback_window: float
    delete_window: float
    # Long enough for the longest dependency chain, with restarts.
    converge_timeout: float
    # A cancel stage between the rollback and the delete.
    cancel: bool


ONE_OPERATOR = Shape(
    resources=30,
    slow=4,
    replaced=5,
    edited=5,
    create_window=8.0,
    update_window=8.0,
    rollback_window=10.0,
    delete_window=6.0,
    converge_timeout=120.0,
    cancel=False,
)
# Measured without kills on two cores with three replicas (seed 0): create 9 s, update
# 9 s, the failed update and its rollback 16 s, the cancelled update and its rollback
# 22 s (the cancel's kills fall in the rollback window after the request), delete 14 s.
WITH_REPLICAS = Shape(
    resources=100,
    slow=8,
    replaced=10,
    edited=10,
    create_window=9.0,
    update_window=9.0,
    rollback_window=15.0,
    delete_window=12.0,
    converge_timeout=300.0,
    cancel=True,
)


@dataclass(frozen=True)
class BadUpdate:
    """An update that fails, or is rolled back or cancelled while its slow resource runs."""

    template: Template
    # Resources that may come back from its rollback as another physical copy: those
    # it replaces, and its culprit (Heat replaces a failed resource on its next update).
    may_change: frozenset[str]
    # The resource that fails (`failure`) or is slow (`annotation`, `cancel`).
    culprit: str


@dataclass(frozen=True)
class Plan:
    """The templates of one run and what each operation may replace."""

    base: Template
    updated: Template
    # The update of step 3 (it fails, or is rolled back by annotation).
    rolled_back: BadUpdate
    # The update of step 4, cancelled (None: no cancel stage).
    cancelled: BadUpdate | None
    mode: str
    # Resources the update of step 2 replaces.
    replaced: frozenset[str]


def random_plan(rng: random.Random, mode: str, shape: Shape) -> Plan:
    """A random DAG of TestResources, an update of it, and updates to be rolled back.

    Each resource depends on up to three earlier ones, by depends_on or by data
    (get_resource / get_attr), so data flows along the edges and a replacement
    forces its dependents to update.
    """
    names = [f"r{i:02d}" for i in range(shape.resources)]
    slow = dict.fromkeys(rng.sample(names, shape.slow), 1)
    resources = random_resources(rng, names, slow)

    updated = copy_resources(resources)
    replaced = replace_some(rng, updated, shape.replaced, "v2")
    edit_values(rng, updated, shape.edited, "edited")
    rolled_back = bad_update(rng, updated, shape, mode, "v3")
    cancelled = bad_update(rng, updated, shape, "cancel", "v4") if shape.cancel else None
    return Plan(
        base=hot.template(resources),
        updated=hot.template(updated),
        rolled_back=rolled_back,
        cancelled=cancelled,
        mode=mode,
        replaced=frozenset(replaced),
    )


def bad_update(
    rng: random.Random, resources: dict[str, dict[str, Any]], shape: Shape, mode: str, tag: str
) -> BadUpdate:
    """An update of `resources` replacing and editing more of them, with a culprit that
    fails after a wait (`failure`) or whose update is slow (`annotation`, `cancel`)."""
    bad = copy_resources(resources)
    replaced_again = replace_some(rng, bad, shape.replaced, tag)
    edit_values(rng, bad, shape.edited, f"edited-{tag}")
    # The culprit is updated in place, never replaced: its slow update is what
    # keeps the update in progress until the rollback is asked for (a replaced
    # one is created, and the whole update may be in service before that).
    culprit = rng.choice([name for name in sorted(bad) if name not in replaced_again])
    culprit_properties = bad[culprit]["properties"]
    # A changed value makes the update of the culprit wait (and fail).
    culprit_properties["value"] = f"{culprit}-{mode}"
    if mode == "failure":
        culprit_properties["fail"] = True
        culprit_properties["wait_secs"] = FAIL_AFTER_SECS
    else:
        culprit_properties["action_wait_secs"] = {"update": SLOW_UPDATE_SECS}
    return BadUpdate(hot.template(bad), frozenset(replaced_again | {culprit}), culprit)


class KillRun(StackRun):
    """One seeded run (`StackRun`) with kill -9s of its operator."""

    def __init__(
        self, cluster: Cluster, namespace: str, log: Path, seed: int, replicas: int = 1
    ) -> None:
        test = "replicas" if replicas > 1 else "during"
        seeds = "KILL_REPLICA_SEEDS" if replicas > 1 else "KILL_SEEDS"
        super().__init__(
            cluster,
            namespace,
            log,
            seed,
            stack=STACK,
            replay=f"{seeds}={seed} pytest tests/integration/test_kill.py -k {test}",
            timeout=(WITH_REPLICAS if replicas > 1 else ONE_OPERATOR).converge_timeout,
            replicas=replicas,
            lease_seconds=REPLICA_LEASE_SECONDS if replicas > 1 else None,
            # KILL_VERBOSE=1: every step's outcome in the operators' logs, to replay a failure.
            operator_args=("--verbose",) if os.environ.get("KILL_VERBOSE") == "1" else (),
        )
        self.shape = WITH_REPLICAS if replicas > 1 else ONE_OPERATOR
        # With replicas, the rollback comes of a failure, and a cancel asks for another.
        self.mode = "failure" if replicas > 1 else ROLLBACK_MODES[seed % len(ROLLBACK_MODES)]
        self.replaced_replicas = 0

    def report(self, stage: str, errors: list[str]) -> str:
        return super().report(f"{stage} (rollback mode {self.mode})", errors)

    def kill_moments(self, window: float) -> list[float]:
        return sorted(self.rng.uniform(0.0, window) for _ in range(KILLS_PER_OPERATION))

    def kill_at(self, stage: str, started: float, moments: list[float]) -> None:
        """kill -9 the operator at each moment after `started`, starting it again soon after."""
        for moment in moments:
            time.sleep(max(0.0, started + moment - time.monotonic()))
            if len(self.operators) == 1:
                self.operator.kill()
                killed = "operator"
            else:
                index = self.rng.randrange(len(self.operators))
                self.operators[index].kill()
                killed = f"replica-{index}"
            elapsed = time.monotonic() - started
            self.faults.append(f"kill {killed} in {stage} +{elapsed:.1f}s ({self.progress()})")
            time.sleep(self.rng.uniform(0.0, DOWNTIME))
            if len(self.operators) == 1:
                self.operator.start()
            else:
                self.replaced_replicas += 1
                replacement = self.replica(f"replica-{index}-{self.replaced_replicas}")
                self.operators[index] = replacement.start()

    def apply_with_kills(self, stage: str, operation: Operation, window: float) -> None:
        """Apply `operation`, then kill -9 and restart the operator at random moments in it."""
        moments = self.kill_moments(window)
        started = time.monotonic()
        self.driver.apply(STACK, operation)
        self.kill_at(stage, started, moments)

    def request_while_updating(self, stage: str, update: Operation, request: Operation) -> None:
        """Start `update`, ask for `request` (a rollback or a cancel) while it runs, and kill
        during what follows."""
        annotate_after = self.rng.uniform(0.5, 2.0)
        moments = self.kill_moments(self.shape.rollback_window)
        started = time.monotonic()
        self.driver.apply(STACK, update)
        time.sleep(max(0.0, started + annotate_after - time.monotonic()))
        progress = self.progress()
        self.driver.apply(STACK, request)
        self.faults.append(f"({request.kind} annotated at +{annotate_after:.1f}s: {progress})")
        self.kill_at(stage, time.monotonic(), moments)


@pytest.fixture
def kill_run(
    request: pytest.FixtureRequest, cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[KillRun]:
    seed, replicas = request.param
    run = KillRun(cluster, namespace, tmp_path / "operator.log", seed=seed, replicas=replicas)
    for operator in run.operators:
        operator.start()
    try:
        yield run
    finally:
        run.close()


@pytest.mark.parametrize(
    "kill_run", [(seed, 1) for seed in SEEDS], indirect=True, ids=lambda p: f"seed{p[0]}"
)
def test_kill_9_during_create_update_rollback_and_delete_leaves_reality_right(
    kill_run: KillRun,
) -> None:
    operations_with_kills(kill_run)


@pytest.mark.parametrize(
    "kill_run",
    [(seed, REPLICAS) for seed in REPLICA_SEEDS],
    indirect=True,
    ids=lambda p: f"seed{p[0]}",
)
def test_kill_9_of_one_of_three_replicas_leaves_reality_right(kill_run: KillRun) -> None:
    """Three replicas step the same stack; each kill takes one down and a replica of a new
    identity comes up, so the survivors take over the dead one's actions (its Lease expires)."""
    operations_with_kills(kill_run)


def operations_with_kills(run: KillRun) -> None:
    """Create, update with replacement, rollback, cancel and delete, each with kills; the checks."""
    shape = run.shape
    plan = random_plan(run.rng, run.mode, shape)
    started = time.monotonic()

    def check(stage: str, template: Template, phase: str) -> dict[str, str]:
        observation, errors = run.converged(template, phase)
        run.timings.append(f"{stage} done at {time.monotonic() - started:.0f}s")
        if errors:
            pytest.fail(run.report(stage, errors))
        return run.physical_names(observation)

    run.apply_with_kills("create", Operation("create", plan.base), shape.create_window)
    created = check("create", plan.base, "CREATE_COMPLETE")

    run.apply_with_kills("update", Operation("update", plan.updated), shape.update_window)
    updated = check("update with replacement", plan.updated, "UPDATE_COMPLETE")
    errors = kept_errors(created, updated, plan.replaced)
    errors += [
        f"{name}: replaced, yet its physical copy {created[name]} is still the one"
        for name in sorted(plan.replaced)
        if updated.get(name) == created[name]
    ]
    if errors:
        pytest.fail(run.report("update with replacement", errors))

    bad = plan.rolled_back
    stage = f"rollback ({run.mode} of {bad.culprit})"
    if run.mode == "failure":
        update = Operation("update", bad.template, options={"disable_rollback": False})
        run.apply_with_kills(stage, update, shape.rollback_window)
    else:
        run.request_while_updating(stage, Operation("update", bad.template), Operation("rollback"))
    rolled_back = check(stage, plan.updated, "ROLLBACK_COMPLETE")
    errors = kept_errors(updated, rolled_back, bad.may_change)
    if errors:
        pytest.fail(run.report(stage, errors))

    if plan.cancelled is not None:
        bad = plan.cancelled
        stage = f"cancel (slow {bad.culprit})"
        cancel = Operation("cancel", options={"rollback": True})
        run.request_while_updating(stage, Operation("update", bad.template), cancel)
        cancelled = check(stage, plan.updated, "ROLLBACK_COMPLETE")
        errors = kept_errors(rolled_back, cancelled, bad.may_change)
        if errors:
            pytest.fail(run.report(stage, errors))

    run.apply_with_kills("delete", Operation("delete"), shape.delete_window)
    errors = run.deleted_errors()
    run.timings.append(f"delete done at {time.monotonic() - started:.0f}s")
    if errors:
        pytest.fail(run.report("delete", errors))
    print(f"seed {run.seed} ({run.mode}): {run.timings}; kills {run.faults}")
