"""The examples on the real control plane, each through its whole life.

examples/webapp: create (the Service starts only once the Deployment is
Available), update in place, replace a generated-name object (create before
delete) and a fixed-name one (delete first), drift repaired, delete with
nothing left behind. examples/heat-utility: the same life for Heat's utility
types, with its resource_registry aliases (no drift repair there: only
Kubernetes::Object implements `repair_drift`). examples/web-tier: a
ResourceGroup of Deployments behind one Service and a nested database stack,
scaled up and down and updated (a rolling update, batch by batch) with only
the members that change touched, then deleted with its children.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from datetime import datetime
from typing import Any

import pytest
import yaml

from convergence.operator.testing.cluster import Cluster, settled_status, wait_for_stack
from convergence.operator.testing.controlplane import REPO_ROOT
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

EXAMPLES = REPO_ROOT / "examples"
OBJECTS = "deployments,services,configmaps,secrets,stackresources"


@pytest.fixture(scope="module")
def operator_env() -> dict[str, str]:
    """The operator with a drift check every 2 s instead of every 30 s."""
    return {"CONVERGENCE_DRIFT_INTERVAL": "2"}


def example(name: str) -> dict[str, Any]:
    body = yaml.safe_load((EXAMPLES / name / "stack.yaml").read_text())
    assert isinstance(body, dict)
    return body


def apply(cluster: Cluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", f"--namespace={namespace}", "-f", "-", input=json.dumps(body))


def patch_parameters(cluster: Cluster, namespace: str, stack: str, **parameters: str) -> None:
    cluster.kubectl(
        "patch", "stack", stack, f"--namespace={namespace}", "--type=merge",
        "-p", json.dumps({"spec": {"parameters": parameters}}),
    )  # fmt: skip


def records(cluster: Cluster, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """StackResources by logical name (a replaced resource has two while it is replaced)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for item in (cluster.get_json(namespace, "stackresources") or {"items": []})["items"]:
        found.setdefault(item["spec"]["resource"], []).append(item)
    return found


