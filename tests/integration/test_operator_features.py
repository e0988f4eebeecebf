"""Operability on the real control plane: /metrics, parametersFrom, cancel and rollback, Events."""

from __future__ import annotations

import functools
import json
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, settled_status, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def operator_process(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, metrics_port: int
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    args = ("--all-namespaces", "--metrics-port", str(metrics_port))
    with OperatorProcess(cluster.kubeconfig, log, *args) as process:
        yield process
    print(f"operator log: {log}")


def get(cluster: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(
        cluster.kubectl("get", f"--namespace={namespace}", *what, "-o", "json").stdout
    )


def stack_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, namespace, "stack", name).get("status") or {})


def physical(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    """Reality: the ConfigMaps standing for TestResources, by logical name."""
    items = get(cluster, namespace, "configmaps", "-l", "app.kubernetes.io/managed-by=convergence")
    return {
        item["metadata"]["labels"]["convergence.dev/resource"]: json.loads(
            item["data"]["properties"]
        )
        for item in items["items"]
    }


def events(cluster: Cluster, namespace: str, reason: str, name: str) -> list[dict[str, Any]]:
    listed = get(cluster, namespace, "events", f"--field-selector=reason={reason}")
    return [e for e in listed["items"] if e["involvedObject"]["name"] == name]


def apply_stack(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = hot.stack(name, **spec)
    cluster.kubectl("apply", f"--namespace={namespace}", "-f", "-", input=json.dumps(body))


def test_metrics_and_events_report_a_create(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, metrics_port: int
) -> None:
    apply_stack(
        cluster,
        namespace,
        "counted",
        {
            "template": hot.template(
                {
                    "a": {"type": "OS::Heat::TestResource", "properties": {"value": "x"}},
                    "b": {
                        "type": "OS::Heat::TestResource",
                        "properties": {"value": {"get_attr": ["a", "output"]}},
                    },
                }
            )
        },
    )
    wait_for_stack(cluster, namespace, "counted", "CREATE_COMPLETE", operator=operator_process)

    def scrape() -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def completed() -> dict[str, float] | None:
        samples = scrape()
        done = samples.get('convergence_traversals_completed_total{action="CREATE"}', 0)
        return samples if done >= 1 else None

    samples = operator_process.eventually("the create counted in /metrics", completed)
    assert samples.get('convergence_traversals_started_total{action="CREATE"}', 0) >= 1
    assert samples.get('convergence_reconcile_total{controller="stack",result="success"}', 0) >= 1
    resource_success = 'convergence_reconcile_total{controller="stackresource",result="success"}'
    assert samples.get(resource_success, 0) >= 1, samples
    created = (
        'convergence_resource_actions_total{action="CREATE",result="success",'
        'type="OS::Heat::TestResource"}'
    )
    assert samples.get(created, 0) >= 2, "both resources' creates must be counted"
    assert 'convergence_workqueue_depth{name="stackresource"}' in samples
    assert "convergence_nodes_waiting" in samples
    assert not any("counted" in key for key in samples), "labels must never name objects"

    for reason in ("CreateInProgress", "CreateComplete"):
        posted = operator_process.eventually(
            f"a {reason} Event", functools.partial(events, cluster, namespace, reason, "counted")
        )
        assert len(posted) == 1, f"one {reason} Event per transition, got {len(posted)}"
    records = get(cluster, namespace, "stackresources")["items"]
    for record in records:
        name = record["metadata"]["name"]
        operator_process.eventually(
            f"CreateComplete Event of {record['spec']['resource']}",
            functools.partial(events, cluster, namespace, "CreateComplete", name),
        )
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "counted", "--timeout=60s")


def test_a_resource_that_waits_says_for_what_then_that_its_dependencies_are_ready(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    slow = {"type": "OS::Heat::TestResource", "properties": {"value": "a", "wait_secs": 6}}
    apply_stack(
        cluster,
        namespace,
        "waits",
        {
            "template": hot.template(
                {
                    "slow": slow,
                    "fast": {"type": "OS::Heat::TestResource", "properties": {"value": "f"}},
                    "after": {
                        "type": "OS::Heat::TestResource",
                        "properties": {"value": {"get_attr": ["slow", "output"]}},
                        "depends_on": ["fast"],
                    },
                }
            )
        },
    )

    def dependencies_ready(resource: str) -> dict[str, Any] | None:
        for item in get(cluster, namespace, "stackresources")["items"]:
            if item["spec"]["resource"] == resource:
                for condition in item.get("status", {}).get("conditions") or []:
                    if condition["type"] == "DependenciesReady":
                        return dict(condition)
        return None

    def reported_waiting() -> dict[str, Any] | None:
        condition = dependencies_ready("after")
        return condition if condition and condition["status"] == "False" else None

    waiting = operator_process.eventually("after's wait for slow reported", reported_waiting)
    assert waiting["reason"] == "WaitingForDependencies"
    assert waiting["message"].startswith("Waiting for update:"), waiting
    wait_for_stack(cluster, namespace, "waits", "CREATE_COMPLETE", operator=operator_process)
    done = dependencies_ready("after")
    assert done is not None
    assert done["status"] == "True", done
    # `fast` has no dependencies: a step's own write says they are ready, nothing else.
    fast = dependencies_ready("fast")
    assert fast is not None
    assert fast["status"] == "True", fast
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "waits", "--timeout=60s")


PARAMETERISED = hot.template(
    {
        "a": {"type": "OS::Heat::TestResource", "properties": {"value": {"get_param": "greeting"}}},
        "b": {"type": "OS::Heat::TestResource", "properties": {"value": {"get_param": "password"}}},
    },
    parameters={
        "greeting": {"type": "string"},
        "size": {"type": "string", "default": "none"},
        "password": {"type": "string", "hidden": True},
    },
)


def test_parameters_from_a_config_map_and_a_secret(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    ns = f"--namespace={namespace}"
    cluster.kubectl(
        "create", ns, "configmap", "settings", "--from-literal=greeting=hi", "--from-literal=size=3"
    )
    cluster.kubectl("create", ns, "secret", "generic", "creds", "--from-literal=pw=s3cret")
    apply_stack(
        cluster,
        namespace,
        "fromsources",
        {
            "template": PARAMETERISED,
            "parameters": {"size": "7"},
            "parametersFrom": [
                {"kind": "ConfigMap", "name": "settings"},
                {"kind": "Secret", "name": "creds", "key": "pw", "parameter": "password"},
            ],
        },
    )
    status = wait_for_stack(
        cluster, namespace, "fromsources", "CREATE_COMPLETE", operator=operator_process
    )
    reality = physical(cluster, namespace)
    assert reality["a"]["value"] == "hi"
    assert reality["b"]["value"] == "s3cret"
    assert "s3cret" not in json.dumps(status), "a hidden parameter must never be in status"
    all_events = get(cluster, namespace, "events")["items"]
    assert not any("s3cret" in e.get("message", "") for e in all_events)


def test_missing_parameter_source_is_reported_then_picked_up(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    ns = f"--namespace={namespace}"
    cluster.kubectl("create", ns, "secret", "generic", "creds", "--from-literal=password=s3cret")
    apply_stack(
        cluster,
        namespace,
        "waiting",
        {
            "template": PARAMETERISED,
            "parametersFrom": [
                {"kind": "ConfigMap", "name": "later"},
                {"kind": "Secret", "name": "creds"},
            ],
        },
    )

    def reported() -> dict[str, Any] | None:
        status = stack_status(cluster, namespace, "waiting")
        failed = {c["type"]: c for c in status.get("conditions") or []}.get("Failed")
        return status if failed and failed["reason"] == "ParametersNotFound" else None

    status = operator_process.eventually("the ParametersNotFound condition", reported)
    assert "ConfigMap later" in status["statusReason"], status
    assert "s3cret" not in json.dumps(status)
    operator_process.eventually(
        "a ParametersNotFound Event",
        lambda: events(cluster, namespace, "ParametersNotFound", "waiting"),
    )
    assert get(cluster, namespace, "stackresources")["items"] == [], "nothing may be created"

    cluster.kubectl("create", ns, "configmap", "later", "--from-literal=greeting=late")
    wait_for_stack(cluster, namespace, "waiting", "CREATE_COMPLETE", operator=operator_process)
    assert physical(cluster, namespace)["a"]["value"] == "late"


def stack_annotations(cluster: Cluster, namespace: str, stack: str) -> dict[str, str]:
    return dict(get(cluster, namespace, "stack", stack)["metadata"].get("annotations") or {})


def _record(cluster: Cluster, namespace: str, resource: str) -> dict[str, Any] | None:
    for item in get(cluster, namespace, "stackresources")["items"]:
        if item["spec"]["resource"] == resource:
            return dict(item)
    return None


def test_cancel_without_rollback_by_annotation_again_in_a_later_update(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    ns = f"--namespace={namespace}"

    def spec(value: str, wait: int) -> dict[str, Any]:
        slow = {"value": value, "wait_secs": wait}
        return {
            "template": hot.template(
                {"slow": {"type": "OS::Heat::TestResource", "properties": slow}}
            )
        }

    apply_stack(cluster, namespace, "cancelled", spec("v1", 0))
    wait_for_stack(cluster, namespace, "cancelled", "CREATE_COMPLETE", operator=operator_process)

    def updating() -> bool:
        record = _record(cluster, namespace, "slow")
        return bool(record and record.get("status", {}).get("phase") == "UPDATE_IN_PROGRESS")

    def finished() -> bool:
        record = _record(cluster, namespace, "slow")
        return bool(record and record.get("status", {}).get("phase") == "UPDATE_COMPLETE")

    cancelled_at: list[str] = []
    # The same command in two updates: each is a request of its own, carried out.
    for value in ("v2", "v3"):
        apply_stack(cluster, namespace, "cancelled", spec(value, 12))
        operator_process.eventually(f"the slow update to {value} to start", updating)
        cluster.kubectl(
            "annotate",
            ns,
            "--overwrite",
            "stack",
            "cancelled",
            "convergence.dev/cancel=no-rollback",
        )
        status = operator_process.eventually(
            f"UPDATE_FAILED after the cancel of the update to {value}, the request consumed",
            lambda: (
                (status := settled_status(cluster, namespace, "cancelled", "UPDATE_FAILED"))
                and status.get("handledCancelTraversal") not in (None, *cancelled_at)
                and "convergence.dev/cancel"
                not in stack_annotations(cluster, namespace, "cancelled")
                and status
            ),
        )
        assert status["statusReason"] == "Stack UPDATE cancelled", status
        assert status["handledCancel"] == "no-rollback"
        cancelled_at.append(status["handledCancelTraversal"])
        operator_process.eventually("the running action to finish", finished)
        assert physical(cluster, namespace)["slow"]["value"] == value
        assert stack_status(cluster, namespace, "cancelled")["phase"] == "UPDATE_FAILED"


def test_rollback_by_annotation_and_a_refused_cancel(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    ns = f"--namespace={namespace}"

    def spec(value: str, fail: bool) -> dict[str, Any]:
        properties = {"value": value, "fail": fail}
        return {
            "disableRollback": True,
            "template": hot.template(
                {"a": {"type": "OS::Heat::TestResource", "properties": properties}}
            ),
        }

    apply_stack(cluster, namespace, "rolled", spec("v1", False))
    wait_for_stack(cluster, namespace, "rolled", "CREATE_COMPLETE", operator=operator_process)
    apply_stack(cluster, namespace, "rolled", spec("v2", True))
    wait_for_stack(cluster, namespace, "rolled", "UPDATE_FAILED", operator=operator_process)
    operator_process.eventually(
        "an UpdateFailed Warning", lambda: events(cluster, namespace, "UpdateFailed", "rolled")
    )
    cluster.kubectl("annotate", ns, "--overwrite", "stack", "rolled", "convergence.dev/rollback=1")
    status = wait_for_stack(
        cluster, namespace, "rolled", "ROLLBACK_COMPLETE", operator=operator_process
    )
    assert status["handledRollback"] == "1"
    assert physical(cluster, namespace)["a"]["value"] == "v1"
    assert _record(cluster, namespace, "a") is not None

    # Nothing is in progress: a cancel is refused, clearly and without harm.
    cluster.kubectl(
        "annotate", ns, "--overwrite", "stack", "rolled", "convergence.dev/cancel=no-rollback"
    )
    refused = operator_process.eventually(
        "an OperationRefused Event",
        lambda: events(cluster, namespace, "OperationRefused", "rolled"),
    )
    assert "ROLLBACK_COMPLETE" in refused[0]["message"], refused[0]
    status = operator_process.eventually(
        "the refusal in statusReason",
        lambda: (s := stack_status(cluster, namespace, "rolled")).get("handledCancel") and s,
    )
    assert status["statusReason"].startswith("Operation refused"), status
    assert status["phase"] == "ROLLBACK_COMPLETE"
