"""Replica liveness on the real API server: each replica's Lease, as its peers judge it; and
what a replica says of a step that keeps failing."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, V1ConfigMap, V1ObjectMeta

from convergence.operator.app import retry_delay
from convergence.operator.controllers.stack import StackController, StackRequest
from convergence.operator.engine.plugin import Fenced, TypeRegistry, acting
from convergence.operator.kube.api import FencedApiClient, request
from convergence.operator.kube.events import EventPoster
from convergence.operator.kube.names import GROUP, STACK_RESOURCES, STACKS, VERSION
from convergence.operator.kube.replicas import LEASES, REPLICA_LABEL, ReplicaLeases, lease_name
from convergence.operator.metrics import Metrics
from convergence.operator.namespaces import Namespaces
from convergence.operator.status import Status
from convergence.operator.testing import hot


class FakeClock:
    """A monotonic clock the test moves (the Leases themselves are real)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def leases(
    api_client: ApiClient, namespace: str, clock: FakeClock, *names: str
) -> list[ReplicaLeases]:
    return [
        ReplicaLeases(api_client, namespace, name, clock=clock, duration=15, interval=5)
        for name in names
    ]


def test_a_replica_is_alive_while_its_lease_is_renewed_and_dead_once_it_is_not(
    api_client: ApiClient, namespace: str, clock: FakeClock
) -> None:
    a, b = leases(api_client, namespace, clock, "replica-a", "Replica_B")
    assert a.alive("replica-b-never-seen"), "before its first listing, no peer is judged dead"
    a.beat()
    b.beat()
    leases_path = LEASES.format(namespace=namespace)
    lease = request(api_client, "GET", f"{leases_path}/{lease_name('Replica_B')}")
    assert lease["spec"]["holderIdentity"] == "Replica_B"
    assert lease["metadata"]["labels"][REPLICA_LABEL] == "true"
    a.observe()
    assert a.alive("Replica_B")
    assert a.alive("replica-a")
    assert not a.alive("replica-never-seen"), "a replica without a Lease is dead"
    assert a.alive_replicas() == ["Replica_B", "replica-a"]

    # B renews (its renewTime changes): alive for another LEASE_DURATION by A's clock.
    clock.now += 10
    b.renew()
    a.observe()
    clock.now += 10
    assert a.alive("Replica_B")
    # B stops renewing (killed): dead LEASE_DURATION after A last saw it change.
    clock.now += 6
    a.observe()
    assert not a.alive("Replica_B")
    assert a.alive("replica-a"), "a replica is always alive to itself"


def test_a_replica_that_stops_gracefully_is_dead_to_its_peers_at_once(
    api_client: ApiClient, namespace: str, clock: FakeClock
) -> None:
    a, b = leases(api_client, namespace, clock, "replica-a", "replica-b")
    a.beat()
    b.beat()
    a.observe()
    assert a.alive("replica-b")
    b.stop()
    a.observe()
    assert not a.alive("replica-b")
    listed = request(api_client, "GET", LEASES.format(namespace=namespace))
    names = [item["metadata"]["name"] for item in listed["items"]]
    assert names == [lease_name("replica-a")]


def test_each_replica_found_dead_is_reported_once_and_again_after_it_came_back(
    api_client: ApiClient, namespace: str, clock: FakeClock
) -> None:
    """A dead replica's records hear of nothing else: its peers wake them when they find it
    dead (expired, or its Lease deleted), once per death."""
    dead: list[str] = []
    a = ReplicaLeases(
        api_client,
        namespace,
        "replica-a",
        clock=clock,
        duration=15,
        interval=5,
        on_dead=dead.append,
    )
    b, c = leases(api_client, namespace, clock, "replica-b", "replica-c")
    for replica in (a, b, c):
        replica.beat()
    a.observe()
    assert dead == []
    clock.now += 10
    c.renew()
    a.observe()
    clock.now += 6
    a.observe()
    assert dead == ["replica-b"], "b stopped renewing 16 s ago"
    a.observe()
    assert dead == ["replica-b"], "reported once"
    c.stop()
    a.observe()
    assert dead == ["replica-b", "replica-c"], "a Lease deleted is a death too"
    b.renew()
    a.observe()
    clock.now += 16
    a.observe()
    assert dead == ["replica-b", "replica-c", "replica-b"], "b came back, then died again"


