"""Faults of the control plane and of the user, on the real control plane: reality stays right.

Each test is seeded (the seed draws the templates, the moments the faults
strike and how long they last) and runs one operator (`--namespace`) on a
control plane of this module's own, since it stops and starts the API server
and etcd under it:

- `api_server`: kube-apiserver killed at a random moment of a create, an
  update with replacement and a delete, down for 10 s, then started again
  (same etcd, port, certificates): the operator reconnects, lists again and
  resumes;
- `etcd`: etcd stopped (TERM or KILL by seed) for 1-5 s during each of them;
- `watch_expired`: kopf's Stack watch resumes from a resourceVersion the
  restarted API server no longer has (410 Gone) and lists again, and the
  operator's own StackResource watch (kube/watch.py), resumed from a version
  too old, lists again and keeps observing;
- `conflict_storm`: the user updates the Stack 10 times in 5 s while it
  converges (resources added, removed, replaced, edited): the last spec wins
  and nothing of the ones between is left;
- `two_operators`: two operators on one stack, one frozen (SIGSTOP) past its
  Lease while the other takes its actions over and the user updates (then
  deletes) the stack, then resumed with its old view of the stack and the
  steps it was in: no duplicate, nothing left;
- `namespace_deleted`: the operator killed while many of a 60-resource
  stack's resources are CREATE_IN_PROGRESS, the namespace deleted while it is
  down (its template revisions go first), the operator started again: the
  namespace goes, nothing keeps it Terminating.

After each operation the checks of `StackRun`: the phase, reality exact, one
StackResource per resource (none in progress or hanging in deletion), a
resource updated in place kept its physical copy, and after the delete
nothing left. The operator must still be running at the end (it reconnects
rather than exits). A failure prints the seed and the command that runs it
again; timing cannot be replayed exactly, so a seed may need a few runs to
fail again. `FAULT_RUNS` (default 1: what `make test` runs) sets the number
of seeds, `FAULT_SEEDS=3,7` chooses them; `make faults` runs a longer matrix.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import AppsV1Api, CoreV1Api, CustomObjectsApi

from convergence.operator.engine.sim.scenario import Operation
from convergence.operator.kube.names import GROUP, STACK_RESOURCES, STACKS, VERSION
from convergence.operator.kube.watch import Gone, RecordWatch
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import (
    REPO_ROOT,
    ControlPlane,
    build_binaries,
    log_tail,
)
from convergence.operator.testing.stack_run import (
    TEST_RESOURCE,
    StackRun,
    Template,
    copy_resources,
    edit_values,
    kept_errors,
    random_resources,
    random_template,
    replace_some,
    seeds_from_env,
)

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

SEEDS = seeds_from_env("FAULT_SEEDS", "FAULT_RUNS", 1)
RESOURCES = 30
SLOW_RESOURCES = 4
REPLACED_RESOURCES = 5
EDITED_RESOURCES = 5
# A fault strikes at a random moment in this window after an operation was taken up.
FAULT_WINDOW = (0.3, 4.0)
# Seconds the API server stays down.
API_SERVER_DOWNTIME = 10.0
# Seconds etcd stays down, at random in this range.
ETCD_DOWNTIME = (1.0, 5.0)
# The conflict storm: this many updates, one every STORM_INTERVAL seconds.
STORM_UPDATES = 10
STORM_INTERVAL = 0.5
# The namespace deletion: a stack of this many resources, most of them slow.
NAMESPACE_RESOURCES = 60
NAMESPACE_SLOW = 45
NAMESPACE_WAIT_SECS = 3
# The operator is killed once at least this many (drawn by seed) are in progress.
IN_PROGRESS_AT_KILL = (5, 17)
# Seconds the namespace controller may take to delete the revisions of a deleted namespace.
REVISIONS_GONE_TIMEOUT = 90.0
# Seconds the namespace may take to go once the operator is back.
NAMESPACE_GONE_TIMEOUT = 120.0
CONVERGE_TIMEOUT = 150.0
# Two operators: the Lease of each (seconds), and how long past it one stays frozen.
PAIR_LEASE_SECONDS = 6.0
FROZEN_PAST_LEASE = (0.0, 3.0)
STACK = "faults"
TEST_FILE = "tests/integration/test_faults.py"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Cluster]]:
    """A control plane of this module's own: its API server and etcd are stopped and started."""
    if os.environ.get("USE_EXISTING_CLUSTER") == "1":
        pytest.skip("the fault tests stop and start the API server: they need their own")
    bin_dir = build_binaries()
    control = ControlPlane(tmp_path_factory.mktemp("faults-controlplane"), bin_dir=bin_dir)
    kubeconfig = control.up()
    try:
        cluster = Cluster(kubeconfig, str(bin_dir / "kubectl"))
        crds = str(REPO_ROOT / "crds")
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
        yield control, cluster
    finally:
        control.down()


