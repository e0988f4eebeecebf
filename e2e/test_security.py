"""What a tenant who may only write Stacks can and cannot do through the operator.

Each test runs in both of the chart's modes (module-scoped, so the operator is
switched once per mode): single-tenant, where a Stack naming no ServiceAccount
acts as the operator confined to its namespace, and multi-tenant, where every
Stack acts as its ServiceAccount (`deployer` here, allowed ConfigMaps only
unless a test grants more, to show that the refusal is the operator's own and
not RBAC's). The tenant is a ServiceAccount `author` whose only rights are on
Stacks; every Stack is applied as that user. Each case asserts the refusal,
its message where the user looks (the Stack's status), and that nothing
changed. The README's confinement section states what this proves.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from convergence_e2e import MANAGED_BY, Helm, Kube, Operator, multi_tenant, role, rule, wait_until

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import settled_status

SINGLE, MULTI = "single-tenant", "multi-tenant"
AUTHOR, DEPLOYER = "author", "deployer"
PRECIOUS_DATA = {"owner": "platform-team"}
TEST_RESOURCE = "OS::Heat::TestResource"


@pytest.fixture(scope="module", params=[SINGLE, MULTI])
def mode(
    request: pytest.FixtureRequest, kube: Kube, helm: Helm, operator: Operator
) -> Iterator[str]:
    if request.param == MULTI:
        multi_tenant(kube, helm, operator, enabled=True)
    try:
        yield str(request.param)
    finally:
        if request.param == MULTI:
            multi_tenant(kube, helm, operator, enabled=False)


CONFIGMAPS = rule("", ["configmaps"], ["get", "list", "create", "patch", "delete"])


@pytest.fixture
def tenant(kube: Kube, mode: str, namespace: str) -> Iterator[Tenant]:
    """The tenant of a fresh namespace: `author` may write Stacks and nothing else."""
    stacks = rule(
        "convergence.dev", ["stacks"], ["get", "list", "watch", "create", "patch", "delete"]
    )
    kube.apply(role(namespace, AUTHOR, [stacks]))
    kube.apply(role(namespace, DEPLOYER, [CONFIGMAPS]))
    found = Tenant(kube, mode, namespace)
    for verb, resource in (
        ("get", "secrets"),
        ("create", "configmaps"),
        ("create", "stackresources"),
    ):
        assert not kube.can_i(verb, resource, namespace, found.user), (
            f"the tenant may {verb} {resource}"
        )
    yield found
    # Whatever a case refused, its stacks still delete cleanly and leave nothing behind.
    kube.kubectl("delete", "stacks", "--all", f"--namespace={namespace}", "--timeout=120s")
    for kind in ("stackresources", "configmaps", "secrets"):
        left = kube.items(kind, "-l", MANAGED_BY, namespace=namespace)
        assert left == [], f"{kind} left behind: {[i['metadata']['name'] for i in left]}"


class Tenant:
    """Stacks as `author` applies them, naming `deployer` in multi-tenant mode."""

    def __init__(self, kube: Kube, mode: str, namespace: str) -> None:
        self.kube = kube
        self.mode = mode
        self.namespace = namespace
        self.user = f"system:serviceaccount:{namespace}:{AUTHOR}"

    def grant(self, *rules: dict[str, Any]) -> None:
        """More rights for the stacks' ServiceAccount (multi-tenant mode)."""
        self.kube.apply(role(self.namespace, DEPLOYER, [CONFIGMAPS, *rules]))

    def stack(
        self,
        name: str,
        resources: dict[str, Any],
        declare: dict[str, Any] | None = None,
        outputs: dict[str, Any] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        """A Stack of `resources`, with template parameters `declare` and `outputs`."""
        template = hot.template(resources)
        if declare:
            template["parameters"] = declare
        if outputs:
            template["outputs"] = outputs
        if self.mode == MULTI:
            spec.setdefault("serviceAccountName", DEPLOYER)
        return hot.stack(name, template, self.namespace, **spec)

    def apply(self, stack: dict[str, Any], check: bool = True) -> Any:
        return self.kube.cluster.kubectl(
            "apply",
            f"--as={self.user}",
            f"--namespace={self.namespace}",
            "-f",
            "-",
            input=json.dumps(stack),
            check=check,
        )

    def settled(self, name: str, timeout: float = 90) -> dict[str, Any]:
        """The Stack once the operation of its current generation ended (COMPLETE or
        FAILED), or its start was refused (a Failed condition of this generation)."""

        def done() -> bool:
            stack = self.kube.get("stack", name, namespace=self.namespace)
            generation = stack["metadata"]["generation"]
            refused = any(
                c.get("type") == "Failed"
                and c.get("status") == "True"
                and c.get("observedGeneration") == generation
                for c in stack.get("status", {}).get("conditions", [])
            )
            ended = settled_status(self.kube.cluster, self.namespace, name) is not None
            return refused or ended

        settled = wait_until(done, timeout=timeout)
        stack = dict(self.kube.get("stack", name, namespace=self.namespace))
        assert settled, f"stack {name} did not settle: {stack.get('status')}"
        return stack

    def delete(self, *names: str) -> None:
        self.kube.kubectl(
            "delete",
            f"--namespace={self.namespace}",
            *(f"stack/{name}" for name in names),
            "--timeout=120s",
        )


def reason_of(stack: dict[str, Any]) -> str:
    """Everything the Stack's status says about why, in one string."""
    status = stack.get("status", {})
    messages = [c.get("message", "") for c in status.get("conditions", [])]
    # (A message quoting the API server's may escape its quotes.)
    return " ".join([str(status.get("statusReason", "")), *messages]).replace("\\", "")


def records(kube: Kube, namespace: str, stack: str) -> list[dict[str, Any]]:
    return kube.items("stackresources", "-l", f"convergence.dev/stack={stack}", namespace=namespace)


def object_of(kube: Kube, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return dict(kube.get(kind, name, namespace=namespace))


def unchanged(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return all(
        before["metadata"][key] == after["metadata"][key] for key in ("uid", "resourceVersion")
    )


def precious(kube: Kube, namespace: str) -> dict[str, Any]:
    """A ConfigMap the tenant did not make, which it must not take, change or delete."""
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "precious", "namespace": namespace},
                "data": PRECIOUS_DATA,
            }
        ]
    )
    return object_of(kube, "configmap", "precious", namespace)


