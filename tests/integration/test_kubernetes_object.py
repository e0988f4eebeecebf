"""Kubernetes::Object on the real control plane: data flow, update, replacement, delete,
confinement and impersonation (a stack acts only with its ServiceAccount's rights)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, settled_status, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

MANAGED = "app.kubernetes.io/managed-by=convergence"


def apply_stack(
    cluster: Cluster, namespace: str, name: str, resources: dict[str, Any], **spec: Any
) -> None:
    body = hot.stack(name, hot.template(resources), namespace, **spec)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def obj(kind: str, name: str, **rest: Any) -> dict[str, Any]:
    return {"type": "Kubernetes::Object", "properties": {"manifest": {
        "apiVersion": "apps/v1" if kind == "Deployment" else "v1",
        "kind": kind,
        "metadata": {"name": name} if name else {},
        **rest,
    }}}  # fmt: skip


def deployment(name: str, config: str) -> dict[str, Any]:
    labels = {"app": name}
    container = {
        "name": "web",
        "image": "nginx",
        "envFrom": [
            {"configMapRef": {"name": config}},
            {"secretRef": {"name": {"get_resource": "password"}}},
        ],
    }
    return obj(
        "Deployment",
        name,
        spec={
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    )


def make_available(cluster: Cluster, namespace: str, name: str) -> None:
    """Where no kubelet (or kwok) runs pods: report the Deployment Available ourselves."""
    body = cluster.get_json(namespace, "deployment", name)
    if body is None:
        return
    status = body.get("status") or {}
    if status.get("availableReplicas") == 1 and status.get("observedGeneration") == body[
        "metadata"
    ].get("generation"):
        return
    patch = {
        "status": {
            "observedGeneration": body["metadata"]["generation"],
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        }
    }
    cluster.kubectl(
        "patch", "deployment", name, f"--namespace={namespace}", "--subresource=status",
        "--type=merge", "-p", json.dumps(patch), check=False,
    )  # fmt: skip


def resource_secrets(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """The managed Secrets but the Stack's own (its template revisions' parameter values)."""
    return [
        item
        for item in cluster.get_json(namespace, "secrets", "-l", MANAGED)["items"]
        if all(o["kind"] != "Stack" for o in item["metadata"].get("ownerReferences", []))
    ]


def test_objects_flow_update_replace_and_delete(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    service = obj("Service", "web", spec={"selector": {"app": "web"}, "ports": [{"port": 80}]})
    settings = obj(
        "ConfigMap",
        "settings",
        data={
            "SERVICE_IP": {"get_attr": ["svc", "spec", "clusterIP"]},
            "SERVICE_NAME": {"get_resource": "svc"},
        },
    )
    password = obj("Secret", "", stringData={"PASSWORD": "s3cret"})
    resources = {
        "svc": service,
        "settings": settings,
        "password": password,
        "web": deployment("web", "settings"),
    }
    resources["web"]["depends_on"] = ["settings"]
    apply_stack(cluster, namespace, "app", resources)

    def web_ready() -> dict[str, Any] | None:
        make_available(cluster, namespace, "web")
        return settled_status(cluster, namespace, "app")

    status = operator_process.eventually("the Deployment to become available", web_ready)
    assert status["phase"] == "CREATE_COMPLETE", status.get("statusReason")
    ip = cluster.get_json(namespace, "service", "web")["spec"]["clusterIP"]
    config = cluster.get_json(namespace, "configmap", "settings")
    assert config["data"] == {"SERVICE_IP": ip, "SERVICE_NAME": "web"}
    labels = config["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "app"
    assert config["metadata"]["ownerReferences"][0]["kind"] == "StackResource"
    [secret] = resource_secrets(cluster, namespace)
    old_secret = secret["metadata"]["name"]
    assert old_secret.startswith("app-password-"), old_secret
    shown = cluster.get_json(namespace, "configmap", "settings", "--show-managed-fields")
    managed_fields = {f["manager"] for f in shown["metadata"]["managedFields"]}
    assert "convergence" in managed_fields

    # Update in place, replace a generated name (create before delete), replace a fixed
    # name (delete first: a Service's clusterIP is immutable).
    settings["properties"]["manifest"]["data"]["EXTRA"] = "1"
    password["properties"]["manifest"]["metadata"] = {}
    password["properties"]["manifest"]["kind"] = "Secret"
    password["properties"]["manifest"]["type"] = "example.com/other"  # immutable
    service["properties"]["manifest"]["spec"]["clusterIP"] = "None"  # immutable: headless
    config_uid = config["metadata"]["uid"]
    service_uid = cluster.get_json(namespace, "service", "web")["metadata"]["uid"]
    apply_stack(cluster, namespace, "app", resources)
    status = operator_process.eventually("the update to finish", web_ready)
    assert status["phase"] == "UPDATE_COMPLETE", status.get("statusReason")
    config = cluster.get_json(namespace, "configmap", "settings")
    assert config["metadata"]["uid"] == config_uid, "updated in place"
    assert config["data"]["EXTRA"] == "1"
    assert config["data"]["SERVICE_IP"] == "None", "the new Service's clusterIP flowed in"
    service = cluster.get_json(namespace, "service", "web")
    assert service["metadata"]["uid"] != service_uid, "replaced (delete first)"
    [secret] = resource_secrets(cluster, namespace)
    assert secret["metadata"]["name"] != old_secret, "replaced under a new name, old one gone"
    records = cluster.get_json(namespace, "stackresources")["items"]
    modes = {r["spec"]["resource"]: r["status"]["pluginData"]["replacement"] for r in records}
    assert modes == {
        "svc": "delete-first",
        "settings": "delete-first",
        "password": "create-before-delete",
        "web": "delete-first",
    }

    cluster.kubectl("delete", "stack", "app", f"--namespace={namespace}", "--wait=false")
    operator_process.eventually(
        "the stack to be gone", lambda: cluster.get_json(namespace, "stack", "app") is None
    )
    for kind in ("deployments", "services", "configmaps", "secrets"):
        left = cluster.get_json(namespace, kind, "-l", MANAGED)["items"]
        assert left == [], f"{kind} left behind: {[i['metadata']['name'] for i in left]}"


def test_a_stack_without_service_account_is_confined_to_its_namespace(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    role = {
        "type": "Kubernetes::Object",
        "properties": {
            "manifest": {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": f"{namespace}-escalate"},
                "rules": [],
            }
        },
    }
    apply_stack(cluster, namespace, "grab", {"role": role})
    status = wait_for_stack(cluster, namespace, "grab", "CREATE_FAILED", operator=operator_process)
    assert f"ClusterRole {namespace}-escalate is cluster-scoped" in status["statusReason"]
    assert cluster.get_json("default", "clusterrole", f"{namespace}-escalate") is None


def test_a_stack_acts_only_with_its_service_accounts_rights(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    cluster.kubectl("create", "serviceaccount", "deployer", f"--namespace={namespace}")
    cluster.kubectl(
        "create", "role", "deployer", f"--namespace={namespace}",
        "--verb=get,create,patch,delete", "--resource=configmaps",
    )  # fmt: skip
    cluster.kubectl(
        "create", "rolebinding", "deployer", f"--namespace={namespace}", "--role=deployer",
        f"--serviceaccount={namespace}:deployer",
    )  # fmt: skip
    allowed = obj("ConfigMap", "allowed", data={"a": "1"})
    apply_stack(cluster, namespace, "ok", {"cm": allowed}, serviceAccountName="deployer")
    wait_for_stack(cluster, namespace, "ok", "CREATE_COMPLETE", operator=operator_process)
    assert cluster.get_json(namespace, "configmap", "allowed")["data"] == {"a": "1"}

    role = {
        "type": "Kubernetes::Object",
        "properties": {
            "manifest": {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": f"{namespace}-escalate"},
                "rules": [],
            }
        },
    }
    apply_stack(cluster, namespace, "role", {"role": role}, serviceAccountName="deployer")
    status = wait_for_stack(cluster, namespace, "role", "CREATE_FAILED", operator=operator_process)
    reason = status["statusReason"]
    assert f"ClusterRole {namespace}-escalate: " in reason, reason
    assert "is forbidden" in reason, reason
    assert f"system:serviceaccount:{namespace}:deployer" in reason, reason
    assert cluster.get_json("default", "clusterrole", f"{namespace}-escalate") is None

    elsewhere = obj("Secret", "stolen", stringData={"k": "v"})
    elsewhere["properties"]["manifest"]["metadata"]["namespace"] = "default"
    apply_stack(cluster, namespace, "away", {"s": elsewhere}, serviceAccountName="deployer")
    status = wait_for_stack(cluster, namespace, "away", "CREATE_FAILED", operator=operator_process)
    reason = status["statusReason"]
    assert "Secret default/stolen: " in reason, reason
    assert "is forbidden" in reason, reason
    assert cluster.get_json("default", "secret", "stolen") is None