def _fault_run(
    request: pytest.FixtureRequest,
    plane: tuple[ControlPlane, Cluster],
    tmp_path: Path,
    seed: int,
    *operator_args: str,
    clusterwide: bool = False,
    replicas: int = 1,
) -> Iterator[StackRun]:
    _, cluster = plane
    namespace = f"f-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    test = request.node.originalname
    run = StackRun(
        cluster,
        namespace,
        tmp_path / "operator.log",
        seed,
        stack=STACK,
        replay=f"FAULT_SEEDS={seed} pytest {TEST_FILE} -k {test}",
        timeout=CONVERGE_TIMEOUT,
        operator_args=operator_args,
        clusterwide=clusterwide,
        replicas=replicas,
        lease_seconds=PAIR_LEASE_SECONDS if replicas > 1 else None,
    )
    for operator in run.operators:
        operator.start()
    try:
        yield run
    finally:
        run.close()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def fault_run(
    request: pytest.FixtureRequest, plane: tuple[ControlPlane, Cluster], tmp_path: Path
) -> Iterator[StackRun]:
    """One seeded run in a namespace of its own, the operator started."""
    yield from _fault_run(request, plane, tmp_path, request.param)


@pytest.fixture
def verbose_run(
    request: pytest.FixtureRequest, plane: tuple[ControlPlane, Cluster], tmp_path: Path
) -> Iterator[StackRun]:
    """A `fault_run` whose operator logs at debug level (kopf's watch restarts)."""
    yield from _fault_run(request, plane, tmp_path, request.param, "--verbose")


@pytest.fixture
def scoped_run(
    request: pytest.FixtureRequest, plane: tuple[ControlPlane, Cluster], tmp_path: Path
) -> Iterator[StackRun]:
    """A `fault_run` whose operator serves its namespace or (param "clusterwide") every one."""
    seed, scope = request.param
    yield from _fault_run(request, plane, tmp_path, seed, clusterwide=scope == "clusterwide")


@pytest.fixture
def paired_run(
    request: pytest.FixtureRequest, plane: tuple[ControlPlane, Cluster], tmp_path: Path
) -> Iterator[StackRun]:
    """A `fault_run` with two operators (replicas of distinct identities) on one stack."""
    yield from _fault_run(request, plane, tmp_path, request.param, replicas=2)


