"""The local control plane is the real thing: a v1.36 API server with RBAC and token signing,
the workload controllers and scheduler, and kwok's fake node, on which workloads become ready."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import ControlPlane, ControlPlaneError

pytestmark = pytest.mark.controlplane


def test_api_server_reports_kubernetes_1_36(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["major"] == "1", version
    assert version["minor"] == "36", version
    assert version["gitVersion"].startswith("v1.36."), (
        f"/version must report the stamped release, got {version['gitVersion']}"
    )


def test_authorization_is_rbac_not_always_allow(cluster: Cluster) -> None:
    # A ServiceAccount with no bindings must be refused: AlwaysAllow would hide
    # a broken chart RBAC in later tests.
    allowed = cluster.kubectl(
        "auth",
        "can-i",
        "create",
        "secrets",
        "--as=system:serviceaccount:default:default",
        check=False,
    )
    assert allowed.stdout.strip() == "no", allowed.stdout + allowed.stderr


def test_service_account_tokens_are_signed_and_accepted(cluster: Cluster) -> None:
    token = cluster.kubectl("create", "token", "default", "-n", "default").stdout.strip()
    assert token.count(".") == 2, "a TokenRequest must return a JWT"
    review = cluster.kubectl(
        "create",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            }
        ),
    )
    status = json.loads(review.stdout)["status"]
    assert status.get("authenticated") is True, status
    assert status["user"]["username"] == "system:serviceaccount:default:default"


def test_namespace_deletion_completes(cluster: Cluster) -> None:
    # Needs kube-controller-manager's namespace controller; without it the
    # namespace would stay Terminating forever.
    cluster.kubectl("create", "namespace", "cp-ns-deletion")
    cluster.kubectl("create", "configmap", "x", "-n", "cp-ns-deletion")
    cluster.kubectl("delete", "namespace", "cp-ns-deletion", "--timeout=90s")
    gone = cluster.kubectl("get", "namespace", "cp-ns-deletion", check=False)
    assert gone.returncode != 0, f"the namespace is still there: {gone.stdout}"
    assert "NotFound" in gone.stderr, gone.stderr


def test_up_is_idempotent_and_down_stops_only_its_processes(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "cp")
    first = plane.up()
    try:
        pids = json.loads((tmp_path / "cp" / "pids.json").read_text())
        assert [p["name"] for p in pids] == [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        ]
        assert plane.up() == first, "a second up must reuse the running control plane"
        assert json.loads((tmp_path / "cp" / "pids.json").read_text()) == pids
    finally:
        plane.down()
    for entry in pids:
        assert not Path(f"/proc/{entry['pid']}").exists() or not Path(
            f"/proc/{entry['pid']}/cmdline"
        ).read_bytes().startswith(entry["binary"].encode()), f"{entry['name']} still runs"
    assert not (tmp_path / "cp").exists(), "down must remove the state directory"


def test_a_component_that_exits_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import convergence.operator.testing.controlplane as controlplane

    monkeypatch.setattr(controlplane, "KWOK_STAGES", tmp_path / "no-such-stages.yaml")
    with pytest.raises(ControlPlaneError, match="kwok exited before it was ready") as error:
        ControlPlane(tmp_path / "cp").up()
    assert "last lines of" in str(error.value)
    assert "kwok.log" in str(error.value)
    assert not (tmp_path / "cp" / "pids.json").exists(), "a failed start must leave no process"


def test_port_in_use_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import convergence.operator.testing.controlplane as controlplane

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(controlplane, "free_port", lambda: port)
        with pytest.raises(ControlPlaneError, match=f"port 127.0.0.1:{port} is in use"):
            ControlPlane(tmp_path / "cp").up()
    assert not (tmp_path / "cp" / "pids.json").exists(), "a failed start must leave no process"


def test_missing_go_is_a_clear_error(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "e2e" / "controlplane" / "build.sh"
    result = subprocess.run(
        ["/bin/bash", str(script)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Go is not installed" in result.stderr, result.stderr


# --- workloads on kwok's fake node --------------------------------------------
#
# No kubelet runs: kube-scheduler binds Pods to the fake node and kwok plays
# their lifecycle, so any image name will do. A real cluster would pull it.

fake_nodes_only = pytest.mark.skipif(
    os.environ.get("USE_EXISTING_CLUSTER") == "1",
    reason="needs the local control plane's fake node (the image does not exist)",
)
IMAGE = "registry.invalid/app:1"


def _get(cluster: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(cluster.kubectl("get", "-n", namespace, "-o", "json", *what).stdout)


def _apply(cluster: Cluster, namespace: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )


def _workload(kind: str, name: str, replicas: int | None, **spec: Any) -> dict[str, Any]:
    """A Deployment, StatefulSet or DaemonSet (replicas None) of IMAGE labelled app=name."""
    labels = {"app": name}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": IMAGE, "ports": [{"containerPort": 8080}]}
                    ]
                },
            },
            **spec,
        },
    }


def _eventually(check: Any, timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout:.0f}s: {what}")
        time.sleep(0.25)


def test_the_fake_node_is_ready_and_schedulable(cluster: Cluster) -> None:
    if os.environ.get("USE_EXISTING_CLUSTER") == "1":
        pytest.skip("the local control plane's own node")
    node = json.loads(cluster.kubectl("get", "node", "kwok-node-0", "-o", "json").stdout)
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready, node["status"]
    assert ready[0]["status"] == "True", node["status"]
    assert not node["spec"].get("taints"), "a taint would keep ordinary pods off the node"
    assert not node["spec"].get("unschedulable")


@fake_nodes_only
def test_a_deployment_becomes_available(cluster: Cluster, namespace: str) -> None:
    _apply(cluster, namespace, _workload("Deployment", "web", 3))
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "--timeout=60s", "deployment/web"
    )
    status = _get(cluster, namespace, "deployment/web")["status"]
    assert status.get("readyReplicas") == status.get("availableReplicas") == 3, status
    pods = _get(cluster, namespace, "pods", "-l", "app=web")["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["nodeName"] == "kwok-node-0", "kube-scheduler binds the pods"
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"].startswith("10.244."), pod["status"]


@fake_nodes_only
def test_a_deployment_scales_and_rolls_out(cluster: Cluster, namespace: str) -> None:
    _apply(cluster, namespace, _workload("Deployment", "web", 1))
    cluster.kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=60s")
    changed = _workload("Deployment", "web", 2)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/app:2"
    _apply(cluster, namespace, changed)
    cluster.kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=60s")
    pods = _eventually(
        lambda: (
            [
                p
                for p in _get(cluster, namespace, "pods", "-l", "app=web")["items"]
                if "deletionTimestamp" not in p
            ]
            if len(_get(cluster, namespace, "pods", "-l", "app=web")["items"]) == 2
            else None
        ),
        what="the old pod is deleted (kwok removes terminating pods)",
    )
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"registry.invalid/app:2"}


@fake_nodes_only
def test_a_job_completes(cluster: Cluster, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "completions": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "job", "image": IMAGE}],
                }
            },
        },
    }
    _apply(cluster, namespace, job)
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "--timeout=60s", "job/once"
    )
    assert _get(cluster, namespace, "job/once")["status"].get("succeeded") == 2


@fake_nodes_only
def test_a_statefulset_becomes_ready(cluster: Cluster, namespace: str) -> None:
    _apply(cluster, namespace, _workload("StatefulSet", "db", 2, serviceName="db"))
    cluster.kubectl("rollout", "status", "-n", namespace, "statefulset/db", "--timeout=60s")
    status = _get(cluster, namespace, "statefulset/db")["status"]
    assert status.get("readyReplicas") == status.get("availableReplicas") == 2, status
    names = {
        p["metadata"]["name"] for p in _get(cluster, namespace, "pods", "-l", "app=db")["items"]
    }
    assert names == {"db-0", "db-1"}


@fake_nodes_only
def test_a_daemonset_runs_on_the_fake_node(cluster: Cluster, namespace: str) -> None:
    _apply(cluster, namespace, _workload("DaemonSet", "agent", None))
    cluster.kubectl("rollout", "status", "-n", namespace, "daemonset/agent", "--timeout=60s")
    status = _get(cluster, namespace, "daemonset/agent")["status"]
    assert status.get("numberReady") == status.get("desiredNumberScheduled") == 1, status


@fake_nodes_only
def test_a_service_gets_a_cluster_ip_and_endpoint_slices(cluster: Cluster, namespace: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    _apply(cluster, namespace, _workload("Deployment", "web", 2), service)
    cluster_ip = _get(cluster, namespace, "service/web")["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.0.0."), cluster_ip
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "--timeout=60s", "deployment/web"
    )
    pod_ips = {
        p["status"]["podIP"] for p in _get(cluster, namespace, "pods", "-l", "app=web")["items"]
    }

    def ready_addresses() -> set[str] | None:
        slices = _get(cluster, namespace, "endpointslices", "-l", "kubernetes.io/service-name=web")[
            "items"
        ]
        addresses = {
            address
            for endpoint_slice in slices
            for endpoint in endpoint_slice.get("endpoints") or []
            if endpoint.get("conditions", {}).get("ready")
            for address in endpoint["addresses"]
        }
        return addresses if addresses == pod_ips else None

    _eventually(ready_addresses, what=f"EndpointSlices of service/web list the pods {pod_ips}")
    slices = _get(cluster, namespace, "endpointslices", "-l", "kubernetes.io/service-name=web")
    assert slices["items"][0]["ports"][0]["port"] == 8080


@fake_nodes_only
def test_deleting_a_namespace_with_pods_completes(cluster: Cluster) -> None:
    # Pods on a node end only when its kubelet (here kwok) lets them go.
    cluster.kubectl("create", "namespace", "cp-ns-with-pods")
    _apply(cluster, "cp-ns-with-pods", _workload("Deployment", "web", 2))
    cluster.kubectl(
        "wait",
        "-n",
        "cp-ns-with-pods",
        "--for=condition=Available",
        "--timeout=60s",
        "deployment/web",
    )
    cluster.kubectl("delete", "namespace", "cp-ns-with-pods", "--timeout=90s")
    gone = cluster.kubectl("get", "namespace", "cp-ns-with-pods", check=False)
    assert "NotFound" in gone.stderr, gone.stdout + gone.stderr
