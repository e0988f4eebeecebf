"""OS::Heat::Stack on the real control plane: the child is a Stack its parent owns."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from convergence.operator.engine.plugin import ResourceFailure
from convergence.operator.kube.nested import KubernetesStacks
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

CHILD = yaml.safe_dump(
    hot.template(
        hot.resources(
            "OS::Heat::TestResource",
            inner={"properties": {"value": {"get_param": "word"}}},
        ),
        parameters={"word": {"type": "string"}},
        outputs={"said": {"value": {"get_attr": ["inner", "output"]}}},
    )
)

CHILD_TEMPLATE = yaml.safe_load(CHILD)

PARENT = hot.template(
    {
        "db": {
            "type": "OS::Heat::Stack",
            "properties": {"template": CHILD, "parameters": {"word": {"get_param": "greeting"}}},
        },
        "app": {
            "type": "OS::Heat::TestResource",
            "properties": {"value": {"get_attr": ["db", "outputs", "said"]}},
        },
    },
    parameters={"greeting": {"type": "string"}},
    outputs={"child": {"value": {"get_resource": "db"}}},
)


def get(cluster: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(
        cluster.kubectl("get", f"--namespace={namespace}", *what, "-o", "json").stdout
    )


def apply_parent(cluster: Cluster, namespace: str, greeting: str, **spec: Any) -> None:
    manifest = hot.stack(
        "parent", PARENT, namespace=namespace, parameters={"greeting": greeting}, **spec
    )
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def configmap_value(cluster: Cluster, namespace: str, stack: str, resource: str) -> Any:
    selector = f"convergence.dev/stack={stack},convergence.dev/resource={resource}"
    (item,) = get(cluster, namespace, "configmaps", "-l", selector)["items"]
    return item["metadata"]["name"], json.loads(item["data"]["properties"])["value"]


def test_a_nested_stack_is_a_stack_its_parent_owns_and_updates_in_place(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    apply_parent(cluster, namespace, "hello", serviceAccountName="tenant")
    status = wait_for_stack(
        cluster, namespace, "parent", "CREATE_COMPLETE", operator=operator_process
    )
    child_name = status["outputs"]["child"]
    parent = get(cluster, namespace, "stack", "parent")
    child = get(cluster, namespace, "stack", child_name)

    # A Stack of its own, owned by the parent and acting with the parent's identity.
    owners = [
        (o["kind"], o["name"], o["uid"]) for o in child["metadata"].get("ownerReferences", [])
    ]
    assert owners == [("Stack", "parent", parent["metadata"]["uid"])], owners
    assert child["spec"]["serviceAccountName"] == "tenant"
    assert child["spec"]["parameters"] == {"word": "hello"}
    assert "parametersFrom" not in child["spec"]
    labels = child["metadata"]["labels"]
    assert (labels["convergence.dev/stack"], labels["convergence.dev/resource"]) == (
        "parent",
        "db",
    )
    assert child["status"]["phase"] == "CREATE_COMPLETE"
    assert child["status"]["outputs"] == {"said": "hello"}
    # The child's output reached the sibling through get_attr [db, outputs, said].
    inner, value = configmap_value(cluster, namespace, child_name, "inner")
    assert value == "hello"
    assert configmap_value(cluster, namespace, "parent", "app")[1] == "hello"

    # A new parameter value updates the same child in place, and the sibling follows.
    apply_parent(cluster, namespace, "bye", serviceAccountName="tenant")
    status = wait_for_stack(
        cluster, namespace, "parent", "UPDATE_COMPLETE", operator=operator_process
    )
    assert status["outputs"]["child"] == child_name
    updated = get(cluster, namespace, "stack", child_name)
    assert updated["metadata"]["uid"] == child["metadata"]["uid"], "the child was replaced"
    assert updated["status"]["phase"] == "UPDATE_COMPLETE"
    assert updated["status"]["outputs"] == {"said": "bye"}
    assert configmap_value(cluster, namespace, child_name, "inner") == (inner, "bye")
    assert configmap_value(cluster, namespace, "parent", "app")[1] == "bye"

    # Deleting the parent deletes the child and everything either had.
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "parent", "--wait=false")

    def nothing_left() -> bool:
        return all(
            get(cluster, namespace, kind)["items"] == []
            for kind in ("stacks", "stackresources", "controllerrevisions")
        ) and (
            get(cluster, namespace, "configmaps", "-l", "app.kubernetes.io/managed-by=convergence")[
                "items"
            ]
            == []
        )

    operator_process.eventually("the parent and its child to leave nothing", nothing_left)


def test_a_failed_child_fails_its_resource_with_the_childs_reason(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    broken = yaml.safe_dump(
        hot.template(hot.resources("OS::Heat::TestResource", broken={"properties": {"fail": True}}))
    )
    template = hot.template({"db": {"type": "OS::Heat::Stack", "properties": {"template": broken}}})
    manifest = hot.stack("failing", template, namespace=namespace)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    status = wait_for_stack(
        cluster, namespace, "failing", "CREATE_FAILED", operator=operator_process
    )
    reason = status["statusReason"]
    assert "nested stack failing-db-" in reason, reason
    assert "CREATE_FAILED" in reason, reason
    assert "broken" in reason, reason


BAD_CHILD = "heat_template_version: 2021-04-16\nresources: {a: {type: OS::Nova::Server}}\n"


def bad_parent(namespace: str) -> dict[str, Any]:
    template = hot.template(
        {"db": {"type": "OS::Heat::Stack", "properties": {"template": BAD_CHILD}}}
    )
    return hot.stack("bad", template, namespace=namespace)


def test_an_invalid_child_template_fails_the_parent_with_the_childs_errors(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    # No webhook here: the child Stack is stored, and its status says why it never started.
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(bad_parent(namespace)))
    status = wait_for_stack(cluster, namespace, "bad", "CREATE_FAILED", operator=operator_process)
    reason = status["statusReason"]
    assert "unknown resource type 'OS::Nova::Server'" in reason, reason
    assert "nested stack bad-db-" in reason, reason


def test_a_stack_of_a_childs_name_that_the_parent_does_not_own_is_never_taken_or_deleted(
    cluster: Cluster, namespace: str, api_client: ApiClient
) -> None:
    """A child's name is derived; a Stack someone else made under it stays theirs."""
    for name in ("parent", "theirs"):
        manifest = hot.stack(name, hot.template({}), namespace=namespace)
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    before = get(cluster, namespace, "stack", "theirs")
    children = KubernetesStacks(api_client, namespace).for_stack("parent")
    with pytest.raises(ResourceFailure, match="not a nested stack of parent"):
        children.apply("theirs", CHILD_TEMPLATE, {"word": "x"}, resource="db", record_id="r1")
    with pytest.raises(ResourceFailure, match="not a nested stack of parent"):
        children.delete("theirs")
    after = get(cluster, namespace, "stack", "theirs")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"] == before["spec"], "the stranger's spec was rewritten"
    assert after["metadata"].get("deletionTimestamp") is None
    # Its own child it does apply and delete.
    children.apply("parent-db-own", CHILD_TEMPLATE, {"word": "x"}, resource="db", record_id="r1")
    children.delete("parent-db-own")
