"""Template revisions on the real control plane.

One ControllerRevision per traversal's template, the last completed one labelled, old ones
pruned beyond spec.revisionHistoryLimit, and parameter values (hidden ones included) kept in a
Secret, never in the ControllerRevision.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

HIDDEN = "s3cret-value-never-shown"


def _apply(cluster: Cluster, namespace: str, value: str, fail: bool = False) -> None:
    template = hot.template(
        {
            "a": {
                "type": "OS::Heat::TestResource",
                "properties": {"value": {"get_param": "value"}, "fail": fail},
            }
        },
        parameters={"password": {"type": "string", "hidden": True}, "value": {"type": "string"}},
    )
    body = hot.stack(
        "revs",
        template,
        namespace,
        revisionHistoryLimit=1,
        disableRollback=not fail,
        parameters={"password": HIDDEN, "value": value},
    )
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def _complete(cluster: Cluster, namespace: str, operator: OperatorProcess, phase: str) -> None:
    """The stack in `phase`, and that phase reported (revisions are marked and pruned then)."""
    wait_for_stack(cluster, namespace, "revs", phase, operator=operator)

    def reported() -> bool:
        status = (cluster.get_json(namespace, "stack", "revs") or {}).get("status") or {}
        return str(status.get("reportedPhase", "")).startswith(phase)

    operator.eventually(f"{phase} reported", reported)


def _revisions(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    listed = cluster.get_json(namespace, "controllerrevisions", "-l=convergence.dev/stack=revs")
    return sorted(listed["items"], key=lambda item: item["revision"])


def test_revisions_are_pruned_marked_and_keep_parameter_values_out_of_sight(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    for value, phase in [
        ("one", "CREATE_COMPLETE"),
        ("two", "UPDATE_COMPLETE"),
        ("three", "UPDATE_COMPLETE"),
        ("four", "UPDATE_COMPLETE"),
    ]:
        _apply(cluster, namespace, value)
        _complete(cluster, namespace, operator_process, phase)

    stack = cluster.get_json(namespace, "stack", "revs")
    current = stack["status"]["currentRevision"]
    assert stack["status"]["lastCompletedRevision"] == current, stack["status"]
    # The current (= last completed) revision plus at most one spare survive.
    revisions = operator_process.eventually(
        "old revisions pruned",
        lambda: (found := _revisions(cluster, namespace)) and len(found) <= 2 and found,
    )
    names = [item["metadata"]["name"] for item in revisions]
    assert current in names, (current, names)
    marked = [
        item["metadata"]["name"]
        for item in revisions
        if item["metadata"].get("labels", {}).get("convergence.dev/last-completed") == "true"
    ]
    assert marked == [current], (marked, current)

    for item in revisions:
        assert HIDDEN not in json.dumps(item), item["metadata"]["name"]
        assert "parameters" not in item["data"], item["data"]
        # Its values are in the Secret of the same name, which goes with it.
        secret = cluster.get_json(namespace, "secret", item["metadata"]["name"])
        assert secret is not None, item["metadata"]["name"]
        assert secret.get("immutable") is True, item["metadata"]["name"]
    secrets = cluster.get_json(namespace, "secrets", "-l=convergence.dev/stack=revs")["items"]
    assert sorted(s["metadata"]["name"] for s in secrets) == sorted(names)

    # A failed update rolls back to the last completed template, whose parameter
    # values the operator reads back from its Secret.
    _apply(cluster, namespace, "five", fail=True)
    _complete(cluster, namespace, operator_process, "ROLLBACK_COMPLETE")
    configmaps = cluster.get_json(namespace, "configmaps", "-l=convergence.dev/resource=a")
    (physical,) = configmaps["items"]
    assert json.loads(physical["data"]["attributes"])["output"] == "four", physical["data"]
