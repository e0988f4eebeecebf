"""The operator converges Stacks on the real control plane: create, replace, outputs, delete."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.controlplane import REPO_ROOT
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

HELLO = REPO_ROOT / "examples" / "hello-stack.yaml"


def get(cluster: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(
        cluster.kubectl("get", f"--namespace={namespace}", *what, "-o", "json").stdout
    )


def physical(cluster: Cluster, namespace: str) -> dict[str, dict[str, str]]:
    """Reality: the ConfigMaps standing for TestResources, by logical name."""
    items = get(cluster, namespace, "configmaps", "-l", "app.kubernetes.io/managed-by=convergence")
    found: dict[str, dict[str, str]] = {}
    for item in items["items"]:
        name = item["metadata"]["labels"]["convergence.dev/resource"]
        assert name not in found, f"two physical copies of {name}"
        found[name] = {"id": item["metadata"]["name"], **json.loads(item["data"]["properties"])}
    return found


def wait(cluster: Cluster, namespace: str, condition: str, timeout: str = "60s") -> None:
    cluster.kubectl(
        "wait",
        f"--namespace={namespace}",
        f"--for={condition}",
        "stack/hello",
        f"--timeout={timeout}",
    )


def counted(cluster: Cluster, namespace: str, phases: dict[str, int]) -> None:
    """Wait until the Stack's status.resources counts its records in exactly `phases`."""
    want = {"total": sum(phases.values()), "ready": sum(phases.values()), "byPhase": phases}
    deadline = time.monotonic() + 20
    while (got := get(cluster, namespace, "stack", "hello")["status"]["resources"]) != want:
        assert time.monotonic() < deadline, f"status.resources is {got}, not {want}"
        time.sleep(0.2)