def manifest_resource(manifest: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "Kubernetes::Object", "properties": {"manifest": manifest}, **extra}


def test_a_secret_it_cannot_read_stays_unread_unless_single_tenant_says_so(
    kube: Kube, tenant: Tenant
) -> None:
    value = "s3cret-value-" + tenant.namespace
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db", "namespace": tenant.namespace},
                "stringData": {"password": value},
            }
        ]
    )
    leak = tenant.stack(
        "leak",
        {"noop": {"type": "OS::Heat::None"}},
        declare={"password": {"type": "string"}},
        outputs={"out": {"value": {"get_param": "password"}}},
        parametersFrom=[{"kind": "Secret", "name": "db"}],
    )
    if tenant.mode == SINGLE:
        # Documented: without a ServiceAccount the operator reads what it can.
        tenant.apply(leak)
        stack = tenant.settled("leak")
        assert stack["status"]["phase"] == "CREATE_COMPLETE", reason_of(stack)
        # The lockdown within single-tenant mode: naming a ServiceAccount reads as it.
        leak["metadata"]["name"] = "leak-as-account"
        leak["spec"]["serviceAccountName"] = DEPLOYER
    tenant.apply(leak)
    name = leak["metadata"]["name"]
    stack = tenant.settled(name)
    failed = [c for c in stack["status"]["conditions"] if c["type"] == "Failed"]
    assert failed, stack["status"]
    assert failed[0]["reason"] == "ParametersForbidden", stack["status"]
    assert f"ServiceAccount {tenant.namespace}/{DEPLOYER} may not read Secret db" in reason_of(
        stack
    )
    assert value not in json.dumps(stack)
    assert records(kube, tenant.namespace, name) == [], "a refused stack started"
    events = kube.items("events", namespace=tenant.namespace)
    assert any(e["reason"] == "ParametersForbidden" for e in events), events
    assert value not in json.dumps(events)


def test_the_operators_state_is_never_a_parameter_source(kube: Kube, tenant: Tenant) -> None:
    tenant.grant(rule("", ["secrets"], ["get"]))  # RBAC would allow it: the operator refuses
    victim = tenant.stack(
        "victim",
        {"pw": {"type": "OS::Heat::RandomString"}},
        declare={"key": {"type": "string", "hidden": True}},
        parameters={"key": "victims-hidden-value"},
    )
    tenant.apply(victim)
    assert tenant.settled("victim")["status"]["phase"] == "CREATE_COMPLETE"
    secrets = kube.items(
        "secrets", "-l", "convergence.dev/stack=victim", namespace=tenant.namespace
    )
    revision = next(s for s in secrets if s["metadata"]["ownerReferences"][0]["kind"] == "Stack")
    random = next(s for s in secrets if s["metadata"]["ownerReferences"][0]["kind"] != "Stack")
    graphs = kube.items("configmaps", "-l", "convergence.dev/graph", namespace=tenant.namespace)
    random_value = base64.b64decode(random["data"]["value"]).decode()
    sources = [
        ("Secret", revision["metadata"]["name"], "the operator's bookkeeping of stack 'victim'"),
        ("Secret", random["metadata"]["name"], "a resource's private data of stack 'victim'"),
        (
            "ConfigMap",
            graphs[0]["metadata"]["name"],
            "the operator's bookkeeping of stack 'victim'",
        ),
    ]
    for index, (kind, source, said) in enumerate(sources):
        name = f"thief-{index}"
        tenant.apply(
            tenant.stack(
                name,
                {"noop": {"type": "OS::Heat::None"}},
                parametersFrom=[{"kind": kind, "name": source}],
            )
        )
        stack = tenant.settled(name)
        assert f"{kind} {source} holds {said}" in reason_of(stack), reason_of(stack)
        text = json.dumps(stack)
        assert random_value not in text
        assert "victims-hidden-value" not in text
        assert records(kube, tenant.namespace, name) == []


