"""The CRDs accept what Convergence writes and reject what they must not, at apply time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import REPO_ROOT

pytestmark = pytest.mark.controlplane

HELLO = REPO_ROOT / "examples" / "hello-stack.yaml"


def stack_resource(name: str, **spec: str) -> str:
    return json.dumps(
        {
            "apiVersion": "convergence.dev/v1alpha1",
            "kind": "StackResource",
            "metadata": {"name": name},
            "spec": {"stack": "hello", "resource": "first", "type": "OS::Heat::None", **spec},
        }
    )


def condition(type_: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": f"{type_} is {status}",
        "lastTransitionTime": "2026-11-24T12:00:00Z",
        "observedGeneration": 1,
    }


def test_stack_and_stack_resource_create_read_list_delete(cluster: Cluster, namespace: str) -> None:
    ns = f"--namespace={namespace}"
    cluster.kubectl("apply", ns, "-f", str(HELLO))
    cluster.kubectl("apply", ns, "-f", "-", input=stack_resource("hello-first-1"))

    got = json.loads(cluster.kubectl("get", ns, "stack", "hello", "-o", "json").stdout)
    assert got["spec"]["template"]["resources"]["first"]["type"] == "OS::Heat::TestResource"
    assert got["spec"]["disableRollback"] is True, "rollback is off by default, as in Heat"
    listed = json.loads(cluster.kubectl("get", ns, "stk", "-o", "json").stdout)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["hello"]
    by_category = cluster.kubectl("get", ns, "convergence", "-o", "name").stdout.split()
    assert sorted(by_category) == [
        "stack.convergence.dev/hello",
        "stackresource.convergence.dev/hello-first-1",
    ]

    cluster.kubectl("delete", ns, "stkr", "hello-first-1")
    cluster.kubectl("delete", ns, "stack", "hello")
    assert cluster.kubectl("get", ns, "convergence", "-o", "name").stdout.strip() == ""


def test_status_written_by_the_operator_is_accepted(cluster: Cluster, namespace: str) -> None:
    ns = f"--namespace={namespace}"
    cluster.kubectl("apply", ns, "-f", str(HELLO))
    cluster.kubectl("apply", ns, "-f", "-", input=stack_resource("hello-first-1"))
    stack_status = {
        "observedGeneration": 1,
        "phase": "CREATE_COMPLETE",
        "statusReason": "Stack CREATE completed successfully",
        "traversal": "3f1c",
        "currentRevision": "hello-1",
        "lastCompletedRevision": "hello-1",
        "outputs": {"message": "hello, world", "nested": {"a": [1, 2]}},
        "resources": {"total": 3, "ready": 3, "byPhase": {"CREATE_COMPLETE": 3}},
        "conditions": [condition("Ready", "True", "CreateComplete")],
    }
    cluster.kubectl(
        "patch",
        ns,
        "stack",
        "hello",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": stack_status}),
    )
    resource_status = {
        "phase": "CREATE_COMPLETE",
        "resourceId": "hello-first-abc123",
        "referenceId": "hello-first-abc123",
        "attributes": {"output": "hello"},
        "requires": [],
        "conditions": [
            condition("DependenciesReady", "True", "AllDependenciesReady"),
            condition("Ready", "True", "CreateComplete"),
        ],
        "syncPoints": {
            "update": {
                "hello-second-1": {
                    "traversal": "3f1c",
                    "data": {
                        "recordId": "hello-second-1",
                        "name": "second",
                        "referenceId": "hello-second-xyz",
                        "attributes": {"output": "x"},
                    },
                }
            }
        },
    }
    cluster.kubectl(
        "patch",
        ns,
        "stkr",
        "hello-first-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": resource_status}),
    )
    got = json.loads(cluster.kubectl("get", ns, "stack", "hello", "-o", "json").stdout)
    assert got["status"] == stack_status, "the API server pruned or changed the stack status"
    got = json.loads(cluster.kubectl("get", ns, "stkr", "hello-first-1", "-o", "json").stdout)
    assert got["status"] == resource_status, "the API server pruned or changed the status"


def test_malformed_stack_is_rejected_naming_the_field(cluster: Cluster, namespace: str) -> None:
    cases: dict[str, dict[str, Any]] = {
        "spec.template.resources.a.typo": {
            "heat_template_version": "2021-04-16",
            "resources": {"a": {"type": "OS::Heat::None", "typo": 1}},
        },
        "spec.template.resources.a.type": {
            "heat_template_version": "2021-04-16",
            "resources": {"a": {"properties": {}}},
        },
        "spec.template.heat_template_version": {"resources": {}},
        "spec.template.parameters.p.type": {
            "heat_template_version": "2021-04-16",
            "parameters": {"p": {"type": "integer"}},
        },
    }
    for field, template in cases.items():
        result = cluster.kubectl(
            "apply",
            f"--namespace={namespace}",
            "-f",
            "-",
            input=json.dumps(hot.stack("bad", template)),
            check=False,
        )
        assert result.returncode != 0, f"a stack with a bad {field} was accepted"
        assert field in result.stderr, f"the error must name {field}: {result.stderr}"
    leftover = cluster.kubectl("get", f"--namespace={namespace}", "stacks", "-o", "name")
    assert leftover.stdout.strip() == "", "a rejected stack must not exist"


def test_bad_status_is_rejected(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", f"--namespace={namespace}", "-f", str(HELLO))
    result = cluster.kubectl(
        "patch",
        f"--namespace={namespace}",
        "stack",
        "hello",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "CREATE_DONE"}}),
        check=False,
    )
    assert result.returncode != 0, "an unknown phase must be refused"
    assert "status.phase" in result.stderr, result.stderr


def test_stack_resource_identity_is_immutable(cluster: Cluster, namespace: str) -> None:
    ns = f"--namespace={namespace}"
    cluster.kubectl("apply", ns, "-f", "-", input=stack_resource("r1"))
    for patch, message in [
        ({"type": "OS::Heat::TestResource"}, "spec.type is immutable"),
        ({"stack": "other"}, "spec.stack is immutable"),
        ({"resource": "second"}, "spec.resource is immutable"),
        ({"replaces": "r0"}, "spec.replaces is immutable"),
    ]:
        result = cluster.kubectl(
            "patch",
            ns,
            "stkr",
            "r1",
            "--type=merge",
            "-p",
            json.dumps({"spec": patch}),
            check=False,
        )
        assert result.returncode != 0, f"changing {patch} must be refused"
        assert message in result.stderr, result.stderr


def test_printer_columns(cluster: Cluster, namespace: str) -> None:
    ns = f"--namespace={namespace}"
    cluster.kubectl("apply", ns, "-f", str(HELLO))
    cluster.kubectl(
        "patch",
        ns,
        "stack",
        "hello",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "phase": "CREATE_COMPLETE",
                    "resources": {"total": 3},
                    "conditions": [condition("Ready", "True", "CreateComplete")],
                }
            }
        ),
    )
    lines = cluster.kubectl("get", ns, "stacks").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "READY", "RESOURCES", "AGE"], lines[0]
    assert lines[1].split()[:4] == ["hello", "CREATE_COMPLETE", "True", "3"], lines[1]

    cluster.kubectl("apply", ns, "-f", "-", input=stack_resource("hello-first-1"))
    lines = cluster.kubectl("get", ns, "stackresources").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STACK", "RESOURCE", "TYPE", "STATUS", "READY", "AGE"]
    assert lines[1].split()[:4] == ["hello-first-1", "hello", "first", "OS::Heat::None"]
