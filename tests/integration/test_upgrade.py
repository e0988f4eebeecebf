"""An upgrade from an operator that named records by bare UUIDs leaks and orphans nothing.

The older operator (`testing.legacy_ids`: this operator with that naming put
back) creates a stack and starts an update that replaces a resource; it is
killed with the replacement half made. This operator then finishes that
update, makes another (a resource added, one removed, one replaced) and
deletes the stack: every record, physical resource, Secret and graph goes,
old-named and new-named alike. Each operator watches only the test's
namespace, so this module has no all-namespaces operator of its own.

With `UPGRADE_FROM_PYTHONPATH` set, the older operator is real older code
instead: a folder with `convergence/operator` and `convergence/reconcilers`
of an older checkout, put first on its PYTHONPATH.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from convergence.operator.engine.record_ids import is_uuid_id
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import CLI, OperatorProcess

pytestmark = pytest.mark.controlplane

TEST_RESOURCE = "OS::Heat::TestResource"
LEGACY = ("-m", "convergence.operator.testing.legacy_ids")
STACK = "upgraded"


def resource(value: str, *, replace: str = "1", wait: int = 0) -> dict[str, Any]:
    properties = {"value": value, "update_replace_value": replace, "wait_secs": wait}
    return {"type": TEST_RESOURCE, "properties": properties}


PASSWORD = {"type": "OS::Heat::RandomString", "properties": {"length": 12}}


def apply(cluster: Cluster, namespace: str, resources: dict[str, Any]) -> None:
    body = hot.stack(STACK, hot.template(resources), namespace)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def records(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    listed = cluster.get_json(namespace, "stackresources")["items"]
    return [item for item in listed if item["spec"]["stack"] == STACK]


def by_resource(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Record names by logical name (one each: the stack is at rest)."""
    found: dict[str, str] = {}
    for item in records(cluster, namespace):
        resource = item["spec"]["resource"]
        assert resource not in found, f"two records of {resource}: {records(cluster, namespace)}"
        found[resource] = item["metadata"]["name"]
    return found


def left_over(cluster: Cluster, namespace: str) -> dict[str, list[str]]:
    """Whatever of the stack is still in the namespace, by kind."""
    found: dict[str, list[str]] = {}
    for kind in ("stacks", "stackresources", "configmaps", "secrets", "controllerrevisions"):
        items = cluster.get_json(namespace, kind)["items"]
        names = [
            i["metadata"]["name"]
            for i in items
            if kind in ("stacks", "stackresources")
            or (i["metadata"].get("labels") or {}).get("convergence.dev/stack") == STACK
        ]
        if names:
            found[kind] = names
    return found


def physical(cluster: Cluster, namespace: str) -> dict[str, str]:
    """The TestResources' ConfigMaps: record name by logical name."""
    found: dict[str, str] = {}
    listed = cluster.get_json(namespace, "configmaps", "-l", "convergence.dev/resource")["items"]
    for item in listed:
        labels = item["metadata"]["labels"]
        if labels.get("convergence.dev/stack") == STACK and "convergence.dev/graph" not in labels:
            resource = labels["convergence.dev/resource"]
            assert resource not in found, f"two physical copies of {resource}: {listed}"
            found[resource] = labels.get("convergence.dev/stack-resource", "")
    return found


def older_operator(cluster: Cluster, namespace: str, log: Path) -> OperatorProcess:
    """The older operator, watching `namespace` (see the module)."""
    older_code = os.environ.get("UPGRADE_FROM_PYTHONPATH")
    if older_code:
        env = {
            "PYTHONPATH": os.pathsep.join(filter(None, [older_code, os.environ.get("PYTHONPATH")]))
        }
        return OperatorProcess(
            cluster.kubeconfig, log, "--namespace", namespace, env=env, entry=CLI
        )
    return OperatorProcess(cluster.kubeconfig, log, "--namespace", namespace, entry=LEGACY)


def test_records_an_older_operator_named_by_uuids_are_converged_and_deleted(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    scope = ("--namespace", namespace)
    with older_operator(cluster, namespace, tmp_path / "older.log") as old:
        first = {"keep": resource("a"), "swap": resource("a"), "drop": resource("a")}
        apply(cluster, namespace, {**first, "password": PASSWORD})
        wait_for_stack(cluster, namespace, STACK, "CREATE_COMPLETE", operator=old)
        created = by_resource(cluster, namespace)
        assert all(is_uuid_id(name) for name in created.values()), created
        # An update that replaces `swap` slowly: the older operator dies in the middle.
        swap = resource("b", replace="2", wait=4)
        apply(
            cluster, namespace, {**first, "keep": resource("b"), "swap": swap, "password": PASSWORD}
        )
        old.eventually(
            "the older operator to make swap's replacement",
            lambda: any(r["spec"].get("replaces") == created["swap"] for r in records(
                cluster, namespace)),
        )  # fmt: skip
        old.kill()

    new = OperatorProcess(cluster.kubeconfig, tmp_path / "new.log", *scope)
    with new:
        wait_for_stack(cluster, namespace, STACK, "UPDATE_COMPLETE", operator=new)
        updated = by_resource(cluster, namespace)
        assert updated["keep"] == created["keep"], "updated in place, under its old name"
        assert updated["swap"] != created["swap"], "replaced, the old one cleaned up"
        assert physical(cluster, namespace) == {
            name: updated[name] for name in ("keep", "swap", "drop")
        }

        # Another update: one added, one removed, one replaced.
        last = {"keep": resource("c", replace="2"), "swap": resource("c"), "fresh": resource("c")}
        apply(cluster, namespace, {**last, "password": PASSWORD})
        wait_for_stack(cluster, namespace, STACK, "UPDATE_COMPLETE", operator=new)
        final = by_resource(cluster, namespace)
        assert sorted(final) == ["fresh", "keep", "password", "swap"], final
        assert final["fresh"].startswith(f"{STACK}-fresh-"), final
        assert final["keep"] != created["keep"]
        assert final["password"] == created["password"], "left alone, under its old name"
        assert physical(cluster, namespace) == {
            name: final[name] for name in ("keep", "swap", "fresh")
        }, "exactly one physical resource per resource of the template"

        cluster.kubectl("delete", f"--namespace={namespace}", "stack", STACK, "--timeout=90s")
        new.eventually(
            "nothing of the stack left",
            lambda: not left_over(cluster, namespace),
            seen=lambda: left_over(cluster, namespace),
        )