@pytest.mark.parametrize(
    ("manifest", "refused"),
    [
        (
            {
                "apiVersion": "convergence.dev/v1alpha1",
                "kind": "StackResource",
                "metadata": {"name": "forged"},
                "spec": {"stack": "victim", "resource": "x", "type": TEST_RESOURCE},
            },
            "StackResource is one of the operator's own kinds",
        ),
        (
            {
                "apiVersion": "convergence.dev/v1alpha1",
                "kind": "Stack",
                "metadata": {"name": "forged"},
                "spec": {"template": {"heat_template_version": "2021-04-16"}},
            },
            "Stack is one of the operator's own kinds",
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {"name": "forged"},
                "revision": 99,
                "data": {"template": {}},
            },
            "ControllerRevision is reserved",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "forged", "labels": {"convergence.dev/stack": "victim"}},
            },
            "metadata.labels.convergence.dev/stack",
        ),
    ],
    ids=["stackresource", "stack", "controllerrevision", "forged-label"],
)
def test_a_forged_record_of_another_stack_is_refused_and_changes_nothing(
    kube: Kube, tenant: Tenant, manifest: dict[str, Any], refused: str
) -> None:
    # Even where RBAC would let the stack's identity write these, the operator refuses.
    tenant.grant(
        rule("convergence.dev", ["stacks", "stackresources"], ["get", "create", "patch", "delete"]),
        rule("apps", ["controllerrevisions"], ["get", "create", "patch", "delete"]),
    )
    kept = precious(kube, tenant.namespace)
    tenant.apply(
        tenant.stack("victim", {"x": {"type": TEST_RESOURCE, "properties": {"value": "1"}}})
    )
    assert tenant.settled("victim")["status"]["phase"] == "CREATE_COMPLETE"
    victim_records = {r["metadata"]["name"] for r in records(kube, tenant.namespace, "victim")}

    tenant.apply(tenant.stack("forger", {"forged": manifest_resource(manifest)}))
    stack = tenant.settled("forger")
    assert stack["status"]["phase"] == "CREATE_FAILED", stack["status"]
    assert refused in reason_of(stack), reason_of(stack)
    kind = manifest["kind"].lower() + "s"
    assert not kube.exists(kind, "forged", namespace=tenant.namespace), f"a forged {kind} exists"
    assert {
        r["metadata"]["name"] for r in records(kube, tenant.namespace, "victim")
    } == victim_records

    # The victim's update (a replacement, so its cleanup runs) and delete touch only its own.
    victim = tenant.stack(
        "victim",
        {"x": {"type": TEST_RESOURCE, "properties": {"value": "2", "update_replace": True}}},
    )
    tenant.apply(victim)
    assert tenant.settled("victim")["status"]["phase"] == "UPDATE_COMPLETE"
    tenant.delete("victim", "forger")
    assert unchanged(kept, object_of(kube, "configmap", "precious", tenant.namespace))
    assert not kube.exists("stackresources", "forged", namespace=tenant.namespace)


def test_nothing_outside_its_namespace_or_cluster_scoped(kube: Kube, tenant: Tenant) -> None:
    cases = {
        "elsewhere": (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x", "namespace": "default"},
            },
            "is in another namespace" if tenant.mode == SINGLE else 'in the namespace "default"',
        ),
        "cluster": (
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": f"{tenant.namespace}-x"},
            },
            "cluster-scoped" if tenant.mode == SINGLE else 'resource "namespaces"',
        ),
    }
    for name, (manifest, refused) in cases.items():
        tenant.apply(tenant.stack(name, {"obj": manifest_resource(manifest)}))
        stack = tenant.settled(name)
        assert stack["status"]["phase"] == "CREATE_FAILED", stack["status"]
        assert refused in reason_of(stack), reason_of(stack)
    assert not kube.exists("configmap", "x", namespace="default")
    assert not kube.exists("namespace", f"{tenant.namespace}-x")


