"""The StackResource finalizer on the real control plane: a StackResource deleted by hand while
its stack uses it keeps its physical resource, the Stack says so, and the next update replaces
it and lets the old object go; nothing is left after the stack is deleted."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

FINALIZER = "convergence.dev/physical-resource"


def _records(cluster: Cluster, namespace: str, resource: str) -> list[dict[str, Any]]:
    listed = cluster.get_json(
        namespace, "stackresources", f"-l=convergence.dev/resource={resource}"
    )
    return list(listed["items"])


def _configmaps(cluster: Cluster, namespace: str, resource: str) -> list[str]:
    listed = cluster.get_json(namespace, "configmaps", f"-l=convergence.dev/resource={resource}")
    return sorted(item["metadata"]["name"] for item in listed["items"])


def _condition(cluster: Cluster, namespace: str, kind: str) -> dict[str, Any] | None:
    body = cluster.get_json(namespace, "stack", "held") or {}
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def test_a_stackresource_deleted_by_hand_is_kept_reported_and_replaced_by_the_next_update(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    resources = hot.resources(
        "OS::Heat::TestResource",
        a={"properties": {"value": "one"}},
        b={"properties": {"value": {"get_resource": "a"}}},
    )
    stack = hot.stack("held", hot.template(resources), namespace)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(stack))
    cluster.kubectl(
        "wait", f"--namespace={namespace}", "--for=condition=Ready", "stack/held", "--timeout=60s"
    )
    (record,) = _records(cluster, namespace, "a")
    assert FINALIZER in record["metadata"]["finalizers"], record["metadata"]
    (physical,) = _configmaps(cluster, namespace, "a")

    cluster.kubectl(
        "delete",
        f"--namespace={namespace}",
        "stackresource",
        record["metadata"]["name"],
        "--wait=false",
    )
    condition = operator_process.eventually(
        "the Stack's ResourceDeleted condition",
        lambda: (
            (c := _condition(cluster, namespace, "ResourceDeleted")) and c["status"] == "True" and c
        ),
    )
    assert record["metadata"]["name"] in condition["message"], condition
    events = cluster.get_json(namespace, "events", "--field-selector=reason=DeletedWhileInUse")
    kinds = {event["involvedObject"]["kind"] for event in events["items"]}
    assert kinds == {"Stack", "StackResource"}, events["items"]
    # Held by its finalizer, with its physical resource, until a convergence decides.
    time.sleep(2)
    (held,) = _records(cluster, namespace, "a")
    assert held["metadata"].get("deletionTimestamp"), held["metadata"]
    assert _configmaps(cluster, namespace, "a") == [physical]

    cluster.kubectl(
        "annotate",
        f"--namespace={namespace}",
        "--overwrite",
        "stack/held",
        "convergence.dev/retry=after-hand-delete",
    )
    operator_process.eventually(
        "the deleted record replaced and gone",
        lambda: (
            [r["metadata"]["name"] for r in _records(cluster, namespace, "a")]
            not in ([], [record["metadata"]["name"]])
            and all(
                not r["metadata"].get("deletionTimestamp")
                for r in _records(cluster, namespace, "a")
            )
        ),
    )
    wait_for_stack(cluster, namespace, "held", "UPDATE_COMPLETE", operator=operator_process)
    (replacement,) = _configmaps(cluster, namespace, "a")
    assert replacement != physical
    (b_physical,) = _configmaps(cluster, namespace, "b")
    b_data = cluster.get_json(namespace, "configmap", b_physical)["data"]
    assert json.loads(b_data["attributes"])["output"] == replacement, b_data
    operator_process.eventually(
        "ResourceDeleted back to False",
        lambda: (c := _condition(cluster, namespace, "ResourceDeleted")) and c["status"] == "False",
    )

    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "held", "--timeout=60s")
    assert _records(cluster, namespace, "a") + _records(cluster, namespace, "b") == []
    assert _configmaps(cluster, namespace, "a") + _configmaps(cluster, namespace, "b") == []
