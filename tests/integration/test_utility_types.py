"""Heat's utility types on the real control plane: RandomString's Secret, Value, aliases."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

MANAGED = "app.kubernetes.io/managed-by=convergence"


def get(cluster: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(
        cluster.kubectl("get", f"--namespace={namespace}", *what, "-o", "json").stdout
    )


def apply_stack(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    manifest = hot.stack(name, namespace=namespace, **spec)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def secrets_of(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = get(cluster, namespace, "secrets", "-l", MANAGED)["items"]
    # Not the Stack's own (its template revisions' parameter values).
    return {item["metadata"]["name"]: item for item in items if not owned_by_a_stack(item)}


def owned_by_a_stack(item: dict[str, Any]) -> bool:
    return any(o["kind"] == "Stack" for o in item["metadata"].get("ownerReferences", []))


def decoded(secret: dict[str, Any]) -> str:
    return base64.b64decode(secret["data"]["value"]).decode()


def stack_resources(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return list(get(cluster, namespace, "stackresources")["items"])


def template(salt: str) -> dict[str, Any]:
    return hot.template(
        {
            "pw": {
                "type": "OS::Heat::RandomString",
                "properties": {"length": 20, "salt": salt},
            },
            "copy": {
                "type": "OS::Heat::Value",
                "properties": {"value": {"get_attr": ["pw", "value"]}, "type": "string"},
            },
            "conf": {
                "type": "My::Config",
                "properties": {"value": {"get_attr": ["pw", "secret_name"]}},
            },
            "server": {"type": "OS::Nova::Server", "properties": {"flavor": "m1.tiny"}},
        },
        outputs={
            "secret": {"value": {"get_attr": ["pw", "secret_name"]}},
            "password": {"value": {"get_attr": ["copy", "value"]}},
        },
    )


ENVIRONMENT = {
    "resource_registry": {
        "My::Config": "OS::Heat::TestResource",
        "OS::Nova::Server": "OS::Heat::None",
    }
}


def test_random_string_lives_in_an_owned_secret_and_nowhere_else(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    apply_stack(cluster, namespace, "util", {"template": template("1"), "environment": ENVIRONMENT})
    status = wait_for_stack(
        cluster, namespace, "util", "CREATE_COMPLETE", operator=operator_process
    )

    # The Secret: owned by the RandomString's StackResource, labelled like a ConfigMap.
    (secret,) = secrets_of(cluster, namespace).values()
    value = decoded(secret)
    assert len(value) == 20
    records = {r["spec"]["resource"]: r for r in stack_resources(cluster, namespace)}
    pw = records["pw"]
    owners = secret["metadata"].get("ownerReferences") or []
    assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [
        ("StackResource", pw["metadata"]["name"], pw["metadata"]["uid"])
    ]
    labels = secret["metadata"]["labels"]
    assert labels["convergence.dev/stack"] == "util"
    assert labels["convergence.dev/resource"] == "pw"
    assert labels["convergence.dev/stack-resource"] == pw["metadata"]["name"]

    # Aliases: My::Config is a TestResource (a ConfigMap), OS::Nova::Server is stubbed out.
    assert records["conf"]["spec"]["type"] == "OS::Heat::TestResource"
    assert records["server"]["spec"]["type"] == "OS::Heat::None"
    configmaps = get(cluster, namespace, "configmaps", "-l", "convergence.dev/resource=conf")
    (conf,) = configmaps["items"]
    assert json.loads(conf["data"]["properties"]) == {"value": secret["metadata"]["name"]}
    assert status["outputs"]["secret"] == secret["metadata"]["name"]

    # The string is in no status, no sync point, no output, no Event and no log line.
    stack = get(cluster, namespace, "stack", "util")
    events = get(cluster, namespace, "events")
    assert value not in json.dumps(stack), "the string leaked into the Stack"
    assert value not in json.dumps(stack_resources(cluster, namespace)), (
        "the string leaked into a StackResource"
    )
    assert value not in json.dumps(events), "the string leaked into an Event"
    assert value not in operator_process.log.read_text(), "the string leaked into the log"
    assert "convergence.secret" in stack["status"]["outputs"]["password"]

    # A new salt replaces: a new string in a new Secret, the old Secret cleaned up.
    apply_stack(cluster, namespace, "util", {"template": template("2"), "environment": ENVIRONMENT})
    wait_for_stack(cluster, namespace, "util", "UPDATE_COMPLETE", operator=operator_process)
    (new_secret,) = operator_process.eventually(
        "the old Secret to be deleted",
        lambda: (
            [
                s
                for name, s in secrets_of(cluster, namespace).items()
                if name != secret["metadata"]["name"]
            ]
            if len(secrets_of(cluster, namespace)) == 1
            else None
        ),
    )
    assert decoded(new_secret) != value
    (conf,) = get(cluster, namespace, "configmaps", "-l", "convergence.dev/resource=conf")["items"]
    assert json.loads(conf["data"]["properties"]) == {"value": new_secret["metadata"]["name"]}

    # Deleting the stack deletes the Secret.
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "util", "--wait=false")
    operator_process.eventually(
        "the Secret to be deleted with the stack", lambda: secrets_of(cluster, namespace) == {}
    )


def test_an_alias_to_an_unknown_type_is_reported_and_nothing_is_created(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    apply_stack(
        cluster,
        namespace,
        "bad",
        {
            "template": hot.template({"a": {"type": "My::A"}}),
            "environment": {"resource_registry": {"My::A": "OS::Heat::Missing"}},
        },
    )

    def failed() -> str | None:
        status = get(cluster, namespace, "stack", "bad").get("status") or {}
        reason = str(status.get("statusReason", ""))
        return reason if "OS::Heat::Missing" in reason else None

    reason = operator_process.eventually("the invalid alias to be reported", failed)
    assert "'My::A'" in reason, reason
    assert "resource_registry" in reason, reason
    assert stack_resources(cluster, namespace) == []
