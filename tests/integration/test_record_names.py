"""StackResources named `<stack>-<logical name>-<short id>` on the real control plane.

`kubectl get stackresources` lists them by stack, then resource; odd logical
names (upper case, underscores, dots, 200 characters) still make names the API
takes; replacements and stacks whose names read alike never share one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from convergence.operator.engine.record_ids import RECORD_ID_MAX, short_id
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

TEST_RESOURCE = "OS::Heat::TestResource"
LONG = "Very_Long." + "x" * 190
READABLE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def apply(cluster: Cluster, namespace: str, stack: str, resources: dict[str, Any]) -> None:
    body = hot.stack(stack, hot.template(hot.resources(TEST_RESOURCE, resources)), namespace)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def records(cluster: Cluster, namespace: str, stack: str) -> dict[str, dict[str, Any]]:
    """The stack's StackResources by logical name (one each: no operation in progress)."""
    listed = cluster.get_json(namespace, "stackresources", "-l", f"convergence.dev/stack={stack}")
    found: dict[str, dict[str, Any]] = {}
    for item in listed["items"]:
        if item["spec"]["stack"] != stack:
            continue
        name = item["spec"]["resource"]
        assert name not in found, f"two StackResources of {name}: {found[name]}, {item}"
        found[name] = item
    return found


def test_kubectl_get_stackresources_reads_as_stack_and_resource(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    odd: dict[str, Any] = {"WebServer": {}, "db_password": {}, "cache.v2": {}, LONG: {}}
    apply(cluster, namespace, "shop", odd)
    wait_for_stack(cluster, namespace, "shop", "CREATE_COMPLETE", operator=operator_process)
    by_resource = records(cluster, namespace, "shop")
    assert sorted(by_resource) == sorted(odd)
    expected = {
        "WebServer": "shop-webserver-",
        "db_password": "shop-db-password-",
        "cache.v2": "shop-cache-v2-",
        LONG: "shop-very-long-xxxxxxxxxxxx",
    }
    names = {}
    for resource, prefix in expected.items():
        name = by_resource[resource]["metadata"]["name"]
        names[resource] = name
        assert name.startswith(prefix), f"{resource!r} is named {name!r}"
        assert len(name) <= RECORD_ID_MAX, name
        assert READABLE.match(name), name

    # As a person sees them: sorted by name, so by resource, each name whole.
    table = cluster.kubectl("get", f"--namespace={namespace}", "stackresources").stdout
    listed = [line.split()[0] for line in table.splitlines()[1:]]
    assert listed == sorted(names.values()), table

    # The physical ConfigMap carries the record's name whole as a label value, and its
    # name the same short id (`<stack>-<resource>-<short id>`, made a name).
    for resource, name in names.items():
        configmaps = cluster.get_json(
            namespace, "configmaps", "-l", f"convergence.dev/stack-resource={name}"
        )["items"]
        assert len(configmaps) == 1, f"the physical resource of {resource!r}: {configmaps}"
        assert f"-{short_id(name)}" in configmaps[0]["metadata"]["name"], configmaps[0]

    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "shop", "--timeout=60s")
    assert cluster.get_json(namespace, "stackresources")["items"] == []


def test_replacements_get_distinct_readable_names(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    def web(value: str) -> dict[str, Any]:
        return {"Web_Server": {"properties": {"value": value, "update_replace_value": value}}}

    apply(cluster, namespace, "site", web("v1"))
    wait_for_stack(cluster, namespace, "site", "CREATE_COMPLETE", operator=operator_process)
    names = [records(cluster, namespace, "site")["Web_Server"]["metadata"]["name"]]
    for value in ("v2", "v3"):
        apply(cluster, namespace, "site", web(value))
        wait_for_stack(cluster, namespace, "site", "UPDATE_COMPLETE", operator=operator_process)
        record = records(cluster, namespace, "site")["Web_Server"]
        assert record["spec"].get("replaces") == names[-1], record
        names.append(record["metadata"]["name"])
    assert len(set(names)) == 3, names
    assert all(re.fullmatch(r"site-web-server-[a-z2-7]{8}", n) for n in names), names
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "site", "--timeout=60s")


def test_stacks_whose_names_read_alike_do_not_collide(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    # Both read "app-web-db-…": the short ids keep them apart, and each stack its own.
    apply(cluster, namespace, "app-web", {"db": {"properties": {"value": "first"}}})
    apply(cluster, namespace, "app", {"web_db": {"properties": {"value": "second"}}})
    for stack in ("app-web", "app"):
        wait_for_stack(cluster, namespace, stack, "CREATE_COMPLETE", operator=operator_process)
    first = records(cluster, namespace, "app-web")["db"]
    second = records(cluster, namespace, "app")["web_db"]
    assert first["metadata"]["name"][:-8] == second["metadata"]["name"][:-8] == "app-web-db-"
    assert first["metadata"]["name"] != second["metadata"]["name"]
    assert (first["status"]["properties"]["value"], second["status"]["properties"]["value"]) == (
        "first",
        "second",
    )
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "app", "--timeout=60s")
    assert records(cluster, namespace, "app") == {}
    assert list(records(cluster, namespace, "app-web")) == ["db"], "the other stack keeps its own"
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "app-web", "--timeout=60s")
    assert cluster.get_json(namespace, "stackresources")["items"] == []
