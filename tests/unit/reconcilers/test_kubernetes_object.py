"""Kubernetes::Object without a cluster: its pure rules, and the type on the simulator with
an in-memory ObjectClient (names, confinement, replacement modes, Retain, drift repair)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from convergence.operator.engine.drift import repair_drift
from convergence.operator.engine.plugin import (
    ObjectConflict,
    ObjectImmutable,
    ObjectRef,
    ObjectRejected,
    ResourceFailure,
    short_id,
)
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot
from convergence.reconcilers.kubernetes_object import (
    CREATE_BEFORE_DELETE,
    DELETE_FIRST,
    PART_OF_LABEL,
    KubernetesObject,
    confinement_problem,
    generated_name,
    identity_change,
    object_ref,
)
from convergence.reconcilers.kubernetes_readiness import Readiness, readiness

NAMESPACE = "ns"
CLUSTER_SCOPED = {"ClusterRole", "Namespace"}
RECORD = "5d4c1c7e-8d0b-4c1e-9f3a-0d7c2b1a9e11"
TYPE = "Kubernetes::Object"


class FakeObjects:
    """An in-memory API server for one stack: SSA as a merge, uids, resourceVersions."""

    def __init__(self, confined: bool = True) -> None:
        self.namespace = NAMESPACE
        self.confined = confined
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.immutable: dict[str, str] = {}  # kind -> a top-level field that cannot change
        self.forbidden: set[str] = set()  # kinds the identity may not touch
        self.foreign_fields: set[tuple[str, str]] = set()  # (name, field) another manager owns
        self._uids = itertools.count(1)
        self._versions = itertools.count(1)

    def is_namespaced(self, api_version: str, kind: str) -> bool:
        return kind not in CLUSTER_SCOPED

    def _key(self, kind: str, namespace: str | None, name: str) -> tuple[str, str | None, str]:
        return (kind, namespace if kind not in CLUSTER_SCOPED else None, name)

    def apply(
        self, manifest: Mapping[str, Any], *, force: bool = True, dry_run: bool = False
    ) -> dict[str, Any]:
        kind, metadata = manifest["kind"], manifest["metadata"]
        ref = f"{kind} {metadata['name']}"
        if kind in self.forbidden:
            raise ObjectRejected(f"cannot apply {ref}: forbidden", "Forbidden")
        key = self._key(kind, metadata.get("namespace"), metadata["name"])
        live = self.objects.get(key)
        if live is not None:
            field = self.immutable.get(kind)
            if field is not None and live.get(field) != manifest.get(field):
                raise ObjectImmutable(f"cannot apply {ref}: {field}: field is immutable", "Invalid")
            for name, owned in self.foreign_fields:
                taken = name == metadata["name"] and live.get(owned) != manifest.get(owned)
                if taken and not force:
                    raise ObjectConflict(f"cannot apply {ref}: conflict", "Conflict")
        if dry_run:
            return copy.deepcopy(dict(manifest))
        body = copy.deepcopy(dict(manifest))
        if live is not None:
            if {k: v for k, v in live.items() if k != "metadata"} == {
                k: v for k, v in body.items() if k != "metadata"
            } and {
                k: v for k, v in live["metadata"].items() if k not in ("uid", "resourceVersion")
            } == {**body["metadata"]}:
                return copy.deepcopy(live)
            body["metadata"]["uid"] = live["metadata"]["uid"]
            self.foreign_fields = {f for f in self.foreign_fields if f[0] != metadata["name"]}
        else:
            body["metadata"]["uid"] = f"uid-{next(self._uids)}"
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = body
        return copy.deepcopy(body)

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        live = self.objects.get(self._key(ref.kind, ref.namespace, ref.name))
        return copy.deepcopy(live) if live is not None else None

    def delete(self, ref: ObjectRef, *, uid: str | None = None) -> None:
        key = self._key(ref.kind, ref.namespace, ref.name)
        live = self.objects.get(key)
        if live is not None and (uid is None or live["metadata"]["uid"] == uid):
            del self.objects[key]

    def owner_reference(self, record_id: str) -> dict[str, Any] | None:
        return {"kind": "StackResource", "name": record_id, "uid": f"owner-{record_id}"}

    def for_stack(self, stack: str) -> FakeObjects:
        return self

    def named(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects[self._key(kind, NAMESPACE, name)]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [body for (k, _, _), body in self.objects.items() if k == kind]


def configmap(name: str | None = None, **data: Any) -> dict[str, Any]:
    metadata = {"name": name} if name else {}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def simulator(objects: FakeObjects | None = None) -> Simulator:
    sim = Simulator()
    sim.engine.objects = objects
    return sim


def converge(sim: Simulator, template: dict[str, Any], *, create: bool = False) -> str:
    (sim.create if create else sim.update)("s", template)
    sim.run_until_quiet()
    stack = sim.stack("s")
    return f"{stack.phase} {stack.status_reason}"


# -- pure rules ---------------------------------------------------------------------------------


def test_generated_name_is_a_dns_label_unique_per_version() -> None:
    name = generated_name("My_Stack", "9db" + "x" * 80, RECORD)
    assert len(name) <= 63, name
    assert name[0].isalpha(), name
    assert name.endswith(f"-{short_id(RECORD)}"), name
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-"), name
    other = "0c4c1c7e-8d0b-4c1e-9f3a-0d7c2b1a9e11"
    assert generated_name("s", "db", RECORD) != generated_name("s", "db", other)
    assert generated_name("1s", "db", RECORD).startswith("r-1s-db-")


def test_object_ref_defaults_name_and_namespace() -> None:
    ref = object_ref(configmap(), "s-db-abc", NAMESPACE)
    assert (ref.namespace, ref.name) == (NAMESPACE, "s-db-abc")
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {}}
    assert object_ref(role, "n", None).namespace is None


def test_confinement_refuses_cluster_scope_and_other_namespaces() -> None:
    assert confinement_problem(ObjectRef("v1", "ConfigMap", NAMESPACE, "a"), NAMESPACE) is None
    cluster = confinement_problem(ObjectRef("v1", "Namespace", None, "x"), NAMESPACE)
    assert cluster is not None
    assert "Namespace x is cluster-scoped" in cluster
    other = confinement_problem(ObjectRef("v1", "Secret", "kube-system", "x"), NAMESPACE)
    assert other is not None
    assert "Secret kube-system/x is in another namespace" in other


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        (configmap("a"), configmap("a", x="1"), None),
        (configmap("a"), configmap("b"), "name"),
        (configmap(), configmap("a"), "name"),
        (configmap("a"), {**configmap("a"), "kind": "Secret"}, "kind"),
        (
            {"apiVersion": "apps/v1beta2", "kind": "Deployment", "metadata": {}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}},
            None,
        ),
        (
            {"apiVersion": "example.com/v1", "kind": "Db", "metadata": {}},
            {"apiVersion": "example.org/v1", "kind": "Db", "metadata": {}},
            "API group",
        ),
        (
            configmap("a"),
            {**configmap("a"), "metadata": {"name": "a", "namespace": "o"}},
            "namespace",
        ),
        (
            configmap("a"),
            {**configmap("a"), "metadata": {"name": "a", "namespace": NAMESPACE}},
            None,
        ),
    ],
)
def test_identity_change_decides_replacement(
    before: dict[str, Any], after: dict[str, Any], change: str | None
) -> None:
    assert identity_change(before, after, NAMESPACE) == change


def deployment(wanted: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": 2},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": 2, **status},
    }


AVAILABLE = {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        (configmap("a"), Readiness(True)),
        (deployment(**AVAILABLE), Readiness(True)),
        (deployment(0), Readiness(True)),
        ({**deployment(), "status": {}}, Readiness(False, "its controller to observe it")),
        (
            deployment(**{**AVAILABLE, "observedGeneration": 1}),
            Readiness(False, "its controller to observe generation 2 (at 1)"),
        ),
        (
            deployment(**{**AVAILABLE, "availableReplicas": 1}),
            Readiness(False, "1 of 2 replicas available"),
        ),
        (
            deployment(**{**AVAILABLE, "replicas": 3}),
            Readiness(False, "1 old replicas to terminate"),
        ),
        (
            deployment(
                conditions=[
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                ]
            ),
            Readiness(False, "rollout stalled: ProgressDeadlineExceeded", failed=True),
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"generation": 1},
                "spec": {"replicas": 1},
                "status": {
                    "observedGeneration": 1,
                    "readyReplicas": 1,
                    "updatedReplicas": 1,
                    "currentRevision": "a",
                    "updateRevision": "b",
                },
            },
            Readiness(False, "the rollout to revision b"),
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"generation": 1},
                "spec": {},
                "status": {
                    "observedGeneration": 1,
                    "desiredNumberScheduled": 2,
                    "updatedNumberScheduled": 2,
                    "numberAvailable": 2,
                },
            },
            Readiness(True),
        ),
        (
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "status": {"conditions": [{"type": "Complete", "status": "True"}]},
            },
            Readiness(True),
        ),
        (
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "status": {
                    "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimit"}]
                },
            },
            Readiness(False, "the Job failed: BackoffLimit", failed=True),
        ),
        (
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}},
            Readiness(False, "the claim to be Bound (it is Pending)"),
        ),
        (
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}},
            Readiness(True),
        ),
        (
            {"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}},
            Readiness(False, "the load balancer's ingress"),
        ),
        ({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}}, Readiness(True)),
        (
            {
                "apiVersion": "example.com/v1",
                "kind": "Db",
                "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Boot"}]},
            },
            Readiness(False, "condition Ready (now Boot)"),
        ),
        (
            {
                "apiVersion": "example.com/v1",
                "kind": "Db",
                "status": {"conditions": [{"type": "Available", "status": "True"}]},
            },
            Readiness(True),
        ),
        (
            {
                "apiVersion": "example.com/v1",
                "kind": "Db",
                "status": {"conditions": [{"type": "Stalled", "status": "True", "message": "m"}]},
            },
            Readiness(False, "stalled: m", failed=True),
        ),
        (
            {**configmap("a"), "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}},
            Readiness(False, "the object is being deleted"),
        ),
    ],
)
def test_readiness_follows_kstatus(live: dict[str, Any], expected: Readiness) -> None:
    assert readiness(live) == expected


# -- the type on the simulator ------------------------------------------------------------------


def test_without_a_kubernetes_api_the_resource_fails_clearly() -> None:
    sim = simulator(None)
    outcome = converge(
        sim,
        hot.template(hot.resources(TYPE, cm={"properties": {"manifest": configmap("a")}})),
        create=True,
    )
    assert outcome.startswith("CREATE_FAILED"), outcome
    assert "needs a Kubernetes API" in outcome


def test_an_invalid_manifest_fails_as_a_property_error() -> None:
    sim = simulator(FakeObjects())
    bad = {"apiVersion": "v1", "metadata": {}}
    outcome = converge(
        sim, hot.template(hot.resources(TYPE, cm={"properties": {"manifest": bad}})), create=True
    )
    assert "Property error: manifest: Value error, kind must be" in outcome, outcome


@pytest.mark.parametrize(
    ("metadata", "refused"),
    [
        ({"labels": {"convergence.dev/stack": "victim"}}, "metadata.labels.convergence.dev/stack"),
        ({"labels": {"convergence.dev/graph": "true"}}, "metadata.labels.convergence.dev/graph"),
        (
            {"annotations": {"convergence.dev/physical-name": "victim-x-1"}},
            "metadata.annotations.convergence.dev/physical-name",
        ),
        (
            {
                "ownerReferences": [
                    {"apiVersion": "convergence.dev/v1alpha1", "kind": "Stack", "name": "victim"}
                ]
            },
            "metadata.ownerReferences: Stack 'victim'",
        ),
    ],
)
def test_a_manifest_may_not_forge_the_operators_labels_or_owners(
    metadata: dict[str, Any], refused: str
) -> None:
    objects = FakeObjects()
    sim = simulator(objects)
    manifest = {**configmap("forged"), "metadata": {"name": "forged", **metadata}}
    outcome = converge(
        sim,
        hot.template(hot.resources(TYPE, cm={"properties": {"manifest": manifest}})),
        create=True,
    )
    assert outcome.startswith("CREATE_FAILED"), outcome
    assert refused in outcome, outcome
    assert "operator" in outcome, outcome
    assert objects.objects == {}, "a refused manifest created something"


def test_labels_of_other_domains_ending_in_the_group_are_allowed() -> None:
    objects = FakeObjects()
    sim = simulator(objects)
    labels = {"example.convergence.dev/tier": "web"}
    manifest = {**configmap("ok"), "metadata": {"name": "ok", "labels": labels}}
    outcome = converge(
        sim,
        hot.template(hot.resources(TYPE, cm={"properties": {"manifest": manifest}})),
        create=True,
    )
    assert outcome.startswith("CREATE_COMPLETE"), outcome


def test_objects_are_labelled_owned_and_feed_their_dependents() -> None:
    objects = FakeObjects()
    sim = simulator(objects)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "10.0.0.7"},
    }
    template = hot.template(
        hot.resources(
            TYPE,
            svc={"properties": {"manifest": service}},
            cm={
                "properties": {
                    "manifest": configmap(
                        "settings",
                        ip={"get_attr": ["svc", "spec", "clusterIP"]},
                        svc={"get_resource": "svc"},
                        uid={"get_attr": ["svc", "uid"]},
                    )
                }
            },
        )
    )
    assert converge(sim, template, create=True).startswith("CREATE_COMPLETE")
    made = objects.named("ConfigMap", "settings")
    uid = objects.named("Service", "web")["metadata"]["uid"]
    assert made["data"] == {"ip": "10.0.0.7", "svc": "web", "uid": uid}
    labels = made["metadata"]["labels"]
    assert labels[PART_OF_LABEL] == "s"
    assert labels["app.kubernetes.io/managed-by"] == "convergence"
    assert made["metadata"]["namespace"] == NAMESPACE
    assert made["metadata"]["ownerReferences"][0]["kind"] == "StackResource"


def test_a_confined_stack_creates_nothing_beyond_its_namespace() -> None:
    objects = FakeObjects()
    sim = simulator(objects)
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {}}
    outcome = converge(
        sim, hot.template(hot.resources(TYPE, role={"properties": {"manifest": role}})), create=True
    )
    assert "ClusterRole s-role-" in outcome, outcome
    assert "is cluster-scoped" in outcome, outcome
    other = {**configmap("x"), "metadata": {"name": "x", "namespace": "other"}}
    outcome = converge(
        sim, hot.template(hot.resources(TYPE, cm={"properties": {"manifest": other}}))
    )
    assert "ConfigMap other/x is in another namespace" in outcome, outcome
    assert objects.objects == {}, "nothing may be created"


def test_a_stack_with_a_service_account_is_not_confined_but_its_rbac_decides() -> None:
    objects = FakeObjects(confined=False)
    objects.forbidden.add("ClusterRole")
    sim = simulator(objects)
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {}}
    outcome = converge(
        sim, hot.template(hot.resources(TYPE, role={"properties": {"manifest": role}})), create=True
    )
    assert "cannot apply ClusterRole s-role-" in outcome, outcome
    assert "forbidden" in outcome, outcome


def test_update_in_place_keeps_the_object() -> None:
    objects = FakeObjects()
    sim = simulator(objects)
    converge(
        sim,
        hot.template(hot.resources(TYPE, cm={"properties": {"manifest": configmap("a", x="1")}})),
        create=True,
    )
    uid = objects.named("ConfigMap", "a")["metadata"]["uid"]
    assert converge(
        sim,
        hot.template(hot.resources(TYPE, cm={"properties": {"manifest": configmap("a", x="2")}})),
    ).startswith("UPDATE_COMPLETE")
    assert objects.named("ConfigMap", "a")["metadata"]["uid"] == uid
    assert objects.named("ConfigMap", "a")["data"] == {"x": "2"}


def test_generated_names_replace_create_before_delete() -> None:
    objects = FakeObjects()
    objects.immutable["ConfigMap"] = "immutable"
    sim = simulator(objects)
    converge(
        sim,
        hot.template(hot.resources(TYPE, cm={"properties": {"manifest": configmap(x="1")}})),
        create=True,
    )
    [old] = objects.of_kind("ConfigMap")
    assert old["metadata"]["name"].startswith("s-cm-")
    changed = {**configmap(x="1"), "immutable": True}
    assert converge(
        sim, hot.template(hot.resources(TYPE, cm={"properties": {"manifest": changed}}))
    ).startswith("UPDATE_COMPLETE")
    [new] = objects.of_kind("ConfigMap")
    assert new["metadata"]["name"] != old["metadata"]["name"]
    records = sim.resources("s")
    assert [r.data["replacement"] for r in records] == [CREATE_BEFORE_DELETE]


def test_fixed_names_replace_delete_first() -> None:
    objects = FakeObjects()
    objects.immutable["ConfigMap"] = "immutable"
    sim = simulator(objects)
    converge(
        sim,
        hot.template(hot.resources(TYPE, cm={"properties": {"manifest": configmap("a", x="1")}})),
        create=True,
    )
    old_uid = objects.named("ConfigMap", "a")["metadata"]["uid"]
    changed = {**configmap("a", x="1"), "immutable": True}
    outcome = converge(
        sim, hot.template(hot.resources(TYPE, cm={"properties": {"manifest": changed}}))
    )
    assert outcome.startswith("UPDATE_COMPLETE"), outcome
    live = objects.named("ConfigMap", "a")
    assert live["metadata"]["uid"] != old_uid
    assert live["immutable"] is True
    [record] = sim.resources("s")
    assert record.data["replacement"] == DELETE_FIRST
    assert record.data["deletedPrevious"] == old_uid


def test_a_fixed_name_held_by_someone_else_is_never_taken_over() -> None:
    objects = FakeObjects()
    objects.apply({**configmap("a"), "metadata": {"name": "a", "namespace": NAMESPACE}})
    sim = simulator(objects)
    outcome = converge(
        sim,
        hot.template(hot.resources(TYPE, cm={"properties": {"manifest": configmap("a", x="1")}})),
        create=True,
    )
    assert "ConfigMap ns/a exists already and is not managed by stack" in outcome, outcome
    converge(sim, hot.template())
    assert "labels" not in objects.named("ConfigMap", "a")["metadata"], "left alone on delete"


def test_delete_leaves_nothing_and_retain_strips_the_stack() -> None:
    objects = FakeObjects()
    sim = simulator(objects)
    template = hot.template(
        hot.resources(
            TYPE,
            gone={"properties": {"manifest": configmap("gone")}},
            kept={
                "properties": {"manifest": configmap("kept", x="1")},
                "deletion_policy": "Retain",
            },
        )
    )
    converge(sim, template, create=True)
    sim.delete("s")
    sim.run_until_quiet()
    assert sim.stack("s").phase == "DELETE_COMPLETE"
    assert [o["metadata"]["name"] for o in objects.objects.values()] == ["kept"]
    kept = objects.named("ConfigMap", "kept")
    assert kept["data"] == {"x": "1"}
    assert "labels" not in kept["metadata"]
    assert "ownerReferences" not in kept["metadata"]


def test_repair_drift_recreates_and_restores() -> None:
    objects = FakeObjects()
    sim = simulator(objects)
    converge(
        sim,
        hot.template(hot.resources(TYPE, cm={"properties": {"manifest": configmap("a", x="1")}})),
        create=True,
    )
    assert repair_drift(sim.engine, "s") == []
    objects.named("ConfigMap", "a")["data"] = {"x": "changed"}
    [drift] = repair_drift(sim.engine, "s")
    assert drift.resource == "cm"
    assert "was changed; put it back" in drift.message
    assert objects.named("ConfigMap", "a")["data"] == {"x": "1"}
    objects.foreign_fields.add(("a", "data"))
    objects.named("ConfigMap", "a")["data"] = {"x": "kubectl"}
    [drift] = repair_drift(sim.engine, "s")
    assert "another manager" in drift.message
    assert objects.named("ConfigMap", "a")["data"] == {"x": "1"}
    objects.objects.clear()
    [drift] = repair_drift(sim.engine, "s")
    assert "was deleted; recreated it" in drift.message
    new_uid = objects.named("ConfigMap", "a")["metadata"]["uid"]
    [record] = sim.resources("s")
    assert record.data["object"]["uid"] == new_uid, "the new uid is recorded"
    converge(sim, hot.template())
    assert objects.objects == {}, "the recreated object is deleted with the stack"


def test_a_secrets_data_is_never_an_attribute() -> None:
    objects = FakeObjects()
    sim = simulator(objects)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "p"},
        "data": {"k": "dg=="},
    }
    template = hot.template(
        hot.resources(
            TYPE,
            sec={"properties": {"manifest": secret}},
            cm={"properties": {"manifest": configmap("c", v={"get_attr": ["sec", "data", "k"]})}},
        )
    )
    converge(sim, template, create=True)
    assert objects.named("ConfigMap", "c")["data"] == {"v": None}


def test_timeout_fails_naming_what_it_waited_for() -> None:
    objects = FakeObjects()
    sim = simulator(objects)
    outcome = converge(
        sim,
        hot.template(
            hot.resources(TYPE, web={"properties": {"manifest": deployment(), "timeout": 5}})
        ),
        create=True,
    )
    assert "timed out after 5s waiting for Deployment ns/web" in outcome, outcome


def test_resource_failure_is_raised_for_unknown_records() -> None:
    with pytest.raises(ResourceFailure):
        KubernetesObject.validate_properties({"manifest": {"kind": "X"}})