def test_a_step_that_keeps_failing_backs_off_and_says_why_on_its_stack_resource(
    api_client: ApiClient, namespace: str
) -> None:
    """The delay doubles up to a minute; from the third failure in a row the StackResource's
    status and a Warning Event say why, and the error goes once a step runs again."""
    assert [retry_delay(n) for n in (1, 2, 3, 6, 7, 20)] == [2, 4, 8, 60, 60, 60]
    objects = CustomObjectsApi(api_client)
    created = objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        STACK_RESOURCES,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "StackResource",
            "metadata": {"name": "s-r-abcdefgh"},
            "spec": {"stack": "s", "resource": "r", "type": "OS::Heat::TestResource"},
        },
    )
    body = cast(dict[str, Any], created)
    namespaces = Namespaces(api_client, TypeRegistry({}))
    namespaces.cache(namespace).observe(STACK_RESOURCES, body)
    status = Status(namespaces, EventPoster(api_client), Metrics())
    message = "the step keeps failing (retried with a growing delay): NotFound: template 'x'"
    status.report_step_error(namespace, "s-r-abcdefgh", message)

    def read() -> dict[str, Any]:
        return cast(
            dict[str, Any],
            objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, STACK_RESOURCES, "s-r-abcdefgh"
            ),
        )

    assert read()["status"]["stepError"] == message
    events = CoreV1Api(api_client).list_namespaced_event(namespace).items
    assert [(e.reason, e.message) for e in events] == [("StepFailing", message)]
    namespaces.cache(namespace).observe(STACK_RESOURCES, read())
    status.report_step_error(namespace, "s-r-abcdefgh", None)
    assert "stepError" not in read().get("status", {})


def test_a_replica_acts_only_while_its_own_lease_is_fresh_and_a_break_starts_a_new_period(
    api_client: ApiClient, namespace: str, clock: FakeClock
) -> None:
    """Peers judge a replica dead `duration` (15 s) after they saw its renewal; it fences
    itself off `interval` (5 s) before that, and a renewal after a break (a frozen process
    resumed) starts a new period, so that a step begun before the break acts on nothing."""
    a, b = leases(api_client, namespace, clock, "replica-a", "replica-b")
    assert a.fence() is not None, "alone (no Lease listed yet), it may act"
    b.renew()
    a.observe()
    assert a.fence() is None, "with a peer, not before its first renewal"
    a.renew()
    first = a.fence()
    assert first is not None
    assert not a.resumed(), "a first period is no break"
    clock.now += 9.9
    assert a.fence() == first
    a.renew()
    clock.now += 9.9
    assert a.fence() == first, "renewed in time: the same period"
    clock.now += 0.2
    assert a.fence() is None, "10.1 s after its last renewal: its peers may soon find it dead"
    a.renew()
    assert a.fence() not in (None, first), "back after a break: a new period"
    assert a.resumed(), "its caches may be from before the break"


def test_a_replica_alone_goes_on_acting_when_it_cannot_renew_its_lease(
    api_client: ApiClient, namespace: str, clock: FakeClock
) -> None:
    """With no other replica's Lease in sight nobody can take its actions over: a single
    operator whose Lease namespace is being deleted must still finish its stacks there."""
    a, b = leases(api_client, namespace, clock, "replica-a", "replica-b")
    a.beat()
    clock.now += 30
    a.observe()
    assert not a.fresh()
    assert a.fence() is not None, "alone: it goes on"
    b.beat()
    a.observe()
    assert a.fence() is None, "a peer may take its actions over: it waits for a renewal"