def test_an_object_it_did_not_make_is_never_taken_changed_or_deleted(
    kube: Kube, tenant: Tenant
) -> None:
    kept = precious(kube, tenant.namespace)
    taking = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "precious"}, "data": {}}
    # By naming it, also with deletion_policy Retain (which would release it, unlabelled).
    for name, extra in (("take", {}), ("retain", {"deletion_policy": "Retain"})):
        tenant.apply(tenant.stack(name, {"cm": manifest_resource(taking, **extra)}))
        stack = tenant.settled(name)
        assert stack["status"]["phase"] == "CREATE_FAILED", stack["status"]
        assert "exists already" in reason_of(stack)
        assert "not taking it over" in reason_of(stack)
    # By replacing its own object with one at that name.
    mine = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}
    tenant.apply(tenant.stack("move", {"cm": manifest_resource(mine)}))
    assert tenant.settled("move")["status"]["phase"] == "CREATE_COMPLETE"
    tenant.apply(tenant.stack("move", {"cm": manifest_resource(taking)}))
    stack = tenant.settled("move")
    assert stack["status"]["phase"] == "UPDATE_FAILED", stack["status"]
    assert "not taking it over" in reason_of(stack), reason_of(stack)
    tenant.delete("take", "retain", "move")
    after = object_of(kube, "configmap", "precious", tenant.namespace)
    assert unchanged(kept, after), after
    assert after["data"] == PRECIOUS_DATA, after


def test_a_service_account_of_another_namespace_cannot_be_named(kube: Kube, tenant: Tenant) -> None:
    stack = tenant.stack("other", {"noop": {"type": "OS::Heat::None"}})
    stack["spec"]["serviceAccountName"] = "kube-system:default"
    result = tenant.apply(stack, check=False)
    assert result.returncode != 0, "the API server accepted another namespace's account"
    assert "spec.serviceAccountName" in result.stderr, result.stderr
    assert not kube.exists("stack", "other", namespace=tenant.namespace)


def test_hidden_values_and_random_strings_are_never_shown(
    kube: Kube, tenant: Tenant, operator: Operator
) -> None:
    # A hidden parameter whose value breaks its constraint: the error names it, not its
    # value, both where `kubectl apply` is refused and where the status says so.
    hidden = "hidden-" + tenant.namespace
    declare = {"key": {"type": "string", "hidden": True, "constraints": [{"length": {"min": 99}}]}}
    refused = tenant.stack(
        "refused",
        {"noop": {"type": "OS::Heat::None"}},
        declare=declare,
        parameters={"key": hidden},
    )
    answer = tenant.apply(refused, check=False)
    assert answer.returncode != 0, "the webhook let a Stack breaking its constraint in"
    assert "parameters.key" in answer.stderr, answer.stderr
    assert hidden not in answer.stderr + answer.stdout, "the refusal shows the hidden value"
    assert not kube.exists("stack", "refused", namespace=tenant.namespace)
    # Given through parametersFrom, the value is the operator's to check: in status.
    source = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "refused-key", "namespace": tenant.namespace},
        "data": {"key": hidden},
    }
    kube.apply([source], namespace=tenant.namespace)
    from_source = tenant.stack(
        "refused",
        {"noop": {"type": "OS::Heat::None"}},
        declare=declare,
        parametersFrom=[{"kind": "ConfigMap", "name": "refused-key"}],
    )
    tenant.apply(from_source)
    failed = tenant.settled("refused")
    assert "parameters.key" in reason_of(failed), reason_of(failed)
    assert "length" in reason_of(failed), reason_of(failed)
    # A RandomString passed through a Value and shown by an output: a reference everywhere.
    quiet = tenant.stack(
        "quiet",
        {
            "pw": {"type": "OS::Heat::RandomString", "properties": {"length": 24}},
            "copy": {
                "type": "OS::Heat::Value",
                "properties": {"value": {"get_attr": ["pw", "value"]}},
            },
        },
        outputs={
            "pw": {"value": {"get_attr": ["pw", "value"]}},
            "copy": {"value": {"get_attr": ["copy", "value"]}},
        },
    )
    tenant.apply(quiet)
    settled = tenant.settled("quiet")
    assert settled["status"]["phase"] == "CREATE_COMPLETE", reason_of(settled)
    (secret,) = kube.items(
        "secrets", "-l", "convergence.dev/resource=pw", namespace=tenant.namespace
    )
    random_value = base64.b64decode(secret["data"]["value"]).decode()
    shown = {
        "the Stacks' status": json.dumps([failed["status"], settled["status"]]),
        "their StackResources": json.dumps(records(kube, tenant.namespace, "quiet")),
        "Events": json.dumps(kube.items("events", namespace=tenant.namespace)),
        "the operator's log": operator.tail(1_000_000),
    }
    for where, text in shown.items():
        assert hidden not in text, f"the hidden parameter's value is in {where}"
        assert random_value not in text, f"the RandomString's value is in {where}"
    tenant.delete("refused", "quiet")
