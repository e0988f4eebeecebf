"""The Kubernetes store keeps the engine's Store contract on the real API server, as memory does.

The contract tests run on both stores (`kit.store` is an InMemoryStore or a
KubernetesStore in a fresh namespace); the Kubernetes-only tests check what
users and the handlers see: the objects, their owners, labels and status
layout, and the ConfigMaps of ConfigMapReality.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.graph import Graph, cleanup_node, update_node
from convergence.operator.engine.plugin import PhysicalRecord, ResourceContext, StackRef
from convergence.operator.engine.store import (
    COMPLETE,
    CREATE,
    FAILED,
    IN_PROGRESS,
    UPDATE,
    AlreadyExists,
    Conflict,
    InMemoryStore,
    NodeData,
    NotFound,
    PendingAction,
    ResourceRecord,
    StackRecord,
    Store,
    StoreError,
    SyncEntry,
    TemplateRevision,
)
from convergence.operator.kube import api as api_module
from convergence.operator.kube import graphs as graphs_module
from convergence.operator.kube.api import NamespacedApi, list_pages
from convergence.operator.kube.cache import ObjectCache
from convergence.operator.kube.graphs import shard_of
from convergence.operator.kube.names import GROUP, STACK_RESOURCES, STACKS, VERSION
from convergence.operator.kube.reality import ConfigMapReality, configmap_name
from convergence.operator.kube.revisions import TemplateRevisions
from convergence.operator.kube.store import KubernetesStore
from convergence.operator.testing import hot
from convergence.reconcilers.heat_test_resource import TestResource

TEMPLATE = hot.template({"first": {"type": "OS::Heat::None"}})


@dataclass
class StoreKit:
    """A store under test and how to make a stack it can initialise."""

    store: Store
    make_stack_object: Callable[[str], None]
    api: ApiClient | None = None
    namespace: str = ""

    def new_stack(self, name: str = "hello", **fields: Any) -> StackRecord:
        """A stack initialised in the store (its Stack object made first on Kubernetes)."""
        self.make_stack_object(name)
        return self.store.create_stack(StackRecord(name=name, uid=new_id(), traversal="", **fields))

    def new_resource(self, stack: str, name: str = "first", **fields: Any) -> ResourceRecord:
        """A new INIT record of `stack`."""
        return self.store.create_resource(
            ResourceRecord(id=new_id(), stack=stack, name=name, type="OS::Heat::None", **fields)
        )


def new_id() -> str:
    return str(uuid.uuid4())


def kubernetes_kit(api: ApiClient, namespace: str) -> StoreKit:
    def make_stack_object(name: str) -> None:
        create_stack_object(api, namespace, name)

    return StoreKit(KubernetesStore(api, namespace), make_stack_object, api, namespace)


def create_stack_object(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    body = hot.stack(name, TEMPLATE)
    created = CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, STACKS, body
    )
    assert isinstance(created, dict)
    return created


def read_object(api: ApiClient, namespace: str, plural: str, name: str) -> dict[str, Any]:
    got = CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name
    )
    assert isinstance(got, dict)
    return got


@pytest.fixture(
    params=["memory", pytest.param("kubernetes", marks=pytest.mark.controlplane)],
)
def kit(request: pytest.FixtureRequest) -> Iterator[StoreKit]:
    """Each contract test runs on the in-memory store and on the Kubernetes store."""
    if request.param == "memory":
        yield StoreKit(InMemoryStore(), lambda name: None)
        return
    api: ApiClient = request.getfixturevalue("api_client")
    namespace: str = request.getfixturevalue("namespace")
    yield kubernetes_kit(api, namespace)
    release_objects(api, namespace)


@pytest.fixture
def kube(api_client: ApiClient, namespace: str) -> Iterator[StoreKit]:
    """The Kubernetes store alone, for what only Kubernetes has."""
    yield kubernetes_kit(api_client, namespace)
    release_objects(api_client, namespace)


def release_objects(api: ApiClient, namespace: str) -> None:
    """Take the finalizers off the test's Stacks and StackResources before its namespace goes.

    The records these tests write by hand (a lock with no action, a stack with
    no template) are no state an engine leaves; the operators of later test
    modules, which serve every namespace, must not find them still there,
    held by their finalizers while the namespace is deleted.
    """
    objects = CustomObjectsApi(api)
    for plural in (STACK_RESOURCES, STACKS):
        listed = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        assert isinstance(listed, dict)
        for item in listed.get("items", []):
            if item["metadata"].get("finalizers"):
                with contextlib.suppress(ApiException):
                    objects.patch_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        plural,
                        item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                    )


def kube_store(kit: StoreKit) -> KubernetesStore:
    assert isinstance(kit.store, KubernetesStore)
    return kit.store


def entry(traversal: str, sender: str, **attributes: Any) -> SyncEntry:
    return SyncEntry(traversal, NodeData(sender, f"name-{sender}", f"ref-{sender}", attributes))


def in_parallel(*calls: Callable[[], object]) -> list[BaseException | None]:
    """Run the calls at once (released together); the exception each raised, or None."""
    start = threading.Barrier(len(calls))
    outcomes: list[BaseException | None] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        start.wait()
        try:
            call()
        except BaseException as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


# -- contract: stacks ----------------------------------------------------------------------------


def test_stack_record_round_trips_every_field(kit: StoreKit) -> None:
    stack = kit.new_stack(disable_rollback=False, timeout=90.5)
    assert stack.version == 1, "a new stack is stored at version 1"
    assert kit.store.get_stack("hello") == stack

    a, b = new_id(), new_id()
    graph = Graph(
        {
            update_node(a): [],
            update_node(b): [update_node(a)],
            cleanup_node(a): [update_node(a), cleanup_node(b)],
        }
    )
    wanted = replace(
        stack,
        traversal=new_id(),
        template="rev-2",
        prev_template="rev-1",
        action=UPDATE,
        status=IN_PROGRESS,
        status_reason="Stack UPDATE started",
        ready=True,
        graph=graph,
        disable_rollback=True,
        timeout=None,
        started_at=1_767_225_600.25,
        outputs={"url": "http://x", "nested": {"list": [1, None, "z"]}, "none": None},
    )
    stored = kit.store.update_stack(wanted)
    assert stored == replace(wanted, version=2), "update_stack must return what it stored"
    assert kit.store.get_stack("hello") == stored, "a stack read back differs from the one stored"

    # Optional fields go back to None, floats that are whole stay floats.
    cleared = replace(stored, template=None, prev_template=None, timeout=60.0, started_at=5.0)
    assert kit.store.update_stack(cleared) == replace(cleared, version=3)
    assert kit.store.get_stack("hello") == replace(cleared, version=3)


def test_the_current_traversal_is_the_one_stored_now(kit: StoreKit) -> None:
    assert not kit.store.is_current("nope", "t1")
    stack = kit.new_stack()
    assert not kit.store.is_current("hello", "t1")
    first = kit.store.update_stack(replace(stack, traversal="t1"))
    assert kit.store.is_current("hello", "t1")
    kit.store.update_stack(replace(first, traversal="t2"))
    assert kit.store.is_current("hello", "t2")
    assert not kit.store.is_current("hello", "t1")


def test_a_traversal_with_a_graph_is_current_while_its_sync_map_exists(kit: StoreKit) -> None:
    """The fence reads the traversal's own small ConfigMap, and the Stack when it is gone."""
    stack = kit.new_stack()
    a = new_id()
    first = kit.store.update_stack(
        replace(stack, traversal="t1", graph=Graph({update_node(a): []}))
    )
    assert kit.store.is_current("hello", "t1")
    second = kit.store.update_stack(
        replace(first, traversal="t2", graph=Graph({update_node(a): []}))
    )
    assert kit.store.is_current("hello", "t2")
    assert not kit.store.is_current("hello", "t1"), "the old traversal's map went with it"
    if isinstance(kit.store, KubernetesStore):
        assert kit.api is not None
        # Its sync map lost (deleted by hand): the Stack itself still says which is current.
        CoreV1Api(kit.api).delete_namespaced_config_map("sync-t2", kit.namespace)
        assert kit.store.is_current("hello", "t2")
        assert not kit.store.is_current("hello", "t3")
    assert second.traversal == "t2"


