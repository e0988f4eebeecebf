"""The local control plane is the real thing: a v1.36 API server with RBAC and token signing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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
        assert [p["name"] for p in pids] == ["etcd", "kube-apiserver", "kube-controller-manager"]
        assert plane.up() == first, "a second up must reuse the running control plane"
        assert json.loads((tmp_path / "cp" / "pids.json").read_text()) == pids
    finally:
        plane.down()
    for entry in pids:
        assert not Path(f"/proc/{entry['pid']}").exists() or not Path(
            f"/proc/{entry['pid']}/cmdline"
        ).read_bytes().startswith(entry["binary"].encode()), f"{entry['name']} still runs"
    assert not (tmp_path / "cp").exists(), "down must remove the state directory"


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
