"""Errors at `kubectl apply`: the operator's validating webhook, called by the real API server.

The module's operator serves the webhook (the `webhook` fixture registers it
for labelled namespaces only); an invalid Stack is refused with every error,
each naming its key, and nothing is created. What only the running operator
can know (parametersFrom values) is reported in status, as is everything in a
namespace the webhook does not cover.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.webhook import ServedWebhook

MANAGED = "app.kubernetes.io/managed-by=convergence"
TEST = "OS::Heat::TestResource"
# [{id, says, spec}]: a Stack spec that must be refused, and what the refusal must contain.
INVALID: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "invalid_stacks.yaml").read_text()
)

# One mistake of each kind the issue names: the three must all be reported.
THREE_MISTAKES = hot.template(
    {
        "web": {"type": TEST, "properties": {"value": {"get_param": "imge"}}},
        "db": {"type": "OS::Nova::Server"},
        "app": {"type": TEST, "properties": {"value": {"get_attr": ["web", "outptu"]}}},
    },
    parameters={"image": {"type": "string", "default": "nginx"}},
)
THREE_ERRORS = [
    "resources.web.properties.value: get_param: unknown parameter 'imge'",
    "resources.db.type: unknown resource type 'OS::Nova::Server'",
    "resources.app.properties.value: get_attr: unknown attribute 'outptu' of resource 'web'",
]


@pytest.fixture
def admitted(cluster: Cluster, webhook: ServedWebhook) -> Iterator[str]:
    """A fresh namespace the webhook applies to."""
    name = webhook.webhook.create_namespace(f"a-{uuid.uuid4().hex[:10]}")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def apply(cluster: Cluster, namespace: str, body: dict[str, Any], *flags: str) -> tuple[bool, str]:
    """`kubectl apply` of one object as a user types it: (accepted, what kubectl said)."""
    result = cluster.kubectl(
        "apply",
        f"--namespace={namespace}",
        *flags,
        "-f",
        "-",
        input=yaml.safe_dump(body),
        check=False,
    )
    return result.returncode == 0, result.stdout + result.stderr


def left_behind(cluster: Cluster, namespace: str) -> list[str]:
    """What exists in `namespace` that a refused Stack could have made."""
    found = cluster.get_json(namespace, "stacks,stackresources,controllerrevisions") or {}
    managed = cluster.get_json(namespace, "configmaps,secrets", "-l", MANAGED) or {}
    items = [*found.get("items", []), *managed.get("items", [])]
    return [f"{item['kind']}/{item['metadata']['name']}" for item in items]


@pytest.mark.parametrize("case", INVALID, ids=[case["id"] for case in INVALID])
def test_an_invalid_stack_is_refused_at_apply_naming_the_key(
    cluster: Cluster, webhook: ServedWebhook, case: dict[str, Any]
) -> None:
    namespace, name, says = webhook.namespace, case["id"], case["says"]
    body = {"apiVersion": hot.API_VERSION, "kind": "Stack", "metadata": {"name": name}}
    accepted, said = apply(cluster, namespace, {**body, "spec": case["spec"]})
    assert not accepted, f"{name} was accepted: {said}"
    assert says in said, f"{name}: expected {says!r} in:\n{said}"
    assert left_behind(cluster, namespace) == [], f"{name} left objects behind"


def test_there_are_fifty_distinct_invalid_stacks_at_least() -> None:
    assert len({json.dumps(case["spec"], sort_keys=True) for case in INVALID}) >= 50


def test_every_mistake_is_reported_at_apply_and_in_status(
    cluster: Cluster, webhook: ServedWebhook, admitted: str, namespace: str
) -> None:
    stack = hot.stack("three", THREE_MISTAKES)
    accepted, said = apply(cluster, admitted, stack)
    assert not accepted, said
    for error in THREE_ERRORS:
        assert error in said, f"{error!r} missing from the refusal:\n{said}"
    assert left_behind(cluster, admitted) == []

    # Where the webhook does not apply, the operator says the same in status.
    accepted, said = apply(cluster, namespace, stack)
    assert accepted, said
    status = wait_for_stack(cluster, namespace, "three", "CREATE_FAILED", operator=webhook.operator)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidTemplate"
    for error in THREE_ERRORS:
        assert error in status["statusReason"], status["statusReason"]
    table = cluster.kubectl("get", f"--namespace={namespace}", "stacks").stdout
    (row,) = [line.split() for line in table.splitlines()[1:]]
    assert row[:3] == ["three", "CREATE_FAILED", "False"], table
    described = cluster.kubectl("describe", f"--namespace={namespace}", "stack", "three").stdout
    for error in THREE_ERRORS:
        assert error in described, f"{error!r} missing from kubectl describe:\n{described}"
    assert cluster.get_json(namespace, "stackresources")["items"] == []


def test_a_changed_immutable_parameter_is_refused_on_update(
    cluster: Cluster, webhook: ServedWebhook, admitted: str
) -> None:
    template = hot.template(
        {"a": {"type": TEST, "properties": {"value": {"get_param": "zone"}}}},
        parameters={"zone": {"type": "string", "immutable": True}},
    )
    accepted, said = apply(
        cluster, admitted, hot.stack("zoned", template, parameters={"zone": "a"})
    )
    assert accepted, said
    wait_for_stack(cluster, admitted, "zoned", "CREATE_COMPLETE", operator=webhook.operator)
    accepted, said = apply(
        cluster, admitted, hot.stack("zoned", template, parameters={"zone": "b"})
    )
    assert not accepted, said
    assert 'parameters.zone: immutable parameters cannot be changed: zone ("a" -> "b")' in said
    body = cluster.get_json(admitted, "stack", "zoned")
    assert body["spec"]["parameters"] == {"zone": "a"}
    assert body["metadata"]["generation"] == 1


def test_a_stored_invalid_stack_can_still_be_annotated_and_deleted(
    cluster: Cluster, webhook: ServedWebhook, namespace: str
) -> None:
    # Stored while no webhook covered its namespace (e.g. before the chart had one).
    accepted, said = apply(cluster, namespace, hot.stack("old", THREE_MISTAKES))
    assert accepted, said
    wait_for_stack(cluster, namespace, "old", "CREATE_FAILED", operator=webhook.operator)
    labels = [f"{key}={value}" for key, value in webhook.webhook.labels.items()]
    cluster.kubectl("label", "namespace", namespace, *labels)
    cluster.kubectl("annotate", f"--namespace={namespace}", "stack", "old", "note=kept")
    still_invalid = hot.stack("old", {**THREE_MISTAKES, "description": "changed"})
    accepted, said = apply(cluster, namespace, still_invalid)
    assert not accepted, "a new invalid spec must be refused"
    assert THREE_ERRORS[1] in said
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "old", "--timeout=60s")
    assert cluster.get_json(namespace, "stacks")["items"] == []


def test_parameters_from_values_are_checked_on_the_status_path(
    cluster: Cluster, webhook: ServedWebhook, admitted: str
) -> None:
    template = hot.template(
        {"a": {"type": TEST, "properties": {"value": {"get_param": "size"}}}},
        parameters={"size": {"type": "number", "constraints": [{"range": {"max": 10}}]}},
    )
    source = [{"kind": "ConfigMap", "name": "sizes"}]
    cluster.kubectl(
        "create", "configmap", "sizes", f"--namespace={admitted}", "--from-literal=size=99"
    )
    # Only the operator reads the ConfigMap, as the Stack's identity: accepted at apply ...
    accepted, said = apply(cluster, admitted, hot.stack("sized", template, parametersFrom=source))
    assert accepted, said
    # ... and refused in status once the operator has read it.
    status = wait_for_stack(cluster, admitted, "sized", "CREATE_FAILED", operator=webhook.operator)
    assert "parameters.size: " in status["statusReason"], status
    # The template alone is still checked at apply.
    broken = {**template, "resources": {"a": {"type": TEST, "depends_on": "ghost"}}}
    accepted, said = apply(cluster, admitted, hot.stack("sized2", broken, parametersFrom=source))
    assert not accepted, said
    assert "resources.a.depends_on: unknown resource" in said


def test_files_from_sources_are_checked_on_the_status_path(
    cluster: Cluster, webhook: ServedWebhook, admitted: str
) -> None:
    looping = "heat_template_version: 2021-04-16\nresources: {again: {type: loop.yaml}}\n"
    cluster.kubectl(
        "create",
        "configmap",
        "templates",
        f"--namespace={admitted}",
        f"--from-literal=loop.yaml={looping}",
    )
    template = hot.template({"web": {"type": "loop.yaml"}})
    source = [{"kind": "ConfigMap", "name": "templates"}]
    # The files are the operator's to read, as the Stack's identity: accepted at apply ...
    accepted, said = apply(cluster, admitted, hot.stack("looped", template, filesFrom=source))
    assert accepted, said
    # ... and refused in status once it has read them.
    status = wait_for_stack(cluster, admitted, "looped", "CREATE_FAILED", operator=webhook.operator)
    assert "a template cannot use itself: loop.yaml -> loop.yaml" in status["statusReason"], status


def test_server_side_apply_of_an_emptied_template_converges_to_nothing(
    cluster: Cluster, webhook: ServedWebhook, admitted: str
) -> None:
    full = hot.stack("shrink", hot.template(hot.resources(TEST, a={}, b={"depends_on": "a"})))
    ssa = ("--server-side", "--field-manager=user")
    accepted, said = apply(cluster, admitted, full, *ssa)
    assert accepted, said
    wait_for_stack(cluster, admitted, "shrink", "CREATE_COMPLETE", operator=webhook.operator)
    assert len(cluster.get_json(admitted, "configmaps", "-l", MANAGED)["items"]) == 2
    # Server-side apply leaves `resources: null` once it removes the last key it owned.
    accepted, said = apply(cluster, admitted, hot.stack("shrink", hot.template({})), *ssa)
    assert accepted, said
    wait_for_stack(cluster, admitted, "shrink", "UPDATE_COMPLETE", operator=webhook.operator)
    body = cluster.get_json(admitted, "stack", "shrink")
    assert body["spec"]["template"].get("resources") is None, "server-side apply left null"
    assert cluster.get_json(admitted, "stackresources")["items"] == []
    assert cluster.get_json(admitted, "configmaps", "-l", MANAGED)["items"] == []


def test_resources_left_empty_in_yaml_is_accepted(
    cluster: Cluster, webhook: ServedWebhook, admitted: str
) -> None:
    text = f"""\
apiVersion: {hot.API_VERSION}
kind: Stack
metadata:
  name: blank
spec:
  template:
    heat_template_version: {hot.VERSION}
    parameters:
    resources:
    outputs:
"""
    for flags in ((), ("--server-side",)):
        name = "blank" if not flags else "blank-ssa"
        result = cluster.kubectl(
            "apply",
            f"--namespace={admitted}",
            *flags,
            "-f",
            "-",
            input=text.replace("name: blank", f"name: {name}"),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        wait_for_stack(cluster, admitted, name, "CREATE_COMPLETE", operator=webhook.operator)
        stored = cluster.get_json(admitted, "stack", name)["spec"]["template"]
        assert stored.get("resources") is None, stored
    assert cluster.get_json(admitted, "stackresources")["items"] == []