def test_create_stack_twice_is_already_exists(kit: StoreKit) -> None:
    kit.new_stack()
    with pytest.raises(AlreadyExists):
        kit.store.create_stack(StackRecord(name="hello", uid=new_id(), traversal=""))


def test_unknown_stack_is_none_or_not_found(kit: StoreKit) -> None:
    assert kit.store.get_stack("nope") is None
    with pytest.raises(NotFound):
        kit.store.update_stack(StackRecord(name="nope", uid="u", traversal="t", version=1))
    with pytest.raises(NotFound):
        kit.store.push_stack_sync_point("nope", "update:x", SyncEntry("t"))
    assert kit.store.stack_sync_point("nope") == {}


def test_stale_stack_version_conflicts(kit: StoreKit) -> None:
    stack = kit.new_stack()
    kit.store.update_stack(replace(stack, traversal="t1"))
    with pytest.raises(Conflict):
        kit.store.update_stack(replace(stack, traversal="t2"))
    current = kit.store.get_stack("hello")
    assert current is not None
    assert current.traversal == "t1", "a lost compare-and-set must not write anything"


def test_concurrent_stack_writes_of_one_version_let_exactly_one_win(kit: StoreKit) -> None:
    stack = kit.new_stack()
    calls = [
        (lambda t=t: kit.store.update_stack(replace(stack, traversal=t)))
        for t in ("a", "b", "c", "d", "e")
    ]
    outcomes = in_parallel(*calls)
    assert sum(o is None for o in outcomes) == 1, f"exactly one write may win: {outcomes}"
    assert all(isinstance(o, Conflict) for o in outcomes if o is not None), outcomes
    current = kit.store.get_stack("hello")
    assert current is not None
    assert current.version == 2