def test_stack_lifecycle_on_the_real_control_plane(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    ns = f"--namespace={namespace}"
    cluster.kubectl("apply", ns, "-f", str(HELLO))
    wait_for_stack(cluster, namespace, "hello", "CREATE_COMPLETE", operator=operator_process)
    wait(cluster, namespace, "condition=Ready")
    stack = get(cluster, namespace, "stack", "hello")
    assert stack["status"]["outputs"] == {"message": "hello, world"}
    assert stack["status"]["resources"]["total"] == 3
    counted(cluster, namespace, {"CREATE_COMPLETE": 3})
    reality = physical(cluster, namespace)
    assert sorted(reality) == ["first", "second", "third"]
    assert reality["second"]["value"] == "hello, world", "get_attr data must flow"
    assert reality["third"]["value"] == f"{reality['first']['id']}-hello, world"

    # A change of a property that cannot change in place replaces `first`;
    # its dependents move to the new one, and the old one is cleaned up.
    cluster.kubectl(
        "patch",
        ns,
        "stack",
        "hello",
        "--type=merge",
        "-p",
        json.dumps(
            {
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
        ),
    )
    wait_for_stack(cluster, namespace, "hello", "UPDATE_COMPLETE", operator=operator_process)
    after = physical(cluster, namespace)
    assert after["first"]["id"] != reality["first"]["id"], "first must have been replaced"
    assert after["second"]["id"] == reality["second"]["id"], "second is updated in place"
    assert after["second"]["value"] == "hey, world"
    assert after["third"]["value"] == f"{after['first']['id']}-hey, world"
    records = get(cluster, namespace, "stackresources")["items"]
    assert len(records) == 3, "the replaced StackResource must be cleaned up"
    # Phases no record is in any more (the old `first`'s DELETE_*) are not counted on.
    counted(cluster, namespace, {"CREATE_COMPLETE": 1, "UPDATE_COMPLETE": 2})
    assert get(cluster, namespace, "stack", "hello")["status"]["outputs"] == {
        "message": "hey, world"
    }

    cluster.kubectl("delete", ns, "stack", "hello", "--timeout=60s")
    assert physical(cluster, namespace) == {}, "delete must leave no physical resource"
    assert get(cluster, namespace, "stackresources")["items"] == []


def test_an_invalid_template_is_reported_in_status_and_creates_nothing(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    nope = {"properties": {"value": {"get_attr": ["nope", "output"]}}}
    bad = hot.stack("hello", hot.template(hot.resources("OS::Heat::TestResource", a=nope)))
    cluster.kubectl("apply", f"--namespace={namespace}", "-f", "-", input=json.dumps(bad))
    wait(cluster, namespace, "jsonpath={.status.observedGeneration}=1")
    stack = get(cluster, namespace, "stack", "hello")
    assert "nope" in stack["status"]["statusReason"], stack["status"]
    failed = {c["type"]: c for c in stack["status"]["conditions"]}["Failed"]
    assert (failed["status"], failed["reason"]) == ("True", "InvalidTemplate"), failed
    events = get(cluster, namespace, "events", "--field-selector=reason=InvalidTemplate")
    assert any("nope" in e["message"] for e in events["items"]), "an Event must say why"
    assert get(cluster, namespace, "stackresources")["items"] == []
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "hello", "--timeout=60s")


def test_pseudo_parameters_name_the_stack_and_its_namespace(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    """OS::project_id is the Stack's namespace (the tenancy unit); OS::stack_id its stackId."""
    template = hot.template(
        {"none": {"type": "OS::Heat::None"}},
        outputs={
            name: {"value": {"get_param": f"OS::{name}"}}
            for name in ("project_id", "stack_name", "stack_id")
        },
    )
    body = hot.stack("hello", template, namespace)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    wait_for_stack(cluster, namespace, "hello", "CREATE_COMPLETE", operator=operator_process)
    stack = get(cluster, namespace, "stack", "hello")
    assert stack["status"]["outputs"] == {
        "project_id": namespace,
        "stack_name": "hello",
        "stack_id": stack["status"]["stackId"],
    }


def test_log_lines_are_json_naming_stack_resource_and_traversal(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    cluster.kubectl("apply", f"--namespace={namespace}", "-f", str(HELLO))
    wait_for_stack(cluster, namespace, "hello", "CREATE_COMPLETE", operator=operator_process)
    traversal = get(cluster, namespace, "stack", "hello")["status"]["traversal"]

    def mine() -> list[dict[str, Any]]:
        lines = [
            json.loads(line)
            for line in operator_process.log.read_text().splitlines()
            if line.startswith("{")
        ]
        return [line for line in lines if line.get("namespace") == namespace]

    # The Stack's own Event (and line) follows its phase within a report batch.
    deadline = time.monotonic() + 10
    while not any(line["message"].startswith("CreateComplete Stack/hello") for line in mine()):
        assert time.monotonic() < deadline, f"no CreateComplete line for the Stack: {mine()}"
        time.sleep(0.5)
    started = [line for line in mine() if line["message"] == "CREATE of generation 1 started"]
    assert [line.get("traversal") for line in started] == [traversal], started
    completed = {
        str(line.get("resource")): line
        for line in mine()
        if line["message"].startswith("CreateComplete StackResource/")
    }
    assert sorted(completed) == ["first", "second", "third"], completed
    for line in completed.values():
        assert (line["stack"], line["traversal"], line["severity"]) == ("hello", traversal, "info")
    (stack_line,) = [
        line for line in mine() if line["message"].startswith("CreateComplete Stack/hello")
    ]
    assert (stack_line["stack"], stack_line["traversal"]) == ("hello", traversal), stack_line


def test_deleting_the_namespace_of_a_stack_completes(
    cluster: Cluster, operator_process: OperatorProcess
) -> None:
    """`kubectl delete namespace` with a Stack in it: the Stack's finalizer must not hold it.

    In a terminating namespace nothing new can be created (no template revision,
    no graph), and the namespace's own cleanup deletes what the stack made in any order.
    """
    namespace = f"t-gone-{int(time.time() * 1000) % 10**8}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("apply", f"--namespace={namespace}", "-f", str(HELLO))
    wait(cluster, namespace, "condition=Ready")
    deleted = cluster.kubectl("delete", "namespace", namespace, "--timeout=90s", check=False)
    left = cluster.kubectl("get", "namespace", namespace, "-o", "json", check=False)
    assert left.returncode != 0, (
        f"namespace still there: {deleted.stderr}\n{left.stdout}\n{operator_process.tail()}"
    )


def test_a_stack_whose_template_outgrows_an_annotation_is_created_updated_and_deleted(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    """A Stack's annotations may hold 256 KiB in all; its template may be larger. kopf's
    record of the last spec handled is a digest, so a big Stack is handled like a small
    one, and its finalizer goes when it is deleted."""
    big = "x" * 100_000

    def stack(edit: str) -> str:
        resources = {
            f"r{index}": {"type": "OS::Heat::TestResource", "properties": {"value": big + edit}}
            for index in range(3)
        }
        return json.dumps(hot.stack("hello", hot.template(resources), namespace))

    cluster.kubectl("apply", "--server-side", "-f", "-", input=stack(""))
    wait_for_stack(cluster, namespace, "hello", "CREATE_COMPLETE", operator=operator_process)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=stack("!"))
    wait_for_stack(cluster, namespace, "hello", "UPDATE_COMPLETE", operator=operator_process)
    annotations = get(cluster, namespace, "stack", "hello")["metadata"].get("annotations", {})
    handled = annotations.get("kopf.convergence.dev/last-handled-configuration")
    assert handled is not None, "kopf recorded the spec it handled"
    assert len(handled) < 200
    assert physical(cluster, namespace)["r0"]["value"] == big + "!"
    cluster.kubectl(f"--namespace={namespace}", "delete", "stack", "hello", "--timeout=60s")
    assert get(cluster, namespace, "stacks")["items"] == []
    assert physical(cluster, namespace) == {}


def test_a_stack_waiting_for_its_resources_to_go_is_not_rewritten_meanwhile(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    """kopf keeps a handler's retries in the object and touches it when a retry's delay is
    over: a delete waiting 2 s at a time for a slow resource wrote the whole Stack, its
    template included, twice per wait. The delete handler now waits in the operator."""
    template = {
        "heat_template_version": "2018-08-31",
        "resources": {
            "slow": {
                "type": "OS::Heat::TestResource",
                "properties": {"value": "v", "action_wait_secs": {"delete": 8}},
            }
        },
    }
    manifest = hot.stack("slow-delete", template, namespace)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_for_stack(cluster, namespace, "slow-delete", "CREATE_COMPLETE", operator=operator_process)
    ns = f"--namespace={namespace}"
    cluster.kubectl("delete", ns, "stack", "slow-delete", "--wait=false")
    started = time.monotonic()
    versions: list[str] = []
    while time.monotonic() - started < 60:
        found = cluster.kubectl(
            "get", ns, "stack", "slow-delete", "-o", "json", "--ignore-not-found"
        ).stdout
        if not found:
            break
        metadata = json.loads(found)["metadata"]
        # The Stack's own writes (not its status): its metadata's generation stays, the
        # annotations and finalizers kopf writes change the resourceVersion of the whole.
        state = json.dumps([metadata.get("annotations"), metadata.get("finalizers")])
        if not versions or versions[-1] != state:
            versions.append(state)
        time.sleep(0.2)
    took = time.monotonic() - started
    assert not found, "the Stack must be gone within 60 s"
    assert took >= 7, f"the resource's delete waits 8 s, the Stack went after {took:.1f} s"
    assert len(versions) <= 2, (
        f"the Stack was rewritten {len(versions) - 1} times while its delete waited:\n"
        + "\n".join(versions)
    )
