"""Stacks converge under the chart's identity: create, replace, fail and roll back, delete.

Reality is checked through the ConfigMaps that stand for OS::Heat::TestResource,
and every delete must leave nothing behind: no StackResources, no ConfigMaps
of the stack, no template revisions, no finalizers (the namespace goes away).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from convergence_e2e import (
    EXAMPLES,
    LOCAL,
    OPERATOR_USER,
    RELEASE_NAMESPACE,
    STACK_LABEL,
    Kube,
    Operator,
    condition,
    physical,
    wait_until,
)

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import wait_for_stack


def assert_nothing_left(kube: Kube, namespace: str) -> None:
    assert kube.items("stacks", namespace=namespace) == []
    assert kube.items("stackresources", namespace=namespace) == [], "StackResources left"
    assert kube.items("configmaps", "-l", STACK_LABEL, namespace=namespace) == [], (
        "physical resources (ConfigMaps labelled with the stack) left"
    )
    assert kube.items("controllerrevisions", "-l", STACK_LABEL, namespace=namespace) == [], (
        "template revisions left"
    )


def delete_namespace(kube: Kube, namespace: str) -> None:
    """Deleting the namespace completes: nothing in it holds a finalizer."""
    kube.kubectl("delete", "namespace", namespace, "--timeout=120s")
    assert not kube.exists("namespace", namespace)


def test_a_stack_is_created_replaced_and_deleted(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    kube.kubectl("apply", f"--namespace={namespace}", "-f", str(EXAMPLES / "hello-stack.yaml"))
    try:
        kube.wait("stack/hello", "condition=Ready", namespace)
    except AssertionError:
        pytest.fail(f"hello did not become Ready; operator log:\n{operator.tail()}")
    wait_for_stack(kube.cluster, namespace, "hello", "CREATE_COMPLETE", operator=operator)
    stack = kube.get("stack", "hello", namespace=namespace)
    assert stack["status"]["outputs"] == {"message": "hello, world"}
    assert stack["metadata"]["finalizers"] == ["convergence.dev/stack-cleanup"]
    reality = physical(kube, namespace)
    assert sorted(reality) == ["first", "second", "third"]
    assert reality["third"]["value"] == f"{reality['first']['id']}-hello, world"

    # update_replace_value cannot change in place: `first` is replaced, its
    # dependents move to the new one, and the old one is cleaned up.
    patch = {
        "spec": {
            "parameters": {"greeting": "hey"},
            "template": {
                "resources": {
                    "first": {
                        "properties": {
                            "value": {"get_param": "greeting"},
                            "update_replace_value": "v2",
                        }
                    }
                }
            },
        }
    }
    kube.kubectl(
        "patch", f"--namespace={namespace}", "stack/hello", "--type=merge", "-p", json.dumps(patch)
    )
    wait_for_stack(kube.cluster, namespace, "hello", "UPDATE_COMPLETE", operator=operator)
    after = physical(kube, namespace)
    assert after["first"]["id"] != reality["first"]["id"], "first must have been replaced"
    assert after["second"]["id"] == reality["second"]["id"], "second is updated in place"
    assert after["third"]["value"] == f"{after['first']['id']}-hey, world"

    # The replaced record is deleted by the cleanup; its finalizer goes a moment later.
    def three_records() -> bool:
        return len(kube.items("stackresources", namespace=namespace)) == 3

    assert wait_until(three_records, timeout=30), "the replaced StackResource is left"

    kube.kubectl("delete", f"--namespace={namespace}", "stack/hello", "--timeout=120s")
    assert_nothing_left(kube, namespace)
    delete_namespace(kube, namespace)


def rolling_back_stack(fail: bool, value: str) -> dict[str, Any]:
    resource = {"type": "OS::Heat::TestResource", "properties": {"value": value, "fail": fail}}
    template = hot.template(
        {
            "base": {"type": "OS::Heat::TestResource", "properties": {"value": "a"}},
            "flaky": {**resource, "depends_on": "base"},
        }
    )
    return hot.stack("hello", template, disableRollback=False)


def test_a_failed_update_rolls_back_to_the_last_good_template(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    kube.apply([rolling_back_stack(fail=False, value="good")], namespace=namespace)
    wait_for_stack(kube.cluster, namespace, "hello", "CREATE_COMPLETE", operator=operator)
    before = physical(kube, namespace)
    assert before["flaky"]["value"] == "good"

    kube.apply([rolling_back_stack(fail=True, value="bad")], namespace=namespace)
    wait_for_stack(kube.cluster, namespace, "hello", "ROLLBACK_COMPLETE", operator=operator)
    stack = kube.get("stack", "hello", namespace=namespace)
    assert condition(stack, "Ready").get("status") == "True", stack["status"]
    after = physical(kube, namespace)
    assert after["flaky"]["value"] == "good", "the rollback restores the last good properties"
    assert after["base"]["id"] == before["base"]["id"], "an untouched resource is kept"
    reasons: set[str] = set()

    def reported() -> bool:
        """kopf posts Events in the background, a moment after the status."""
        nonlocal reasons
        events = kube.items(
            "events", "--field-selector=involvedObject.name=hello", namespace=namespace
        )
        reasons = {e["reason"] for e in events}
        return {"UpdateFailed", "RollbackComplete"} <= reasons

    assert wait_until(reported, timeout=15), f"Events of the rollback missing: {reasons}"

    kube.kubectl("delete", f"--namespace={namespace}", "stack/hello", "--timeout=120s")
    assert_nothing_left(kube, namespace)
    delete_namespace(kube, namespace)


def test_the_operator_serves_metrics(kube: Kube, operator: Operator) -> None:
    if operator.mode == LOCAL:
        url = f"http://127.0.0.1:{operator.metrics_port}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())

    else:  # through the chart's metrics Service

        def scrape() -> str:
            service = f"/api/v1/namespaces/{RELEASE_NAMESPACE}/services/convergence-metrics:metrics"
            path = f"{service}/proxy/metrics"
            return kube.kubectl("get", "--raw", path)

    text = ""

    def has_traversals() -> bool:
        nonlocal text
        try:
            text = scrape()
        except OSError:
            return False
        return "convergence_" in text

    assert wait_until(has_traversals, timeout=30), f"no convergence metrics:\n{text[:2000]}"


def test_the_chart_grants_everything_the_operator_did(operator: Operator) -> None:
    """Over the whole session so far, the API server never refused the operator itself.

    (Refusals of a stack's own ServiceAccount, test_multi_tenant's, are not the chart's;
    nor is impersonation, which the chart grants only in multi-tenant mode: a Stack
    naming a ServiceAccount outside it is refused on purpose, as test_security shows.)
    """
    refused = f'"{OPERATOR_USER}" cannot'
    lines = [
        line
        for line in operator.tail(lines=1_000_000).replace("\\", "").splitlines()
        if refused in line and f"{refused} impersonate" not in line
    ]
    assert not lines, "the chart's RBAC lacks a rule the operator needs:\n" + "\n".join(
        line[:1000] for line in lines[:5]
    )