def test_stack_sync_point_keeps_every_concurrent_push(kit: StoreKit) -> None:
    stack = kit.new_stack()
    senders = [f"update:{new_id()}" for _ in range(12)]
    outcomes = in_parallel(
        *[
            (lambda s=s: kit.store.push_stack_sync_point("hello", s, SyncEntry(stack.traversal)))
            for s in senders
        ]
    )
    assert outcomes == [None] * len(senders)
    assert set(kit.store.stack_sync_point("hello")) == set(senders), "a concurrent push was lost"
    current = kit.store.get_stack("hello")
    assert current is not None
    assert current.version == stack.version, "a push must not change the stack's version"


def test_stack_push_returns_the_whole_sync_point(kit: StoreKit) -> None:
    kit.new_stack()
    kit.store.push_stack_sync_point("hello", "update:a", SyncEntry("t"))
    got = kit.store.push_stack_sync_point("hello", "cleanup:b", SyncEntry("t"))
    assert got == {"update:a": SyncEntry("t"), "cleanup:b": SyncEntry("t")}


# -- contract: templates -------------------------------------------------------------------------


def test_template_revision_round_trips(kit: StoreKit) -> None:
    kit.new_stack()
    revision = TemplateRevision(new_id(), "hello", TEMPLATE, {"greeting": "hi", "n": 3})
    kit.store.put_template(revision)
    assert kit.store.get_template(revision.id) == revision
    with pytest.raises(AlreadyExists):
        kit.store.put_template(replace(revision, parameters={}))
    assert kit.store.get_template(revision.id) == revision, "a revision must never change"
    with pytest.raises(NotFound):
        kit.store.get_template(new_id())


# -- contract: resources -------------------------------------------------------------------------


def test_resource_record_round_trips_every_field(kit: StoreKit) -> None:
    kit.new_stack()
    old = kit.new_resource("hello")
    record = ResourceRecord(
        id=new_id(),
        stack="hello",
        name="first",
        type="OS::Heat::TestResource",
        created_at=1_767_225_600.5,
        template="rev-1",
        replaces=old.id,
    )
    created = kit.store.create_resource(record)
    assert created == replace(record, version=0), "create_resource must return what it stored"
    assert kit.store.get_resource(record.id) == created

    wanted = replace(
        created,
        action=UPDATE,
        status=FAILED,
        status_reason="ValueError: Test Resource failed first",
        requires=frozenset({old.id, new_id()}),
        replaced_by=new_id(),
        resource_id="hello-first-abcdefgh",
        reference_id="hello-first-abcdefgh",
        attributes={"output": "x", "none": None, "deep": {"a": [1, {"b": None}]}},
        properties={"value": "x", "wait_secs": 0, "action_wait_secs": {"create": 1.5}},
        deletion_policy="Retain",
        data={"value": "x"},
        lock="t1",
        pending=PendingAction(
            action=CREATE,
            traversal="t1",
            template="rev-2",
            properties={},
            requires=frozenset({old.id}),
            deletion_policy="Retain",
            started=True,
            cookie={"started_at": 12.0, "wait_secs": -1},
        ),
        converged="t0",
    )
    stored = kit.store.update_resource(wanted)
    assert stored == replace(wanted, version=1), "update_resource must return what it stored"
    assert kit.store.get_resource(record.id) == stored, "a record read back differs"

    # None and empty are different things: never created vs created without properties.
    cleared = replace(
        stored,
        action=CREATE,
        status=COMPLETE,
        replaced_by=None,
        resource_id=None,
        reference_id=None,
        attributes={},
        properties={},
        lock=None,
        pending=PendingAction(action=CREATE, traversal="t2", cookie=None),
        converged=None,
        template=None,
    )
    assert kit.store.update_resource(cleared) == replace(cleared, version=2)
    assert kit.store.get_resource(record.id) == replace(cleared, version=2)


def test_create_resource_twice_is_already_exists(kit: StoreKit) -> None:
    kit.new_stack()
    record = kit.new_resource("hello")
    with pytest.raises(AlreadyExists):
        kit.store.create_resource(replace(record, version=0))


def test_unknown_resource_is_none_or_not_found(kit: StoreKit) -> None:
    kit.new_stack()
    ghost = ResourceRecord(id=new_id(), stack="hello", name="x", type="T", version=1)
    assert kit.store.get_resource(ghost.id) is None
    assert kit.store.sync_point(ghost.id, True) == {}
    with pytest.raises(NotFound):
        kit.store.update_resource(ghost)
    with pytest.raises(NotFound):
        kit.store.delete_resource(ghost)
    with pytest.raises(NotFound):
        kit.store.push(ghost.id, True, "update:a", SyncEntry("t"))


def test_stale_resource_version_conflicts_on_update_and_delete(kit: StoreKit) -> None:
    kit.new_stack()
    record = kit.new_resource("hello")
    kit.store.update_resource(replace(record, lock="t1"))
    with pytest.raises(Conflict):
        kit.store.update_resource(replace(record, lock="t2"))
    with pytest.raises(Conflict):
        kit.store.delete_resource(record)
    current = kit.store.get_resource(record.id)
    assert current is not None, "a delete that lost its compare-and-set must not delete"
    assert current.lock == "t1", "an update that lost its compare-and-set must not write"