def test_a_replica_that_saw_no_peer_long_ago_does_not_act_on_that_after_a_freeze(
    api_client: ApiClient, namespace: str, clock: FakeClock
) -> None:
    """Two replicas started together: A's first listing came before B's Lease, so A saw
    nobody. A is frozen past its Lease; B, which saw A's renewal, counts A dead and takes
    its actions over. A, resumed, must not act on the old listing's word that it is
    alone (its steps wrote over B's in the fault test before this)."""
    a, b = leases(api_client, namespace, clock, "replica-a", "replica-b")
    a.beat()
    b.beat()
    assert a.fence() is not None, "renewed just now"
    clock.now += 9.9
    assert a.fence() is not None, "its listing and its renewal are still recent"
    b.observe()
    clock.now += 0.2
    assert a.fence() is None, "frozen past its Lease: a peer may have started meanwhile"
    clock.now += 15
    b.observe()
    assert not b.alive("replica-a"), "B counts A dead by now"
    a.observe()
    assert a.fence() is None, "a fresh listing shows B: A waits for a renewal"
    a.beat()
    assert a.fence() is not None


def test_a_replica_never_moves_a_stacks_observed_generation_back(
    api_client: ApiClient, namespace: str
) -> None:
    """A replica that read the Stack at generation 1 and was frozen while another took up
    generation 2 writes what it has, but not observedGeneration 1 over 2."""
    objects = CustomObjectsApi(api_client)
    objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, STACKS, hot.stack("s", hot.template({}))
    )
    controller = StackController(Namespaces(api_client, TypeRegistry({})), cast(Status, None))
    stale = StackRequest.of(
        cast(
            dict[str, Any],
            objects.get_namespaced_custom_object(GROUP, VERSION, namespace, STACKS, "s"),
        )
    )

    def observed() -> Any:
        body = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, STACKS, "s")
        return cast(dict[str, Any], body).get("status", {})

    newer: dict[str, Any] = {"observedGeneration": 2, "statusReason": "newer"}
    controller.observe_generation(stale, newer)
    assert newer == {}, "written, so nothing is left for kopf's patch"
    assert (observed()["observedGeneration"], observed()["statusReason"]) == (2, "newer")

    older: dict[str, Any] = {"observedGeneration": 1, "statusReason": "older"}
    controller.observe_generation(stale, older)
    assert older == {"statusReason": "older"}, "the rest is left to kopf's patch"
    assert observed()["observedGeneration"] == 2


def test_a_write_sent_from_a_fenced_off_step_is_refused_before_it_leaves(
    api_client: ApiClient, namespace: str
) -> None:
    """The operator's client checks a step's fence as each write leaves: a fenced-off
    step's writes never reach the API; its reads and dry runs do, and so does every
    write outside a step (another thread, the engine's own bookkeeping)."""
    core = CoreV1Api(FencedApiClient(api_client.configuration))

    def config_map(name: str) -> V1ConfigMap:
        return V1ConfigMap(metadata=V1ObjectMeta(name=name), data={"a": "1"})

    body = config_map("fenced")
    elsewhere: list[V1ConfigMap] = []

    def other_thread() -> None:
        elsewhere.append(core.create_namespaced_config_map(namespace, config_map("free")))

    with acting(lambda: False):
        with pytest.raises(Fenced):
            core.create_namespaced_config_map(namespace, body)
        core.create_namespaced_config_map(namespace, body, dry_run="All")
        listed = core.list_namespaced_config_map(namespace, field_selector="metadata.name=fenced")
        assert listed.items == [], "refused, and the dry run made nothing"
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert len(elsewhere) == 1, "the fence is the step's, not the process's"
    with acting(lambda: True):
        core.create_namespaced_config_map(namespace, body)
    core.patch_namespaced_config_map("fenced", namespace, {"data": {"a": "2"}})
    assert core.read_namespaced_config_map("fenced", namespace).data == {"a": "2"}