def seeded(fixture: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(fixture, SEEDS, indirect=True, ids=lambda s: f"seed{s}")


# -- the story every outage test tells ----------------------------------------------------------


def updated_template(run: StackRun, base: Template) -> tuple[Template, set[str]]:
    """`base` with some resources replaced and others edited in place; the replaced ones."""
    resources = copy_resources(base["resources"])
    replaced = replace_some(run.rng, resources, REPLACED_RESOURCES, "v2")
    edit_values(run.rng, resources, EDITED_RESOURCES, "edited")
    return hot.template(resources), replaced


def apply_with_fault(
    run: StackRun, stage: str, operation: Operation, fault: Callable[[], str]
) -> None:
    """Apply `operation` and, at a random moment while it runs, `fault` (which says what it did)."""
    moment = run.rng.uniform(*FAULT_WINDOW)
    started = time.monotonic()
    run.driver.apply(STACK, operation)
    time.sleep(max(0.0, started + moment - time.monotonic()))
    progress = run.progress()
    struck = time.monotonic() - started
    what = fault()
    run.faults.append(f"{what} in {stage} at +{struck:.1f}s ({progress})")


def check(run: StackRun, stage: str, template: Template, phase: str) -> dict[str, str]:
    """Fail unless the stack converged right; the physical copy of each resource."""
    observation, errors = run.converged(template, phase)
    run.timings.append(f"{stage} done")
    if errors:
        pytest.fail(run.report(stage, errors))
    return run.physical_names(observation)


def survives(run: StackRun, fault: Callable[[], str]) -> None:
    """Create, update with replacement and delete a random stack, `fault` striking in each."""
    base = random_template(run.rng, RESOURCES, SLOW_RESOURCES)
    updated, replaced = updated_template(run, base)

    apply_with_fault(run, "create", Operation("create", base), fault)
    created = check(run, "create", base, "CREATE_COMPLETE")

    apply_with_fault(run, "update", Operation("update", updated), fault)
    after = check(run, "update with replacement", updated, "UPDATE_COMPLETE")
    errors = kept_errors(created, after, replaced)
    errors += [
        f"{name}: replaced, yet its physical copy {created[name]} is still the one"
        for name in sorted(replaced)
        if after.get(name) == created[name]
    ]
    if errors:
        pytest.fail(run.report("update with replacement", errors))

    apply_with_fault(run, "delete", Operation("delete"), fault)
    errors = run.deleted_errors()
    if run.operator.pid is None:
        errors.append("the operator exited")
    if errors:
        pytest.fail(run.report("delete", errors))
    print(f"seed {run.seed}: faults {run.faults}")


# -- the tests ----------------------------------------------------------------------------------


@seeded("fault_run")
def test_api_server_down_for_10s_mid_traversal_loses_and_doubles_no_step(
    fault_run: StackRun, plane: tuple[ControlPlane, Cluster]
) -> None:
    control, _ = plane

    def api_server_down() -> str:
        control.stop("kube-apiserver", signal.SIGKILL)
        time.sleep(API_SERVER_DOWNTIME)
        control.start("kube-apiserver")
        return f"kube-apiserver killed, down {API_SERVER_DOWNTIME:g}s"

    survives(fault_run, api_server_down)


@seeded("fault_run")
def test_etcd_restarted_mid_traversal_loses_and_doubles_no_step(
    fault_run: StackRun, plane: tuple[ControlPlane, Cluster]
) -> None:
    control, _ = plane
    run = fault_run

    def etcd_restarted() -> str:
        sig = run.rng.choice([signal.SIGTERM, signal.SIGKILL])
        downtime = run.rng.uniform(*ETCD_DOWNTIME)
        control.stop("etcd", sig)
        time.sleep(downtime)
        control.start("etcd")
        return f"etcd stopped ({signal.Signals(sig).name}), down {downtime:.1f}s"

    survives(run, etcd_restarted)


@seeded("verbose_run")
def test_watches_resumed_from_an_expired_version_list_again_and_the_stack_converges(
    verbose_run: StackRun, plane: tuple[ControlPlane, Cluster]
) -> None:
    """kopf resumes its Stack watch from the last version it saw; a restarted API server's
    watch cache starts later, so it answers 410 Gone, and kopf must list again to see the
    update. The operator's StackResource watch lists again after any broken watch."""
    control, cluster = plane
    run = verbose_run
    base = random_template(run.rng, RESOURCES, SLOW_RESOURCES)
    updated, replaced = updated_template(run, base)
    run.driver.apply(STACK, Operation("create", base))
    created = check(run, "create", base, "CREATE_COMPLETE")

    # A write after every version the operator's watches saw: the restarted API server's
    # watch cache begins after it, so a watch resumed from any of those versions is too old.
    cluster.kubectl("create", "configmap", "after-the-watches", f"--namespace={run.namespace}")
    control.stop("kube-apiserver", signal.SIGKILL)
    control.start("kube-apiserver")
    run.faults.append(f"kube-apiserver killed and started again ({run.progress()})")
    run.driver.apply(STACK, Operation("update", updated))
    after = check(run, "update after the restart", updated, "UPDATE_COMPLETE")
    errors = kept_errors(created, after, replaced)

    log = run.log.read_text(errors="replace").splitlines()
    if not any("Restarting the watch-stream" in line and STACKS in line for line in log):
        errors.append("kopf's Stack watch never restarted after a 410 Gone (the test forced none)")
    if run.operator.pid is None:
        errors.append("the operator exited")
    if errors:
        pytest.fail(run.report("update after the restart", errors))

    run.driver.apply(STACK, Operation("delete"))
    errors = run.deleted_errors()
    if errors:
        pytest.fail(run.report("delete", errors))


class Observed(BaseException):
    """Ends a RecordWatch's endless run from its observe callback (it catches Exceptions)."""


def test_record_watch_resumed_from_an_expired_version_lists_again_and_keeps_watching(
    plane: tuple[ControlPlane, Cluster],
) -> None:
    control, cluster = plane
    namespace = f"f-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    objects = CustomObjectsApi(api)

    def create_record(name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "StackResource",
            "metadata": {"name": name},
            "spec": {"stack": "watched", "resource": name, "type": TEST_RESOURCE},
        }
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, STACK_RESOURCES, body)

    try:
        listed: Any = objects.list_namespaced_custom_object(
            GROUP, VERSION, namespace, STACK_RESOURCES
        )
        expired = str(listed["metadata"]["resourceVersion"])
        create_record("before")
        # The restarted API server's watch cache begins after `expired`.
        control.stop("kube-apiserver", signal.SIGKILL)
        control.start("kube-apiserver")

        seen: list[str] = []
        gone: list[str] = []
        lists: list[str] = []

        class ExpiredWatch(RecordWatch):
            """The watch as the operator runs it, its first watch resumed from `expired`."""

            def observe_all(self) -> str:
                version = super().observe_all()
                lists.append(version)
                return expired if len(lists) == 1 else version

            def watch(self, version: str) -> str:
                try:
                    return super().watch(version)
                except Gone as exc:
                    gone.append(f"{version}: {exc}")
                    raise

        def observe(_: str, body: Mapping[str, Any], deleted: bool) -> None:
            seen.append(str(body["metadata"]["name"]))
            if seen[-1] == "after":
                raise Observed

        watch = ExpiredWatch(api, namespace, observe)
        ended: list[str] = []

        def run() -> None:
            try:
                watch.run()
            except Observed:
                ended.append("after")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while len(lists) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        create_record("after")
        thread.join(timeout=30)
        assert gone, f"the server answered no 410 Gone to a watch from {expired} (lists {lists})"
        assert len(lists) == 2, f"expected one list before the 410 and one after: {lists}"
        assert ended, f"the watch saw no 'after' once it listed again (seen {seen}, gone {gone})"
        assert seen.count("before") == 2, f"each list observes 'before' once: {seen}"
    finally:
        api.close()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _dependents(resources: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Resources some other resource refers to (get_resource, get_attr, depends_on)."""
    referred: set[str] = set()
    for resource in resources.values():
        value = resource["properties"].get("value")
        if isinstance(value, dict):
            source = value.get("get_resource") or value.get("get_attr", [None])[0]
            referred.add(str(source))
        referred.update(resource.get("depends_on", []))
    return referred


def storm_template(run: StackRun, resources: dict[str, dict[str, Any]], k: int) -> Template:
    """The k-th update of the storm, changing `resources`: two resources that nothing refers
    to removed, two added (one reading another's attribute), two replaced, two edited."""
    removable = sorted(set(resources) - _dependents(resources))
    for name in run.rng.sample(removable, min(2, len(removable))):
        del resources[name]
    source = run.rng.choice(sorted(resources))
    resources[f"s{k:02d}a"] = {
        "type": TEST_RESOURCE,
        "properties": {"value": {"get_attr": [source, "output"]}, "update_replace_value": "v1"},
    }
    resources[f"s{k:02d}b"] = {
        "type": TEST_RESOURCE,
        "properties": {"value": f"s{k:02d}b-value", "update_replace_value": "v1"},
    }
    replace_some(run.rng, resources, 2, f"storm-{k}")
    edit_values(run.rng, resources, 2, f"storm-{k}")
    return hot.template(copy_resources(resources))


@seeded("fault_run")
def test_conflict_storm_of_10_updates_in_5s_the_last_spec_wins_and_nothing_between_leaks(
    fault_run: StackRun,
) -> None:
    run = fault_run
    base = random_template(run.rng, RESOURCES, SLOW_RESOURCES)
    objects = CustomObjectsApi(run.driver.api)
    run.driver.apply(STACK, Operation("create", base))
    resources = copy_resources(base["resources"])
    started = time.monotonic()
    template = base
    for k in range(STORM_UPDATES):
        template = storm_template(run, resources, k)
        time.sleep(max(0.0, started + k * STORM_INTERVAL - time.monotonic()))
        # What `kubectl apply` of the new template does, without waiting for the operator.
        patch = [{"op": "replace", "path": "/spec/template", "value": template}]
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, run.namespace, STACKS, STACK, patch,
            _content_type="application/json-patch+json",
        )  # fmt: skip
        run.faults.append(
            f"update {k + 1} at +{time.monotonic() - started:.1f}s ({run.progress()})"
        )
    check(run, f"{STORM_UPDATES} updates", template, "UPDATE_COMPLETE")

    run.driver.apply(STACK, Operation("delete"))
    errors = run.deleted_errors()
    if errors:
        pytest.fail(run.report("delete", errors))


@pytest.mark.parametrize("paired_run", SEEDS, indirect=True, ids=lambda s: f"seed{s}")
def test_two_operators_one_waking_with_an_old_view_of_the_stack_make_no_duplicate(
    paired_run: StackRun,
) -> None:
    """Two operators on one stack, one of them frozen (SIGSTOP) mid-traversal for longer than
    its Lease, so that the other takes its actions over; the user updates (later deletes)
    the stack meanwhile; the frozen one then runs on (SIGCONT) from what it read before,
    holding steps of a version of the stack that is gone. Still one copy of everything,
    the last spec's, and nothing left after the delete."""
    run = paired_run
    frozen = run.operators[1]
    base = random_template(run.rng, RESOURCES, SLOW_RESOURCES)
    updated, _ = updated_template(run, base)

    def freeze(stage: str, started: float) -> None:
        time.sleep(max(0.0, started + run.rng.uniform(*FAULT_WINDOW) - time.monotonic()))
        frozen.pause()
        run.faults.append(
            f"replica-1 frozen in {stage} at +{time.monotonic() - started:.1f}s ({run.progress()})"
        )

    def wake(stage: str, started: float) -> None:
        time.sleep(PAIR_LEASE_SECONDS + run.rng.uniform(*FROZEN_PAST_LEASE))
        frozen.resume()
        run.faults.append(
            f"replica-1 resumed in {stage} at +{time.monotonic() - started:.1f}s ({run.progress()})"
        )

    started = time.monotonic()
    run.driver.apply(STACK, Operation("create", base))
    freeze("create", started)
    # The update comes while the create may still run: the frozen replica's view is older.
    run.driver.apply(STACK, Operation("update", updated))
    wake("update", started)
    check(run, "create, then update while one operator was frozen", updated, "UPDATE_COMPLETE")

    started = time.monotonic()
    run.driver.apply(STACK, Operation("delete"))
    freeze("delete", started)
    wake("delete", started)
    errors = run.deleted_errors()
    errors += [
        f"operator replica-{index} exited"
        for index, operator in enumerate(run.operators)
        if operator.pid is None
    ]
    if errors:
        pytest.fail(run.report("delete", errors))
    print(f"seed {run.seed}: faults {run.faults}")


def wide_template(run: StackRun) -> Template:
    """NAMESPACE_RESOURCES TestResources: a random DAG of the first few, and the slow rest
    each reading an attribute of one of those, so that many are in progress at once."""
    names = [f"r{i:02d}" for i in range(NAMESPACE_RESOURCES)]
    base = NAMESPACE_RESOURCES - NAMESPACE_SLOW
    resources = random_resources(run.rng, names[:base])
    for name in names[base:]:
        source = run.rng.choice(names[:base])
        properties = {
            "value": {"get_attr": [source, "output"]},
            "update_replace_value": "v1",
            "wait_secs": NAMESPACE_WAIT_SECS,
        }
        resources[name] = {"type": TEST_RESOURCE, "properties": properties}
    return hot.template(resources)


def _in_progress(run: StackRun) -> int:
    return sum(
        1
        for item in run.stack_resources()
        if str((item.get("status") or {}).get("phase") or "").endswith("_IN_PROGRESS")
    )


@pytest.mark.parametrize(
    "scoped_run",
    [(seed, scope) for seed in SEEDS for scope in ("namespaced", "clusterwide")],
    indirect=True,
    ids=lambda param: f"seed{param[0]}-{param[1]}",
)
def test_namespace_deleted_while_the_operator_is_down_goes_once_it_is_back(
    scoped_run: StackRun, plane: tuple[ControlPlane, Cluster]
) -> None:
    """As a user found it: the operator killed while many TestResources of a 60-resource
    stack were CREATE_IN_PROGRESS, the namespace deleted, the operator started again."""
    _, cluster = plane
    run = scoped_run
    template = wide_template(run)
    wanted = run.rng.randint(*IN_PROGRESS_AT_KILL)
    run.driver.apply(STACK, Operation("create", template))
    deadline = time.monotonic() + 60
    while (running := _in_progress(run)) < wanted and time.monotonic() < deadline:
        if not str((run.stack_body() or {}).get("status", {}).get("phase")).endswith("PROGRESS"):
            pytest.fail(run.report("create", [f"the create ended before {wanted} were running"]))
        time.sleep(0.2)
    run.operator.kill()
    run.faults.append(f"operator killed with {running} resources in progress ({run.progress()})")

    cluster.kubectl("delete", "namespace", run.namespace, "--wait=false")
    # The namespace controller deletes what holds no finalizer, the template revisions among it.
    # Its workers and informers may still be backing off from the earlier tests' outages.
    apps = AppsV1Api(run.driver.api)
    deadline = time.monotonic() + REVISIONS_GONE_TIMEOUT
    while apps.list_namespaced_controller_revision(run.namespace).items:
        if time.monotonic() > deadline:
            control, _ = plane
            status = CoreV1Api(run.driver.api).read_namespace(run.namespace).status
            conditions = [
                f"{c.type}={c.status} {c.reason}: {c.message}"
                for c in ((status.conditions if status else None) or [])
            ]
            errors = [
                f"the revisions were not deleted in {REVISIONS_GONE_TIMEOUT:g}s",
                f"namespace phase {status.phase if status else None}, conditions {conditions}",
                "kube-controller-manager log, tail:\n"
                + log_tail(control.state_dir / "kube-controller-manager.log", 40),
            ]
            pytest.fail(run.report("namespace deletion", errors))
        time.sleep(0.2)
    run.faults.append(f"namespace deleted, its revisions gone ({run.progress()})")

    run.operator.start()
    core = CoreV1Api(run.driver.api)
    deadline = time.monotonic() + NAMESPACE_GONE_TIMEOUT
    while any(
        item.metadata and item.metadata.name == run.namespace
        for item in core.list_namespace().items
    ):
        if time.monotonic() > deadline:
            stuck = [
                f"{item['metadata']['name']} ({item['spec']['resource']}) "
                f"finalizers {item['metadata'].get('finalizers')}"
                for item in run.stack_resources()
            ]
            body = run.stack_body()
            if body is not None:
                stuck.append(f"Stack finalizers {body['metadata'].get('finalizers')}")
            errors = [
                f"namespace {run.namespace} still there after {NAMESPACE_GONE_TIMEOUT:g}s",
                *stuck,
            ]
            pytest.fail(run.report("namespace deletion", errors))
        time.sleep(0.5)
    if run.operator.pid is None:
        pytest.fail(run.report("namespace deletion", ["the operator exited"]))
