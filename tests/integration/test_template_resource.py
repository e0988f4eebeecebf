"""Template resources on the real control plane: `type: server.yaml` from the Stack's spec.files.

As Heat's test_template_resource.py, in our words: a resource whose type is a
file of `spec.files` (or a type the environment maps to one) is a child Stack
its parent owns, given the parent's files and the environment Heat would give
it; a new file content updates that same child; the parent's delete removes
everything. Without a webhook, a template resource's mistakes land in status.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane


def server(greeting: str) -> str:
    """The child template: a TestResource saying `<greeting> <word>`, and what it said."""
    return yaml.safe_dump(
        hot.template(
            hot.resources(
                "OS::Heat::TestResource",
                inner={
                    "properties": {"value": {"list_join": [" ", [greeting, {"get_param": "word"}]]}}
                },
            ),
            parameters={"word": {"type": "string"}},
            outputs={"said": {"value": {"get_attr": ["inner", "output"]}}},
        )
    )


PARENT = hot.template(
    {
        "web": {"type": "server.yaml", "properties": {"word": "web"}},
        "db": {"type": "My::Server", "properties": {"word": "db"}},
        "app": {
            "type": "OS::Heat::TestResource",
            "properties": {
                "value": {"list_join": [",", [{"get_attr": [n, "said"]} for n in ("web", "db")]]}
            },
        },
    },
    outputs={
        "app": {"value": {"get_attr": ["app", "output"]}},
        "web": {"value": {"get_resource": "web"}},
        "db": {"value": {"get_resource": "db"}},
    },
)
ENVIRONMENT = {
    "resource_registry": {"My::Server": "server.yaml"},
    "parameter_defaults": {"unused": 1},
}


def get(cluster: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(
        cluster.kubectl("get", f"--namespace={namespace}", *what, "-o", "json").stdout
    )


def apply(cluster: Cluster, namespace: str, name: str, template: Any, **spec: Any) -> None:
    manifest = hot.stack(name, template, namespace=namespace, **spec)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def test_a_template_resource_is_a_child_stack_updated_in_place_when_its_file_changes(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    apply(
        cluster,
        namespace,
        "site",
        PARENT,
        files={"server.yaml": server("hi")},
        environment=ENVIRONMENT,
    )
    status = wait_for_stack(
        cluster, namespace, "site", "CREATE_COMPLETE", operator=operator_process
    )
    assert status["outputs"]["app"] == "hi web,hi db"
    parent = get(cluster, namespace, "stack", "site")
    web = get(cluster, namespace, "stack", status["outputs"]["web"])
    db = get(cluster, namespace, "stack", status["outputs"]["db"])

    for child, word in ((web, "web"), (db, "db")):
        owners = [(o["kind"], o["name"], o["uid"]) for o in child["metadata"]["ownerReferences"]]
        assert owners == [("Stack", "site", parent["metadata"]["uid"])], owners
        assert child["spec"]["parameters"] == {"word": word}
        assert child["spec"]["files"] == {"server.yaml": server("hi")}
        assert child["status"]["outputs"] == {"said": f"hi {word}"}
    # As Heat gives a child its environment: the entry that made db a template is not in
    # db's child (so it may use My::Server itself); the defaults are.
    assert web["spec"]["environment"]["resource_registry"] == {"My::Server": "server.yaml"}
    assert "resource_registry" not in db["spec"]["environment"]
    assert db["spec"]["environment"]["parameter_defaults"] == {"unused": 1}
    resources = get(cluster, namespace, "stackresources", "-l", "convergence.dev/stack=site")
    types = {item["spec"]["resource"]: item["spec"]["type"] for item in resources["items"]}
    assert types == {"web": "server.yaml", "db": "server.yaml", "app": "OS::Heat::TestResource"}

    # A new content of the file updates both children in place.
    apply(
        cluster,
        namespace,
        "site",
        PARENT,
        files={"server.yaml": server("bye")},
        environment=ENVIRONMENT,
    )
    status = wait_for_stack(
        cluster, namespace, "site", "UPDATE_COMPLETE", operator=operator_process
    )
    assert status["outputs"]["app"] == "bye web,bye db"
    for before in (web, db):
        after = get(cluster, namespace, "stack", before["metadata"]["name"])
        assert after["metadata"]["uid"] == before["metadata"]["uid"], "the child was replaced"
        assert after["status"]["phase"] == "UPDATE_COMPLETE"

    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "site", "--wait=false")

    def nothing_left() -> bool:
        return all(
            get(cluster, namespace, kind)["items"] == []
            for kind in ("stacks", "stackresources", "controllerrevisions")
        )

    operator_process.eventually("the parent and its children to leave nothing", nothing_left)


def test_without_a_webhook_a_recursive_template_is_reported_in_status(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    loop = "heat_template_version: 2021-04-16\nresources: {again: {type: loop.yaml}}\n"
    template = hot.template({"web": {"type": "loop.yaml"}})
    apply(cluster, namespace, "loop", template, files={"loop.yaml": loop})
    status = wait_for_stack(cluster, namespace, "loop", "CREATE_FAILED", operator=operator_process)
    assert status["statusReason"] == (
        "resources.web.type: in template 'loop.yaml': resources.again.type: "
        "a template cannot use itself: loop.yaml -> loop.yaml"
    ), status["statusReason"]
    failed = [c for c in status["conditions"] if c["type"] == "Failed"]
    assert [c["reason"] for c in failed] == ["InvalidTemplate"], failed
    assert get(cluster, namespace, "stacks")["items"][0]["metadata"]["name"] == "loop"
    assert len(get(cluster, namespace, "stacks")["items"]) == 1, "no child may be made"


def test_files_from_a_config_map_are_read_as_the_stacks_service_account(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    kubectl = cluster.kubectl
    kubectl(
        "create",
        f"--namespace={namespace}",
        "configmap",
        "templates",
        f"--from-literal=server.yaml={server('hey')}",
    )
    kubectl("create", f"--namespace={namespace}", "serviceaccount", "reader")
    template = hot.template(
        {"web": {"type": "server.yaml", "properties": {"word": "you"}}},
        outputs={"said": {"value": {"get_attr": ["web", "said"]}}},
    )
    apply(
        cluster,
        namespace,
        "from-cm",
        template,
        serviceAccountName="reader",
        filesFrom=[{"kind": "ConfigMap", "name": "templates"}],
    )

    # The ServiceAccount may not read the ConfigMap yet: refused, naming who and what.
    def refused() -> bool:
        body = get(cluster, namespace, "stack", "from-cm")
        failed = [
            c
            for c in (body.get("status") or {}).get("conditions") or ()
            if c["type"] == "Failed" and c["status"] == "True"
        ]
        return any(
            c["reason"] == "FilesForbidden"
            and f"filesFrom: ServiceAccount {namespace}/reader may not read ConfigMap templates"
            in c["message"]
            for c in failed
        )

    operator_process.eventually("the files source to be refused to the ServiceAccount", refused)
    assert get(cluster, namespace, "stacks")["items"][0]["metadata"]["name"] == "from-cm"

    # Once its ServiceAccount may read it, the stack is made from it (the read is retried).
    kubectl(
        "create",
        f"--namespace={namespace}",
        "role",
        "read-templates",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=templates",
    )
    kubectl(
        "create",
        f"--namespace={namespace}",
        "rolebinding",
        "reader-templates",
        "--role=read-templates",
        f"--serviceaccount={namespace}:reader",
    )
    status = wait_for_stack(
        cluster, namespace, "from-cm", "CREATE_COMPLETE", operator=operator_process
    )
    assert status["outputs"] == {"said": "hey you"}
    (child,) = [
        item
        for item in get(cluster, namespace, "stacks")["items"]
        if item["metadata"]["name"] != "from-cm"
    ]
    assert child["spec"]["files"] == {"server.yaml": server("hey")}
    assert "filesFrom" not in child["spec"], "a child gets files, never sources"
    assert child["spec"]["serviceAccountName"] == "reader"


def test_a_resource_group_of_template_members_inherits_files_and_registry(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    template = hot.template(
        {
            "group": {
                "type": "OS::Heat::ResourceGroup",
                "properties": {
                    "count": 2,
                    "resource_def": {"type": "My::Server", "properties": {"word": "m%index%"}},
                },
            }
        },
        outputs={"said": {"value": {"get_attr": ["group", "said"]}}},
    )
    apply(
        cluster,
        namespace,
        "farm",
        template,
        files={"server.yaml": server("hi")},
        environment={"resource_registry": {"My::Server": "server.yaml"}},
    )
    status = wait_for_stack(
        cluster, namespace, "farm", "CREATE_COMPLETE", operator=operator_process
    )
    assert status["outputs"] == {"said": ["hi m0", "hi m1"]}
    stacks = {item["metadata"]["name"]: item for item in get(cluster, namespace, "stacks")["items"]}
    (group,) = [
        s
        for s in stacks.values()
        if s["metadata"].get("labels", {}).get("convergence.dev/resource") == "group"
    ]
    assert group["spec"]["files"] == {"server.yaml": server("hi")}
    assert group["spec"]["environment"] == {"resource_registry": {"My::Server": "server.yaml"}}
    assert len(stacks) == 4, "the parent, the group's child and a child per member"