def test_concurrent_resource_writes_of_one_version_let_exactly_one_win(kit: StoreKit) -> None:
    kit.new_stack()
    record = kit.new_resource("hello")

    def lock_by(traversal: str) -> Callable[[], object]:
        return lambda: kit.store.update_resource(replace(record, lock=traversal))

    calls = [lock_by(t) for t in "abcde"]
    calls.append(lambda: kit.store.delete_resource(record))
    outcomes = in_parallel(*calls)
    assert sum(o is None for o in outcomes) == 1, f"exactly one write may win: {outcomes}"
    # Losers see a changed record, or none when the delete won.
    assert all(isinstance(o, Conflict | NotFound) for o in outcomes if o is not None), outcomes


def test_delete_resource_by_compare_and_set(kit: StoreKit) -> None:
    kit.new_stack()
    record = kit.new_resource("hello")
    kit.store.push(record.id, True, "update:a", SyncEntry("t"))
    # The push changed the object but not the version: the delete still holds.
    kit.store.delete_resource(record)
    assert kit.store.get_resource(record.id) is None
    assert kit.store.list_resources("hello") == []
    assert kit.store.sync_point(record.id, True) == {}, "sync points go with the record"
    with pytest.raises(NotFound):
        kit.store.delete_resource(record)


def test_list_resources_gives_the_records_of_one_stack(kit: StoreKit) -> None:
    kit.new_stack("hello")
    kit.new_stack("other")
    mine = {kit.new_resource("hello", name).id for name in ("first", "second", "third")}
    theirs = kit.new_resource("other", "first")
    assert {r.id for r in kit.store.list_resources("hello")} == mine
    assert kit.store.list_resources("other") == [theirs]
    assert kit.store.list_resources("nobody") == []


def test_concurrent_pushes_from_many_senders_are_all_kept(kit: StoreKit) -> None:
    kit.new_stack()
    record = kit.new_resource("hello")
    senders = [f"update:{new_id()}" for _ in range(12)]
    outcomes = in_parallel(
        *[
            (lambda s=s: kit.store.push(record.id, True, s, entry("t", s, output=s)))
            for s in senders
        ]
    )
    assert outcomes == [None] * len(senders)
    got = kit.store.sync_point(record.id, True)
    assert set(got) == set(senders), f"lost pushes: {set(senders) - set(got)}"
    assert all(got[s] == entry("t", s, output=s) for s in senders)
    assert kit.store.sync_point(record.id, False) == {}, "update and cleanup are separate"


def test_push_keeps_the_version_so_a_workers_compare_and_set_still_holds(kit: StoreKit) -> None:
    kit.new_stack()
    record = kit.new_resource("hello")
    kit.store.push(record.id, True, "update:a", entry("t", "a"))
    kit.store.push(record.id, False, "cleanup:b", SyncEntry("t"))
    current = kit.store.get_resource(record.id)
    assert current == record, "a push must not change the record or its version"
    updated = kit.store.update_resource(replace(record, lock="t"))
    assert updated.version == record.version + 1
    assert set(kit.store.sync_point(record.id, True)) == {"update:a"}, "a write lost a push"


def test_push_replaces_the_senders_previous_entry_whole(kit: StoreKit) -> None:
    kit.new_stack()
    record = kit.new_resource("hello")
    kit.store.push(record.id, True, "update:a", entry("t1", "a", x=1, m={"k": 1, "j": 2}))
    newer = SyncEntry("t2", NodeData("a", "name-a", None, {"m": {"k": 3}}))
    got = kit.store.push(record.id, True, "update:a", newer)
    assert got == {"update:a": newer}, "attributes of an older push survived a newer one"
    assert kit.store.sync_point(record.id, True) == {"update:a": newer}


# -- Kubernetes: objects as users and handlers see them ------------------------------------------


@pytest.mark.controlplane
def test_create_stack_initialises_the_users_stack_object(kube: StoreKit) -> None:
    assert kube.api is not None
    store = kube_store(kube)
    with pytest.raises(NotFound):
        store.create_stack(StackRecord(name="hello", uid="u", traversal=""))
    create_stack_object(kube.api, kube.namespace, "hello")
    assert store.get_stack("hello") is None, "a Stack the engine never wrote has no record"

    # A handler may have written conditions first; they stay.
    condition = {
        "type": "Ready",
        "status": "False",
        "reason": "Pending",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    CustomObjectsApi(kube.api).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        kube.namespace,
        STACKS,
        "hello",
        {"status": {"conditions": [condition]}},
        _content_type="application/merge-patch+json",
    )
    stack = store.create_stack(StackRecord(name="hello", uid="u", traversal="t0"))
    body = read_object(kube.api, kube.namespace, STACKS, "hello")
    assert body["status"]["conditions"] == [condition], "the store must leave conditions alone"
    assert body["status"]["phase"] == "INIT_COMPLETE"
    assert body["status"]["version"] == 1
    assert body["status"]["syncPoints"] == {"complete": {}}

    store.update_stack(replace(stack, action=CREATE, status=IN_PROGRESS, status_reason="go"))
    body = read_object(kube.api, kube.namespace, STACKS, "hello")
    assert body["status"]["phase"] == "CREATE_IN_PROGRESS"
    assert body["status"]["statusReason"] == "go"
    assert body["status"]["conditions"] == [condition], "the store must leave conditions alone"