def phases(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Logical name -> phase of its newest record."""
    return {
        name: (
            max(items, key=lambda i: i["metadata"]["creationTimestamp"]).get("status") or {}
        ).get("phase", "INIT_COMPLETE")
        for name, items in records(cluster, namespace).items()
    }


def current(cluster: Cluster, namespace: str, resource: str) -> dict[str, Any]:
    """The record of a resource that is in service (not replaced by another)."""
    [record] = [
        r
        for r in records(cluster, namespace)[resource]
        if not r["status"].get("replacedBy") and not r["metadata"].get("deletionTimestamp")
    ]
    return record


def plugin_data(cluster: Cluster, namespace: str, resource: str) -> dict[str, Any]:
    return dict(current(cluster, namespace, resource)["status"].get("pluginData") or {})


def only_one_record(
    cluster: Cluster, namespace: str, resource: str, operator: OperatorProcess
) -> dict[str, Any]:
    """The replaced record of a resource goes (its finalizer may take a moment)."""
    found = operator.eventually(
        f"the old record of {resource} to go",
        lambda: len(items := records(cluster, namespace)[resource]) == 1 and items,
        timeout=90,
    )
    return dict(found[0])


def uid(cluster: Cluster, namespace: str, *what: str) -> str | None:
    body = cluster.get_json(namespace, *what)
    return None if body is None else str(body["metadata"]["uid"])


def timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def nothing_left(cluster: Cluster, namespace: str, stack: str, operator: OperatorProcess) -> None:
    """The Stack goes, and so does every object labelled with it (template revisions,
    owned by the Stack, go with the garbage collector)."""

    def left() -> list[str]:
        found = cluster.kubectl(
            "get", f"--namespace={namespace}", OBJECTS,
            "-l", f"convergence.dev/stack={stack}", "-o", "name",
        ).stdout.split()  # fmt: skip
        return found + (["the Stack"] if cluster.get_json(namespace, "stack", stack) else [])

    operator.eventually("nothing left of the stack", lambda: not left() or None, timeout=90)


def test_webapp_example_lives_its_whole_life(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    body = example("webapp")
    apply(cluster, namespace, body)

    # Readiness gates dependents: while the Deployment is not Available, the Service
    # (depends_on: web) has not started.
    seen_waiting = False
    while (status := settled_status(cluster, namespace, "webapp")) is None:
        now = phases(cluster, namespace)
        if now.get("web") != "CREATE_COMPLETE":
            assert now.get("frontend", "INIT_COMPLETE") == "INIT_COMPLETE", (
                f"the Service started before the Deployment was Available: {now}"
            )
            seen_waiting = seen_waiting or now.get("web") == "CREATE_IN_PROGRESS"
        time.sleep(0.2)
    assert status["phase"] == "CREATE_COMPLETE", status.get("statusReason")
    assert seen_waiting, "never saw the Deployment in progress with the Service waiting"
    deployment = cluster.get_json(namespace, "deployment", "webapp")
    [available] = [c for c in deployment["status"]["conditions"] if c["type"] == "Available"]
    service = cluster.get_json(namespace, "service", "webapp")
    assert timestamp(service["metadata"]["creationTimestamp"]) >= timestamp(
        available["lastTransitionTime"]
    ), "the Service was created before the Deployment became Available"
    assert deployment["status"]["availableReplicas"] == 2

    # Data flowed: outputs, the password into the Secret, names into the Deployment.
    outputs = status["outputs"]
    assert outputs["cluster_ip"] == service["spec"]["clusterIP"]
    secret_name = outputs["password_secret"]
    assert secret_name.startswith("webapp-credentials-"), secret_name
    secret = cluster.get_json(namespace, "secret", secret_name)
    assert set(secret["data"]) == {"DB_USER", "DB_PASSWORD"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == secret_name
    [settings] = records(cluster, namespace)["settings"]
    config_name = settings["status"]["referenceId"]
    assert container["envFrom"][0]["configMapRef"]["name"] == config_name
    password = secret["data"]["DB_PASSWORD"]
    everything = json.dumps(cluster.get_json(namespace, "stacks,stackresources,events"))
    assert password not in everything
    assert base64.b64decode(password).decode() not in everything

    # Update in place: a new greeting changes only the ConfigMap.
    config_uid = uid(cluster, namespace, "configmap", config_name)
    deployment_uid = deployment["metadata"]["uid"]
    patch_parameters(cluster, namespace, "webapp", greeting="Bonjour")
    wait_for_stack(cluster, namespace, "webapp", "UPDATE_COMPLETE", operator=operator_process)
    config = cluster.get_json(namespace, "configmap", config_name)
    assert config["metadata"]["uid"] == config_uid, "the ConfigMap was replaced, not updated"
    assert config["data"]["GREETING"] == "Bonjour"
    assert uid(cluster, namespace, "deployment", "webapp") == deployment_uid

    # Replace with a generated name, create before delete: a Secret's type is immutable.
    # The new Secret exists while the Deployment moves to it; the old one goes last.
    changed = copy.deepcopy(body)
    changed["spec"]["parameters"]["greeting"] = "Bonjour"
    resources = changed["spec"]["template"]["resources"]
    resources["credentials"]["properties"]["manifest"]["type"] = "example.com/credentials"
    apply(cluster, namespace, changed)
    both_seen = False
    while (status := settled_status(cluster, namespace, "webapp")) is None:
        names = cluster.kubectl(
            "get", f"--namespace={namespace}", "secrets", "-o", "name"
        ).stdout.split()
        new = [n for n in names if n.startswith("secret/webapp-credentials-")]
        both_seen = both_seen or len(new) == 2
        time.sleep(0.2)
    assert status["phase"] == "UPDATE_COMPLETE", status.get("statusReason")
    assert both_seen, "never saw the old and the new Secret side by side"
    new_secret = status["outputs"]["password_secret"]
    assert new_secret != secret_name
    assert cluster.get_json(namespace, "secret", secret_name) is None, "the old Secret is left"
    assert cluster.get_json(namespace, "secret", new_secret)["type"] == "example.com/credentials"
    assert plugin_data(cluster, namespace, "credentials")["replacement"] == "create-before-delete"
    container = cluster.get_json(namespace, "deployment", "webapp")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == new_secret

    # Replace with a fixed name, delete first: a Service's clusterIP cannot change.
    service_uid = service["metadata"]["uid"]
    resources["frontend"]["properties"]["manifest"]["spec"]["clusterIP"] = "None"
    apply(cluster, namespace, changed)
    status = wait_for_stack(
        cluster, namespace, "webapp", "UPDATE_COMPLETE", operator=operator_process
    )
    service = cluster.get_json(namespace, "service", "webapp")
    assert service["metadata"]["uid"] != service_uid, "the Service was not replaced"
    assert status["outputs"]["cluster_ip"] == "None"
    only_one_record(cluster, namespace, "frontend", operator_process)
    assert plugin_data(cluster, namespace, "frontend")["replacement"] == "delete-first"

    # Drift: a ConfigMap changed by hand and the Deployment deleted by hand are put back.
    cluster.kubectl(
        "patch", f"--namespace={namespace}", "configmap", config_name, "--type=merge",
        "-p", '{"data": {"GREETING": "hacked"}}',
    )  # fmt: skip
    cluster.kubectl("delete", f"--namespace={namespace}", "deployment", "webapp")

    def greeting() -> str | None:
        config = cluster.get_json(namespace, "configmap", config_name) or {}
        return (config.get("data") or {}).get("GREETING")

    operator_process.eventually(
        "the ConfigMap put back", lambda: greeting() == "Bonjour", timeout=90, seen=greeting
    )
    operator_process.eventually(
        "the Deployment made again",
        lambda: uid(cluster, namespace, "deployment", "webapp") not in (None, deployment_uid),
    )
    events = cluster.get_json(namespace, "events", "--field-selector=reason=DriftRepaired")
    repaired = " ".join(e["message"] for e in events["items"])
    assert "settings" in repaired, repaired
    assert "web" in repaired, repaired

    cluster.kubectl("delete", "stack", "webapp", f"--namespace={namespace}", "--wait=false")
    nothing_left(cluster, namespace, "webapp", operator_process)


def test_heat_utility_example_lives_its_whole_life(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    body = example("heat-utility")
    apply(cluster, namespace, body)
    status = wait_for_stack(
        cluster, namespace, "heat-utility", "CREATE_COMPLETE", operator=operator_process
    )
    outputs = status["outputs"]
    assert outputs["nodes"] == ["demo-a", "demo-b", "demo-c"]
    assert outputs["settings"] == {
        "cluster": "demo",
        "size": 3,
        "nodes": ["demo-a", "demo-b", "demo-c"],
    }
    token_secret = outputs["token_secret"]
    assert outputs["config"] == f"cluster=demo size=3 token-secret={token_secret}"
    token = cluster.get_json(namespace, "secret", token_secret)
    assert token is not None, f"no Secret {token_secret} holds the token"
    types = {name: items[0]["spec"]["type"] for name, items in records(cluster, namespace).items()}
    # The environment's aliases resolve to the types that run.
    assert types["config"] == "OS::Heat::TestResource"
    assert types["server"] == "OS::Heat::None"
    [config] = records(cluster, namespace)["config"]
    config_id = config["status"]["referenceId"]

    # Update in place: a new size flows through the Values into the config.
    patch_parameters(cluster, namespace, "heat-utility", node_count="5")
    status = wait_for_stack(
        cluster, namespace, "heat-utility", "UPDATE_COMPLETE", operator=operator_process
    )
    assert status["outputs"]["settings"]["size"] == 5
    assert status["outputs"]["config"].startswith("cluster=demo size=5 ")
    config = current(cluster, namespace, "config")
    assert config["status"]["referenceId"] == config_id, "config was replaced, not updated"

    # Replace: a new salt makes a new token (the old one's Secret goes in the cleanup);
    # a new update_replace_value replaces config (generated name: create before delete).
    changed = copy.deepcopy(body)
    changed["spec"]["parameters"].update(node_count="5", token_salt="2")
    resources = changed["spec"]["template"]["resources"]
    resources["config"]["properties"]["update_replace_value"] = "v2"
    apply(cluster, namespace, changed)
    status = wait_for_stack(
        cluster, namespace, "heat-utility", "UPDATE_COMPLETE", operator=operator_process
    )
    new_secret = status["outputs"]["token_secret"]
    assert new_secret != token_secret
    assert cluster.get_json(namespace, "secret", token_secret) is None, "the old token is left"
    assert status["outputs"]["config"].endswith(f"token-secret={new_secret}")
    only_one_record(cluster, namespace, "join_token", operator_process)
    config = only_one_record(cluster, namespace, "config", operator_process)
    assert config["status"]["referenceId"] != config_id, "config was not replaced"
    assert cluster.get_json(namespace, "configmap", config_id) is None, "the old config is left"

    cluster.kubectl("delete", "stack", "heat-utility", f"--namespace={namespace}", "--wait=false")
    nothing_left(cluster, namespace, "heat-utility", operator_process)


def settled(
    cluster: Cluster, namespace: str, stack: str, phase: str, operator: OperatorProcess
) -> dict[str, Any]:
    """Wait until the stack has settled (complete or failed) and check it is in `phase`."""
    status = wait_for_stack(cluster, namespace, stack, operator=operator, timeout=240)
    assert status["phase"] == phase, f"{stack}: {status['phase']}: {status.get('statusReason')}"
    return status


def deployments(cluster: Cluster, namespace: str, prefix: str) -> dict[str, tuple[str, int, str]]:
    """Deployments named `prefix`...: name -> (uid, generation, first container's image)."""
    found = {}
    for item in (cluster.get_json(namespace, "deployments") or {"items": []})["items"]:
        name = item["metadata"]["name"]
        if name.startswith(prefix) and not item["metadata"].get("deletionTimestamp"):
            image = item["spec"]["template"]["spec"]["containers"][0]["image"]
            found[name] = (item["metadata"]["uid"], item["metadata"]["generation"], image)
    return found


def child_templates(cluster: Cluster, namespace: str, child: str) -> list[dict[str, Any]]:
    """The child stack's templates (its ControllerRevisions), oldest first: each member's
    resources as the group applied them, batch by batch."""
    found = cluster.get_json(
        namespace, "controllerrevisions", "-l", f"convergence.dev/stack={child}"
    ) or {"items": []}
    ordered = sorted(found["items"], key=lambda item: item["revision"])
    return [dict(item["data"]["template"]["resources"]) for item in ordered]


def member_images(template: dict[str, Any]) -> dict[str, str]:
    return {
        name: member["properties"]["manifest"]["spec"]["template"]["spec"]["containers"][0]["image"]
        for name, member in template.items()
    }


def test_web_tier_example_scales_and_updates_touching_only_the_members_that_change(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    body = example("web-tier")
    apply(cluster, namespace, body)
    status = settled(cluster, namespace, "webtier", "CREATE_COMPLETE", operator_process)
    servers = ["webtier-web-0", "webtier-web-1", "webtier-web-2"]
    assert status["outputs"]["servers"] == servers
    assert status["outputs"]["db_host"] == "webtier-db"
    service = cluster.get_json(namespace, "service", "webtier")
    assert status["outputs"]["cluster_ip"] == service["spec"]["clusterIP"]
    assert service["spec"]["selector"] == {"app": "webtier-web"}
    web_child = current(cluster, namespace, "web")["status"]["resourceId"]
    db_child = current(cluster, namespace, "db")["status"]["resourceId"]
    stacks = {i["metadata"]["name"] for i in cluster.get_json(namespace, "stacks")["items"]}
    assert stacks == {"webtier", web_child, db_child}
    # batch_create, two at a time: the child's template grew batch by batch.
    assert [sorted(t) for t in child_templates(cluster, namespace, web_child)] == [
        ["0", "1"],
        ["0", "1", "2"],
    ]
    web = deployments(cluster, namespace, "webtier-web-")
    assert sorted(web) == servers
    secret = cluster.get_json(namespace, "deployment", "webtier-db")
    db_secret = secret["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]
    members_secret = cluster.get_json(namespace, "deployment", "webtier-web-0")["spec"]["template"][
        "spec"
    ]["containers"][0]["env"][1]["valueFrom"]
    assert db_secret == members_secret, "the web servers do not read the database's Secret"

    # Scale up: only the new server is made; the others are not touched (same uid and
    # generation: their spec was not written).
    patch_parameters(cluster, namespace, "webtier", web_count="4")
    status = settled(cluster, namespace, "webtier", "UPDATE_COMPLETE", operator_process)
    assert status["outputs"]["servers"] == [*servers, "webtier-web-3"]
    grown = deployments(cluster, namespace, "webtier-web-")
    assert {name: grown[name] for name in servers} == web, "a server that stays was touched"
    assert sorted(grown) == [*servers, "webtier-web-3"]

    # Scale down: the highest index goes, the others are not touched.
    patch_parameters(cluster, namespace, "webtier", web_count="3")
    status = settled(cluster, namespace, "webtier", "UPDATE_COMPLETE", operator_process)
    assert status["outputs"]["servers"] == servers
    operator_process.eventually(
        "webtier-web-3 to go",
        lambda: sorted(deployments(cluster, namespace, "webtier-web-")) == servers,
        timeout=60,
    )
    assert deployments(cluster, namespace, "webtier-web-") == web

    # A new image: a rolling update, one server per batch (two stay in service), each
    # updated in place (same uid), the highest index first.
    before = len(child_templates(cluster, namespace, web_child))
    patch_parameters(cluster, namespace, "webtier", web_count="3", image="nginx:1.30")
    status = settled(cluster, namespace, "webtier", "UPDATE_COMPLETE", operator_process)
    batches = [member_images(t) for t in child_templates(cluster, namespace, web_child)[before:]]
    new = "nginx:1.30"
    assert [sorted(n for n, image in b.items() if image == new) for b in batches] == [
        ["2"],
        ["1", "2"],
        ["0", "1", "2"],
    ], batches
    rolled = deployments(cluster, namespace, "webtier-web-")
    assert {name: uid for name, (uid, _, _) in rolled.items()} == {
        name: uid for name, (uid, _, _) in web.items()
    }, "a server was replaced, not updated"
    assert {image for _, _, image in rolled.values()} == {new}

    # The database tier is updated in place (the same child stack), the servers untouched.
    db_uid = uid(cluster, namespace, "deployment", "webtier-db")
    patch_parameters(cluster, namespace, "webtier", web_count="3", image=new, db_size="2Gi")
    settled(cluster, namespace, "webtier", "UPDATE_COMPLETE", operator_process)
    assert current(cluster, namespace, "db")["status"]["resourceId"] == db_child
    database = cluster.get_json(namespace, "deployment", "webtier-db")
    assert database["metadata"]["uid"] == db_uid
    annotations = database["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.convergence.dev/volume-size"] == "2Gi"
    assert deployments(cluster, namespace, "webtier-web-") == rolled

    # Delete: the parent, both children and everything they made go.
    cluster.kubectl("delete", "stack", "webtier", f"--namespace={namespace}", "--wait=false")

    def left() -> list[str]:
        found = cluster.kubectl(
            "get", f"--namespace={namespace}",
            "stacks,stackresources,deployments,services,secrets,configmaps,controllerrevisions",
            "-o", "name",
        ).stdout.split()  # fmt: skip
        # What the namespace has of its own (its ServiceAccount's root CA ConfigMap).
        return [name for name in found if name != "configmap/kube-root-ca.crt"]

    operator_process.eventually("nothing left of the web tier", lambda: not left() or None, 120)
