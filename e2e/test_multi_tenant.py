"""Multi-tenant mode: a stack's Kubernetes objects are applied as its own ServiceAccount.

The chart is upgraded with `multiTenant.enabled=true` (the operator may then
impersonate ServiceAccounts, and runs with --require-service-account). A stack
naming a ServiceAccount whose Role allows Deployments and Services gets them;
a stack naming none is refused; a Service its ServiceAccount may not create
fails with the API server's refusal. The operator itself is never granted
Deployments or Services. The chart is put back to its default afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from convergence_e2e import (
    Helm,
    Kube,
    Operator,
    condition,
    multi_tenant,
    role,
    wait_until,
)

from convergence.operator.testing import hot

TENANT = "deployer"


@pytest.fixture
def multi_tenant_mode(kube: Kube, helm: Helm, operator: Operator) -> Iterator[None]:
    multi_tenant(kube, helm, operator, enabled=True)
    try:
        yield
    finally:
        multi_tenant(kube, helm, operator, enabled=False)


def tenant_rbac(namespace: str, resources: list[str]) -> list[dict[str, Any]]:
    """A ServiceAccount allowed to manage `resources` (apps and core) in `namespace`."""
    verbs = ["get", "list", "create", "patch", "delete"]
    return role(
        namespace, TENANT, [{"apiGroups": ["", "apps"], "resources": resources, "verbs": verbs}]
    )


def web_stack(name: str, service_account: str | None) -> dict[str, Any]:
    labels = {"app": name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "spec": {"selector": labels, "ports": [{"port": 80}]},
    }
    template = hot.template(
        hot.resources(
            "Kubernetes::Object",
            app={"properties": {"manifest": deployment}},
            front={"depends_on": "app", "properties": {"manifest": service}},
        )
    )
    spec = {"serviceAccountName": service_account} if service_account else {}
    return hot.stack(name, template, **spec)


def failed_with(kube: Kube, namespace: str, name: str, *words: str) -> bool:
    """The stack failed, and its status reason says all of `words`."""
    stack = kube.get("stack", name, namespace=namespace)
    status = stack.get("status", {})
    text = f"{status.get('statusReason', '')} {condition(stack, 'Ready').get('message', '')}"
    text = text.replace("\\", "")
    return status.get("phase", "").endswith("FAILED") and all(w in text for w in words)


def test_a_stack_applies_its_objects_as_its_service_account(
    kube: Kube, operator: Operator, multi_tenant_mode: None, namespace: str
) -> None:
    kube.apply(tenant_rbac(namespace, ["deployments"]))
    kube.apply([web_stack("web", TENANT)], namespace=namespace)

    # Deployments are allowed: `app` converges. Services are not: `front` fails
    # with the refusal of the stack's ServiceAccount, not the operator's.
    refusal = (f'"system:serviceaccount:{namespace}:{TENANT}" cannot', 'resource "services"')
    refused = wait_until(lambda: failed_with(kube, namespace, "web", *refusal), timeout=60)
    stack = kube.get("stack", "web", namespace=namespace)
    assert refused, f"no refusal for the Service: {stack.get('status')}\n{operator.tail()}"
    (deployment,) = kube.items(
        "deployments",
        "-l",
        "convergence.dev/stack=web",
        "--show-managed-fields",
        namespace=namespace,
    )
    managers = {f["manager"] for f in deployment["metadata"]["managedFields"]}
    assert "convergence" in managers, managers

    # With the Role extended, the same stack converges on the next update.
    kube.apply(tenant_rbac(namespace, ["deployments", "services"]))
    kube.kubectl(
        "patch",
        f"--namespace={namespace}",
        "stack/web",
        "--type=merge",
        "-p",
        '{"spec": {"timeoutSeconds": 300}}',
    )
    kube.wait("stack/web", "condition=Ready", namespace, timeout=180)
    assert kube.items("services", "-l", "convergence.dev/stack=web", namespace=namespace)

    # A stack naming no ServiceAccount is refused outright in this mode.
    kube.apply([web_stack("anonymous", None)], namespace=namespace)
    assert wait_until(
        lambda: failed_with(kube, namespace, "anonymous", "serviceAccountName"), timeout=60
    ), kube.get("stack", "anonymous", namespace=namespace).get("status")
    assert (
        kube.items("deployments", "-l", "convergence.dev/stack=anonymous", namespace=namespace)
        == []
    )

    kube.kubectl(
        "delete", f"--namespace={namespace}", "stack/web", "stack/anonymous", "--timeout=120s"
    )
    assert (
        kube.items(
            "deployments", "-l", "app.kubernetes.io/managed-by=convergence", namespace=namespace
        )
        == []
    )
    assert (
        kube.items(
            "services", "-l", "app.kubernetes.io/managed-by=convergence", namespace=namespace
        )
        == []
    )
