"""Drift repair on the real control plane.

A managed object changed or deleted by hand is put back, with a Warning Event and the Stack's
`Drifted` condition; `repairDrift: false` turns it off.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

DRIFT_INTERVAL = "2"


@pytest.fixture(scope="module")
def operator_env() -> dict[str, str]:
    """The operator with a drift check every 2 s instead of every 30 s."""
    return {"CONVERGENCE_DRIFT_INTERVAL": DRIFT_INTERVAL}


def _apply(cluster: Cluster, namespace: str, name: str, **spec: Any) -> None:
    settings = {
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
    body = hot.stack(name, hot.template({"settings": settings}), namespace, **spec)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    cluster.kubectl(
        "wait",
        f"--namespace={namespace}",
        "--for=condition=Ready",
        f"stack/{name}",
        "--timeout=90s",
    )


def _colour(cluster: Cluster, namespace: str, name: str) -> str | None:
    body = cluster.get_json(namespace, "configmap", f"{name}-settings")
    return None if body is None else (body.get("data") or {}).get("colour")


def _drifted(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    body = cluster.get_json(namespace, "stack", name) or {}
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
    operator_process.eventually(
        "the changed ConfigMap put back", lambda: _colour(cluster, namespace, "drifty") == "blue"
    )
    condition = operator_process.eventually(
        "the Drifted condition",
        lambda: (c := _drifted(cluster, namespace, "drifty")) and c["status"] == "True" and c,
    )
    assert "settings" in condition["message"], condition
    events = cluster.get_json(namespace, "events", "--field-selector=reason=DriftRepaired")
    assert any("settings" in e["message"] for e in events["items"]), events["items"]

    cluster.kubectl("delete", f"--namespace={namespace}", "configmap", "drifty-settings")
    operator_process.eventually(
        "the deleted ConfigMap made again", lambda: _colour(cluster, namespace, "drifty") == "blue"
    )
    # A check that finds nothing clears the condition.
    operator_process.eventually(
        "Drifted back to False",
        lambda: (c := _drifted(cluster, namespace, "drifty")) and c["status"] == "False",
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
