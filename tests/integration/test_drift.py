"""Drift repair on the real control plane.

A managed object changed or deleted by hand is put back, with a Warning Event and the Stack's
`Drifted` condition; `repairDrift: false` turns it off.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

DRIFT_INTERVAL = "2"


@pytest.fixture(scope="module")
def operator_process(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator with a drift check every 2 s instead of every 30 s."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    saved = os.environ.get("CONVERGENCE_DRIFT_INTERVAL")
    os.environ["CONVERGENCE_DRIFT_INTERVAL"] = DRIFT_INTERVAL
    try:
        with OperatorProcess(cluster.kubeconfig, log) as process:
            yield process
    finally:
        if saved is None:
            del os.environ["CONVERGENCE_DRIFT_INTERVAL"]
        else:
            os.environ["CONVERGENCE_DRIFT_INTERVAL"] = saved
    print(f"operator log: {log}")


def _json(cluster: Cluster, namespace: str, *what: str) -> Any:
    result = cluster.kubectl("get", f"--namespace={namespace}", *what, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _eventually(
    what: str, probe: Callable[[], Any], operator: OperatorProcess, timeout: float = 60
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; operator log:\n{operator.tail()}")
        time.sleep(0.5)


def _apply(cluster: Cluster, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "convergence.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "template": {
                "heat_template_version": "2021-04-16",
                "resources": {
                    "settings": {
                        "type": "Kubernetes::Object",
                        "properties": {
                            "manifest": {
                                "apiVersion": "v1",
                                "kind": "ConfigMap",
                                "metadata": {"name": f"{name}-settings"},
                                "data": {"colour": "blue"},
                            }
                        },
                    }
                },
            },
            **spec,
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    cluster.kubectl(
        "wait",
        f"--namespace={namespace}",
        "--for=condition=Ready",
        f"stack/{name}",
        "--timeout=90s",
    )


def _colour(cluster: Cluster, namespace: str, name: str) -> str | None:
    body = _json(cluster, namespace, "configmap", f"{name}-settings")
    return None if body is None else (body.get("data") or {}).get("colour")


def _drifted(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    body = _json(cluster, namespace, "stack", name) or {}
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Drifted":
            return dict(condition)
    return None


def test_a_changed_and_a_deleted_object_are_put_back_and_reported(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    _apply(cluster, namespace, "drifty")
    cluster.kubectl(
        "patch",
        f"--namespace={namespace}",
        "configmap",
        "drifty-settings",
        "--type=merge",
        "-p",
        '{"data": {"colour": "red"}}',
    )
    _eventually(
        "the changed ConfigMap put back",
        lambda: _colour(cluster, namespace, "drifty") == "blue",
        operator_process,
    )
    condition = _eventually(
        "the Drifted condition",
        lambda: (c := _drifted(cluster, namespace, "drifty")) and c["status"] == "True" and c,
        operator_process,
    )
    assert "settings" in condition["message"], condition
    events = _json(cluster, namespace, "events", "--field-selector=reason=DriftRepaired")
    assert any("settings" in e["message"] for e in events["items"]), events["items"]

    cluster.kubectl("delete", f"--namespace={namespace}", "configmap", "drifty-settings")
    _eventually(
        "the deleted ConfigMap made again",
        lambda: _colour(cluster, namespace, "drifty") == "blue",
        operator_process,
    )
    # A check that finds nothing clears the condition.
    _eventually(
        "Drifted back to False",
        lambda: (c := _drifted(cluster, namespace, "drifty")) and c["status"] == "False",
        operator_process,
    )


def test_repair_drift_false_leaves_changes_alone(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    _apply(cluster, namespace, "hands-off", repairDrift=False)
    cluster.kubectl(
        "patch",
        f"--namespace={namespace}",
        "configmap",
        "hands-off-settings",
        "--type=merge",
        "-p",
        '{"data": {"colour": "red"}}',
    )
    # Several check intervals pass; the change stays and nothing is reported.
    time.sleep(int(DRIFT_INTERVAL) * 4)
    assert _colour(cluster, namespace, "hands-off") == "red"
    assert _drifted(cluster, namespace, "hands-off") is None