@pytest.mark.controlplane
def test_a_new_traversal_starts_with_an_empty_stack_sync_point(kube: StoreKit) -> None:
    stack = kube.new_stack()
    stack = kube.store.update_stack(replace(stack, traversal="t1"))
    kube.store.push_stack_sync_point("hello", "update:a", SyncEntry("t1"))
    stack = kube.store.update_stack(replace(stack, ready=True))
    assert set(kube.store.stack_sync_point("hello")) == {"update:a"}, "same traversal: kept"
    kube.store.update_stack(replace(stack, traversal="t2"))
    assert kube.store.stack_sync_point("hello") == {}, "entries of older traversals are dropped"


@pytest.mark.controlplane
def test_roots_push_to_their_traversals_sync_map_not_to_the_stack(kube: StoreKit) -> None:
    """With a graph stored, the stack sync point is a ConfigMap of the traversal."""
    assert kube.api is not None
    store = kube_store(kube)
    core = CoreV1Api(kube.api)
    a, b = new_id(), new_id()
    graph = Graph({update_node(a): [], update_node(b): []})
    stack = store.update_stack(replace(kube.new_stack(), traversal="t1", graph=graph))
    before = read_object(kube.api, kube.namespace, STACKS, "hello")["metadata"]["resourceVersion"]

    senders = [f"update:{new_id()}" for _ in range(8)]
    outcomes = in_parallel(
        *[(lambda s=s: store.push_stack_sync_point("hello", s, SyncEntry("t1"))) for s in senders]
    )
    assert outcomes == [None] * len(senders)
    assert set(store.stack_sync_point("hello")) == set(senders), "a concurrent push was lost"
    after = read_object(kube.api, kube.namespace, STACKS, "hello")["metadata"]["resourceVersion"]
    assert after == before, "a root's push must not write the Stack"
    data = core.read_namespaced_config_map("sync-t1", kube.namespace).data or {}
    assert {k for k in data if k != "traversal"} == {s.replace(":", "_") for s in senders}
    # Another process (a restarted operator) reads the same sync point.
    other = KubernetesStore(kube.api, kube.namespace, ObjectCache())
    assert set(other.stack_sync_point("hello")) == set(senders)

    # A new traversal drops the old one's map and starts with an empty one.
    store.update_stack(replace(stack, traversal="t2", graph=graph))
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("sync-t1", kube.namespace)
    assert store.stack_sync_point("hello") == {}
    # A stale root's push is kept nowhere that counts.
    store.push_stack_sync_point("hello", "update:late", SyncEntry("t1"))
    assert {s: e.traversal for s, e in store.stack_sync_point("hello").items()} == {
        "update:late": "t1"
    }

    store.graphs.drop_all("hello")
    left = core.list_namespaced_config_map(kube.namespace, label_selector="convergence.dev/stack")
    assert [item.metadata.name for item in left.items if item.metadata] == []


@pytest.mark.controlplane
def test_a_sync_point_of_many_roots_is_spread_over_shards_and_read_whole(
    kube: StoreKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert kube.api is not None
    monkeypatch.setattr(graphs_module, "SHARD_ENTRIES", 2)
    store = kube_store(kube)
    core = CoreV1Api(kube.api)
    ids = [new_id() for _ in range(7)]
    graph = Graph({update_node(i): [] for i in ids})
    stack = store.update_stack(replace(kube.new_stack(), traversal="t1", graph=graph))
    fence = core.read_namespaced_config_map("sync-t1", kube.namespace).data or {}
    assert fence == {"traversal": "t1", "shards": "4"}

    senders = [update_node(i).key() for i in ids]
    outcomes = in_parallel(
        *[(lambda s=s: store.push_stack_sync_point("hello", s, SyncEntry("t1"))) for s in senders]
    )
    assert outcomes == [None] * len(senders)
    assert set(store.stack_sync_point("hello")) == set(senders), "a concurrent push was lost"
    fence = core.read_namespaced_config_map("sync-t1", kube.namespace).data or {}
    assert set(fence) == {"traversal", "shards"}, "the map that says 'current' stays small"
    held = [
        set(core.read_namespaced_config_map(f"sync-t1-{i}", kube.namespace).data or {})
        for i in range(4)
    ]
    assert set().union(*held) - {"traversal", "shards"} == {s.replace(":", "_") for s in senders}
    assert sum(1 for keys in held if keys - {"traversal", "shards"}) > 1, "not spread"
    # Another process (a restarted operator) reads every shard.
    other = KubernetesStore(kube.api, kube.namespace, ObjectCache())
    assert set(other.stack_sync_point("hello")) == set(senders)

    # A new traversal drops the old one's maps, its shards too.
    store.update_stack(replace(stack, traversal="t2", graph=graph))
    left = core.list_namespaced_config_map(kube.namespace, label_selector="convergence.dev/graph")
    names = sorted(str(item.metadata.name) for item in left.items if item.metadata)
    assert not [n for n in names if n.startswith("sync-t1")], names
    store.graphs.drop_all("hello")


@pytest.mark.controlplane
def test_the_last_root_to_push_sees_every_shard_though_its_process_knew_them_empty(
    kube: StoreKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes, each knowing the other's shard as it was before either pushed: the
    one that pushes last must find the sync point whole, or no one finishes the stack."""
    assert kube.api is not None
    monkeypatch.setattr(graphs_module, "SHARD_ENTRIES", 1)
    first = update_node(new_id())
    second = update_node(new_id())
    while shard_of(second.key(), 2) == shard_of(first.key(), 2):
        second = update_node(new_id())
    graph = Graph({first: [], second: []})
    mine = kube_store(kube)
    mine.update_stack(replace(kube.new_stack(), traversal="t1", graph=graph))
    theirs = KubernetesStore(kube.api, kube.namespace, ObjectCache())
    for store in (mine, theirs):
        assert store.stack_sync_point("hello") == {}, "each knows both shards empty"

    mine.push_stack_sync_point("hello", first.key(), SyncEntry("t1"))
    assert set(mine.stack_sync_point("hello")) == {first.key()}
    theirs.push_stack_sync_point("hello", second.key(), SyncEntry("t1"))
    assert set(theirs.stack_sync_point("hello")) == {first.key(), second.key()}
    mine.graphs.drop_all("hello")


@pytest.mark.controlplane
def test_stack_resource_object_layout(kube: StoreKit) -> None:
    assert kube.api is not None
    kube.new_stack()
    stack_uid = read_object(kube.api, kube.namespace, STACKS, "hello")["metadata"]["uid"]
    old = kube.new_resource("hello", "web")
    record = kube.store.create_resource(
        ResourceRecord(id=new_id(), stack="hello", name="web", type="T", replaces=old.id)
    )
    record = kube.store.update_resource(
        replace(record, action=CREATE, status=COMPLETE, resource_id="phys-1")
    )
    body = read_object(kube.api, kube.namespace, STACK_RESOURCES, record.id)
    assert body["spec"] == {
        "stack": "hello",
        "resource": "web",
        "type": "T",
        "replaces": old.id,
        # The record as first written: it reads so until the engine writes its status.
        "createdAt": 0,
        "deletionPolicy": "Delete",
    }
    assert body["metadata"]["labels"]["convergence.dev/stack"] == "hello"
    assert body["metadata"]["labels"]["convergence.dev/resource"] == "web"
    [owner] = body["metadata"]["ownerReferences"]
    assert (owner["apiVersion"], owner["kind"], owner["name"], owner["uid"]) == (
        f"{GROUP}/{VERSION}",
        "Stack",
        "hello",
        stack_uid,
    ), "the garbage collector deletes the record with its Stack only if this is exact"
    status = body["status"]
    assert status["phase"] == "CREATE_COMPLETE", "kubectl's Status column reads status.phase"
    assert status["resourceId"] == "phys-1", "kubectl's Physical column reads status.resourceId"
    assert status["version"] == 1, "created without status, then written once"
    assert "replacedBy" not in status, "an absent value is no field, not a null"
    assert status["syncPoints"] == {"update": {}, "cleanup": {}}


@pytest.mark.controlplane
def test_logical_names_that_labels_refuse_still_list(kube: StoreKit) -> None:
    kube.new_stack()
    long_name = "A resource name with spaces, and much longer than a label may be" * 2
    record = kube.new_resource("hello", long_name)
    assert [r.name for r in kube.store.list_resources("hello")] == [long_name]
    assert kube.store.get_resource(record.id) == record


@pytest.mark.controlplane
def test_a_list_longer_than_a_page_comes_whole_from_one_snapshot(
    kube: StoreKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert kube.api is not None
    kube.new_stack()
    made = {kube.new_resource("hello", f"r{i}").id for i in range(7)}
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{kube.namespace}/{STACK_RESOURCES}"
    pages = list(list_pages(kube.api, path, limit=3))
    assert [len(page["items"]) for page in pages] == [3, 3, 1]
    versions = {page["metadata"]["resourceVersion"] for page in pages}
    assert len(versions) == 1, f"every page is of the first one's snapshot: {versions}"
    assert {item["metadata"]["name"] for page in pages for item in page["items"]} == made
    # The store lists a stack's records page by page, and gets every page.
    monkeypatch.setattr(api_module, "LIST_PAGE", 2)
    assert {r.id for r in kube.store.list_resources("hello")} == made


@pytest.mark.controlplane
def test_record_ids_must_be_object_names(kube: StoreKit) -> None:
    kube.new_stack()
    with pytest.raises(ValueError, match="DNS-1123"):
        kube.store.create_resource(
            ResourceRecord(id="Not_A_Name", stack="hello", name="x", type="T")
        )
    with pytest.raises(ValueError, match="DNS-1123"):
        kube.store.put_template(TemplateRevision("Not_A_Name", "hello", TEMPLATE))
    assert kube.store.get_resource("Not_A_Name") is None


@pytest.mark.controlplane
def test_a_stack_resource_whose_status_was_never_written_is_an_init_record(
    kube: StoreKit,
) -> None:
    # What a worker that died between creating the object and writing its status leaves.
    assert kube.api is not None
    kube.new_stack()
    orphan_id = new_id()
    CustomObjectsApi(kube.api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        kube.namespace,
        STACK_RESOURCES,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "StackResource",
            "metadata": {"name": orphan_id, "labels": {"convergence.dev/stack": "hello"}},
            "spec": {"stack": "hello", "resource": "first", "type": "T"},
        },
    )
    [orphan] = kube.store.list_resources("hello")
    assert orphan == ResourceRecord(id=orphan_id, stack="hello", name="first", type="T")
    kube.store.push(orphan_id, True, "update:a", SyncEntry("t"))
    assert set(kube.store.sync_point(orphan_id, True)) == {"update:a"}
    written = kube.store.update_resource(replace(orphan, lock="t"))
    assert written == replace(orphan, lock="t", version=1)
    with pytest.raises(Conflict):
        kube.store.update_resource(replace(orphan, lock="u"))
    assert set(kube.store.sync_point(orphan_id, True)) == {"update:a"}, "first write lost a push"
    kube.store.delete_resource(written)
    assert kube.store.get_resource(orphan_id) is None


@pytest.mark.controlplane
def test_template_revisions_are_immutable_controller_revisions_owned_by_the_stack(
    kube: StoreKit,
) -> None:
    assert kube.api is not None
    kube.new_stack()
    stack_uid = read_object(kube.api, kube.namespace, STACKS, "hello")["metadata"]["uid"]
    first = TemplateRevision(new_id(), "hello", TEMPLATE, {"p": "1"})
    second = TemplateRevision(new_id(), "hello", {**TEMPLATE, "description": "2"})
    kube.store.put_template(first)
    kube.store.put_template(second)

    apps = AppsV1Api(kube.api)
    stored = {
        r.metadata.name: r
        for r in apps.list_namespaced_controller_revision(
            kube.namespace, label_selector="convergence.dev/stack=hello"
        ).items
        if r.metadata is not None
    }
    assert set(stored) == {first.id, second.id}
    assert [stored[first.id].revision, stored[second.id].revision] == [1, 2], "numbers increase"
    assert stored[first.id].data == {"template": TEMPLATE}, "values are not for every viewer"
    values = CoreV1Api(kube.api).read_namespaced_secret(first.id, kube.namespace)
    assert values.immutable is True
    assert json.loads(base64.b64decode((values.data or {})["values.json"])) == {
        "parameters": {"p": "1"}
    }
    metadata = stored[first.id].metadata
    assert metadata is not None
    [owner] = metadata.owner_references or []
    assert (owner.api_version, owner.kind, owner.name, owner.uid) == (
        f"{GROUP}/{VERSION}",
        "Stack",
        "hello",
        stack_uid,
    ), "the garbage collector deletes the revision with its Stack only if this is exact"

    with pytest.raises(ApiException) as refused:
        apps.patch_namespaced_controller_revision(
            first.id,
            kube.namespace,
            {"data": {"template": {}, "parameters": {}}},
            _content_type="application/merge-patch+json",
        )
    assert refused.value.status == 422, "the API server must refuse to change a revision"
    assert kube.store.get_template(first.id) == first
    # Its metadata may change (the last completed one is labelled), its data not.
    # The operator marks and prunes with revisions of its own, not through the engine's store.
    revisions = TemplateRevisions(NamespacedApi(kube.api, kube.namespace))
    revisions.mark_last_completed("hello", first.id)
    revisions.mark_last_completed("hello", second.id)
    labels = {
        r.metadata.name: (r.metadata.labels or {}).get("convergence.dev/last-completed")
        for r in apps.list_namespaced_controller_revision(
            kube.namespace, label_selector="convergence.dev/stack=hello"
        ).items
        if r.metadata is not None
    }
    assert labels == {first.id: None, second.id: "true"}
    assert revisions.prune("hello", {second.id}, 0) == [first.id]
    with pytest.raises(NotFound):
        kube.store.get_template(first.id)


@pytest.mark.controlplane
def test_a_value_the_schema_refuses_is_an_error_not_a_conflict(kube: StoreKit) -> None:
    # A failed version test and a refused value are both HTTP 422; only the first is Conflict.
    kube.new_stack()
    record = kube.new_resource("hello")
    with pytest.raises(StoreError, match="deletionPolicy") as refused:
        kube.store.update_resource(replace(record, deletion_policy="Sometimes"))
    assert not isinstance(refused.value, Conflict | NotFound)
    assert kube.store.get_resource(record.id) == record


@pytest.mark.controlplane
def test_writes_are_counted_by_kind(kube: StoreKit) -> None:
    store = kube_store(kube)
    stack = kube.new_stack()
    store.put_template(TemplateRevision(new_id(), "hello", TEMPLATE))
    record = kube.new_resource("hello")
    store.update_resource(replace(record, lock="t"))
    store.push(record.id, True, "update:a", SyncEntry("t"))
    store.push_stack_sync_point("hello", "update:a", SyncEntry("t"))
    store.update_stack(replace(stack, traversal="t"))
    with pytest.raises(Conflict):
        store.update_stack(replace(stack, traversal="u"))
    assert store.writes == {
        "stack": 2,
        "template": 2,  # its values Secret, then the ControllerRevision
        "resource": 2,  # the object (no status), then its first status
        "push": 1,
        "stack_push": 1,
    }, "a lost compare-and-set writes nothing"
    assert store.total_writes == 8


@pytest.mark.controlplane
def test_a_stack_read_from_a_stale_body_whose_graph_is_gone_is_read_anew(
    api_client: ApiClient, namespace: str
) -> None:
    """A cached body can name the graph of a traversal since replaced (its graph dropped)."""
    kit = kubernetes_kit(api_client, namespace)
    stack = kit.new_stack()
    a = new_id()
    first = kit.store.update_stack(
        replace(stack, traversal="t1", graph=Graph({update_node(a): []}))
    )
    stale = read_object(api_client, namespace, STACKS, "hello")
    newer_graph = Graph({update_node(a): [], cleanup_node(a): [update_node(a)]})
    second = kit.store.update_stack(replace(first, traversal="t2", graph=newer_graph))
    with pytest.raises(ApiException):
        CoreV1Api(api_client).read_namespaced_config_map("graph-t1", namespace)

    cache = ObjectCache()
    cache.observe(STACKS, stale)
    reader = KubernetesStore(api_client, namespace, cache)
    assert reader.get_stack("hello") == second, "the Stack as it is now, with its graph"

    # A graph deleted by hand: the record still reads, with no node to run.
    CoreV1Api(api_client).delete_namespaced_config_map("graph-t2", namespace)
    blind = KubernetesStore(api_client, namespace, ObjectCache())
    assert blind.get_stack("hello") == replace(second, graph=Graph({}))


# -- ConfigMapReality ----------------------------------------------------------------------------


@pytest.fixture
def reality(api_client: ApiClient, namespace: str) -> ConfigMapReality:
    return ConfigMapReality(api_client, namespace)


def physical(name: str = "hello-first-abcdefgh", **properties: Any) -> PhysicalRecord:
    return PhysicalRecord(name, "hello", "first", properties, {"output": properties.get("value")})


@pytest.mark.controlplane
def test_reality_keeps_a_physical_resource_in_a_configmap(
    reality: ConfigMapReality, api_client: ApiClient, namespace: str
) -> None:
    record = physical(value="hi", action_wait_secs={"create": 1})
    reality.create(record)
    assert reality.get(record.name) == record
    configmap = CoreV1Api(api_client).read_namespaced_config_map(record.name, namespace)
    assert configmap.metadata is not None
    assert configmap.data is not None
    labels = configmap.metadata.labels or {}
    assert labels["convergence.dev/stack"] == "hello"
    assert labels["convergence.dev/resource"] == "first"
    assert json.loads(configmap.data["properties"]) == record.properties, "kubectl shows them"
    assert reality.of_stack("hello") == [record]
    assert reality.of_stack("other") == []

    updated = physical(value="bye")
    reality.update(updated)
    assert reality.get(record.name) == updated

    reality.delete(record.name)
    assert reality.get(record.name) is None
    reality.delete(record.name)  # deleting what is gone is fine


@pytest.mark.controlplane
def test_a_retried_create_overwrites_the_configmap_it_made(
    reality: ConfigMapReality, api_client: ApiClient, namespace: str
) -> None:
    reality.create(physical(value="first try"))
    reality.create(physical(value="second try"))
    listed = CoreV1Api(api_client).list_namespaced_config_map(
        namespace, label_selector="convergence.dev/stack=hello"
    )
    assert len(listed.items) == 1, "a retried create must not make a second physical resource"
    assert reality.of_stack("hello") == [physical(value="second try")]


@pytest.mark.controlplane
def test_physical_names_that_cannot_name_a_configmap_still_work(
    reality: ConfigMapReality,
) -> None:
    record = PhysicalRecord("hello-My_Server.1-abcdefgh", "hello", "My_Server.1", {"value": "x"})
    reality.create(record)
    assert configmap_name(record.name) != record.name
    assert reality.get(record.name) == record
    assert reality.get("hello-my-server-1-abcdefgh") is None, "a look-alike name is another one"
    reality.delete(record.name)
    assert reality.of_stack("hello") == []


class WallClock:
    def now(self) -> float:
        return time.time()


@pytest.mark.controlplane
def test_test_resource_lives_in_a_configmap_labelled_with_its_stack_resource(
    kube: StoreKit, reality: ConfigMapReality, api_client: ApiClient
) -> None:
    stack = kube.new_stack()
    record = kube.new_resource("hello", "first")
    context = ResourceContext(
        stack=StackRef(stack.name, stack.uid),
        name=record.name,
        record_id=record.id,
        clock=WallClock(),
        reality=reality,
    )
    plugin = TestResource(context, TestResource.validate_properties({"value": "hi"}))
    cookie = plugin.create()
    assert plugin.check_create_complete(cookie)
    name = context.physical_name()
    assert context.resource_id == name
    configmap = CoreV1Api(api_client).read_namespaced_config_map(name, kube.namespace)
    assert configmap.metadata is not None
    labels = configmap.metadata.labels or {}
    assert labels["convergence.dev/stack-resource"] == record.id
    assert reality.get(name) == PhysicalRecord(
        name, "hello", "first", {"value": "hi"}, {"output": "hi"}
    )

    plugin.check_delete_complete(plugin.delete())
    assert reality.get(name) is None, "the physical resource goes with its delete"
