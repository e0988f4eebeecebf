"""`kubectl convergence` against live stacks on the real control plane, the operator running.

Each command is run in-process through the plugin's `main` (as `kubectl` runs
it: the user's kubeconfig, a namespace) and once as a real kubectl plugin;
what it prints is checked against the API's own objects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from convergence.operator.kubectl.graph import FILL, record_id_of
from convergence.operator.kubectl.main import main
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

SVG = "{http://www.w3.org/2000/svg}"
COMPLETE_FILL = FILL["COMPLETE"]


def plugin(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, namespace: str, *args: str
) -> tuple[int, str, str]:
    """Run `kubectl convergence -n NAMESPACE ARGS...` in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(["--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def plugin_json(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, namespace: str, *args: str
) -> Any:
    code, out, err = plugin(capsys, cluster, namespace, *args, "-o", "json")
    assert code == 0, f"kubectl convergence {' '.join(args)} failed: {err}"
    return json.loads(out)


def apply_stack(cluster: Cluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", f"--namespace={namespace}", "-f", "-", input=json.dumps(body))


def stack_resources(cluster: Cluster, namespace: str, stack: str) -> dict[str, dict[str, Any]]:
    """The stack's StackResources as the API has them, by record id."""
    listed = cluster.get_json(namespace, "stackresources", "-l", f"convergence.dev/stack={stack}")
    return {item["metadata"]["name"]: item for item in listed["items"]}


def chain(first: str) -> dict[str, Any]:
    """first <- second <- settings (a ConfigMap made by Kubernetes::Object); a new value of
    `first` replaces it, and updates the others."""
    return hot.template(
        {
            "first": {
                "type": "OS::Heat::TestResource",
                "properties": {"value": first, "update_replace_value": first},
            },
            "second": {
                "type": "OS::Heat::TestResource",
                "properties": {"value": {"get_attr": ["first", "output"]}},
            },
            "settings": {
                "type": "Kubernetes::Object",
                "properties": {
                    "manifest": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "plugin-settings"},
                        "data": {"second": {"get_attr": ["second", "output"]}},
                    }
                },
            },
        }
    )


@pytest.fixture
def replaced_stack(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> dict[str, Any]:
    """A stack created, then updated so that `first` is replaced; beside it another stack.

    Returns the StackResources by record id and the id of the replaced `first`.
    """
    apply_stack(cluster, namespace, hot.stack("other", hot.template(
        hot.resources("OS::Heat::TestResource", lonely={"properties": {"value": "x"}})
    )))  # fmt: skip
    apply_stack(cluster, namespace, hot.stack("chain", chain("a")))
    wait_for_stack(cluster, namespace, "chain", "CREATE_COMPLETE", operator=operator_process)
    [old_first] = [
        name
        for name, body in stack_resources(cluster, namespace, "chain").items()
        if body["spec"]["resource"] == "first"
    ]
    apply_stack(cluster, namespace, hot.stack("chain", chain("b")))
    wait_for_stack(cluster, namespace, "chain", "UPDATE_COMPLETE", operator=operator_process)
    wait_for_stack(cluster, namespace, "other", "CREATE_COMPLETE", operator=operator_process)
    records = operator_process.eventually(
        "the replaced first's StackResource to go",
        lambda: (found := stack_resources(cluster, namespace, "chain")) and old_first not in found
        and found,
    )  # fmt: skip
    return {"records": records, "old_first": old_first}


def test_resources_lists_every_record_like_openstack_stack_resource_list(
    cluster: Cluster, namespace: str, replaced_stack: dict[str, Any], capsys: Any
) -> None:
    records = replaced_stack["records"]
    listed = plugin_json(capsys, cluster, namespace, "resources", "chain")
    assert sorted(r["resource"] for r in listed) == ["first", "second", "settings"], listed
    for row in listed:
        body = records[row["record"]]
        status = body["status"]
        assert row["type"] == body["spec"]["type"], row
        assert row["phase"] == status["phase"], row
        assert row["physicalId"] == status.get("resourceId"), row
        assert row["replacedBy"] == status.get("replacedBy"), row
        assert row["reason"] == status.get("statusReason", ""), row
    by_name = {row["resource"]: row for row in listed}
    assert by_name["first"]["replaces"] == replaced_stack["old_first"], "the replacement"
    assert by_name["first"]["phase"] == "CREATE_COMPLETE"
    assert by_name["second"]["phase"] == "UPDATE_COMPLETE", "second moved to the new first"
    assert by_name["settings"]["physicalId"] == "plugin-settings"

    code, table, _ = plugin(capsys, cluster, namespace, "resources", "chain")
    lines = table.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "RESOURCE", "RECORD", "TYPE", "PHASE", "PHYSICAL", "ID", "REPLACED", "BY", "REASON",
    ], lines[0]  # fmt: skip
    assert len(lines) == 4, table
    first = ["first", by_name["first"]["record"][-8:], "OS::Heat::TestResource", "CREATE_COMPLETE"]
    assert lines[1].split()[:4] == first, lines[1]


def test_events_of_the_stack_and_its_resources_in_time_order(
    cluster: Cluster, namespace: str, replaced_stack: dict[str, Any], capsys: Any
) -> None:
    listed = plugin_json(capsys, cluster, namespace, "events", "chain")
    times = [event["time"] for event in listed]
    assert times == sorted(times), "events must come oldest first"
    stack_reasons = [e["reason"] for e in listed if e["object"]["kind"] == "Stack"]
    for reason in ("CreateInProgress", "CreateComplete", "UpdateInProgress", "UpdateComplete"):
        assert reason in stack_reasons, f"{reason} missing from the stack's {stack_reasons}"
    assert stack_reasons.index("CreateComplete") < stack_reasons.index("UpdateInProgress")
    assert all(e["object"]["name"] == "chain" for e in listed if e["object"]["kind"] == "Stack")
    resource_events = {(e["resource"], e["reason"]) for e in listed if e["resource"]}
    for name in ("first", "second", "settings"):
        assert (name, "CreateComplete") in resource_events, f"no CreateComplete of {name}"
    # The replaced record is gone, but the traversal's graph still names it.
    old = [e for e in listed if e["object"]["name"] == replaced_stack["old_first"]]
    assert "DeleteComplete" in [e["reason"] for e in old], old
    # Nothing of the other stack in the same namespace.
    others = stack_resources(cluster, namespace, "other")
    assert not [e for e in listed if e["object"]["name"] in {*others, "other"}]

    code, table, _ = plugin(capsys, cluster, namespace, "events", "chain")
    assert code == 0
    assert table.splitlines()[0].split() == ["TIME", "TYPE", "REASON", "OBJECT", "RESOURCE",
                                             "MESSAGE"]  # fmt: skip
    assert len(table.splitlines()) == len(listed) + 1
    assert "Stack/chain" in table
    assert "Stack UPDATE completed successfully" in table


def test_trace_shows_the_stack_its_records_and_the_objects_they_manage(
    cluster: Cluster, namespace: str, replaced_stack: dict[str, Any], capsys: Any
) -> None:
    records = replaced_stack["records"]
    tree = plugin_json(capsys, cluster, namespace, "trace", "chain")
    assert (tree["kind"], tree["name"], tree["phase"], tree["ready"]) == (
        "Stack", "chain", "UPDATE_COMPLETE", "True"
    ), tree  # fmt: skip
    assert {child["name"] for child in tree["children"]} == set(records)
    for child in tree["children"]:
        body = records[child["name"]]
        assert child["resource"] == body["spec"]["resource"]
        assert child["phase"] == body["status"]["phase"]
        assert child["ready"] == "True", child
        [managed] = child["children"]
        assert managed["ready"] == "True", managed
        if child["resource"] == "settings":
            assert (managed["kind"], managed["name"]) == ("ConfigMap", "plugin-settings")
        else:
            # A TestResource's ConfigMap, labelled with its record.
            assert managed["kind"] == "ConfigMap"
            live = cluster.get_json(namespace, "configmap", managed["name"])
            labels = live["metadata"]["labels"]
            assert labels["convergence.dev/stack-resource"] == child["name"], labels
            annotations = live["metadata"]["annotations"]
            assert annotations["convergence.dev/physical-name"] == body["status"]["resourceId"]

    code, table, _ = plugin(capsys, cluster, namespace, "trace", "chain")
    assert code == 0
    lines = table.splitlines()
    assert lines[1].startswith("Stack/chain "), lines
    assert any(line.startswith("└─ StackResource/") for line in lines), table
    assert any(line.startswith("│  └─ ConfigMap/") for line in lines), table
    assert sum("ConfigMap/" in line for line in lines) == 3, table


def test_graph_draws_the_current_traversal_as_dot_svg_and_png(
    cluster: Cluster,
    namespace: str,
    replaced_stack: dict[str, Any],
    capsys: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if shutil.which("dot") is None:
        pytest.fail("Graphviz's dot program is missing: `make graphviz-bin` installs it")
    records, old_first = replaced_stack["records"], replaced_stack["old_first"]
    graph_map = cluster.get_json(namespace, "stack", "chain")["status"]["graphRef"]
    stored = json.loads(cluster.get_json(namespace, "configmap", graph_map)["data"]["graph"])
    stored_nodes = {key.replace(":", "_", 1) for key in stored}
    by_name = {body["spec"]["resource"]: name for name, body in records.items()}

    dot_file = tmp_path / "chain.dot"
    code, _, err = plugin(capsys, cluster, namespace, "graph", "chain", "--output", str(dot_file))
    assert code == 0, err
    laid_out = json.loads(
        subprocess.run(
            ["dot", "-Tjson", str(dot_file)], capture_output=True, text=True, check=True
        ).stdout
    )
    names = [obj["name"] for obj in laid_out["objects"]]
    # Every node of the stored graph, and every record, has a node.
    assert stored_nodes <= set(names), (stored_nodes, names)
    assert set(records) <= {record_id_of(name) for name in names}, names
    # The graph's edges run from what is required to what waits for it.
    edges = {(names[e["tail"]], names[e["head"]]) for e in laid_out["edges"]}
    assert (f"update_{old_first}", f"update_{by_name['second']}") in edges, edges
    # The replacement made in this traversal stands beside what it replaced.
    assert (f"update_{old_first}", f"record_{by_name['first']}") in edges, edges
    labels = {obj["name"]: obj.get("label", "") for obj in laid_out["objects"]}
    assert "cleaned up" in labels[f"cleanup_{old_first}"], labels

    svg_file = tmp_path / "chain.svg"
    code, _, err = plugin(
        capsys, cluster, namespace, "graph", "chain", "-o", "svg", "--output", str(svg_file)
    )
    assert code == 0, err
    svg = ET.parse(svg_file).getroot()
    assert svg.tag == f"{SVG}svg"
    drawn = {}
    for group in svg.iter(f"{SVG}g"):
        if group.get("class") == "node":
            title = group.find(f"{SVG}title")
            shape = next(
                (s for s in group.iter() if s.tag in (f"{SVG}polygon", f"{SVG}path",
                                                      f"{SVG}ellipse")), None
            )  # fmt: skip
            assert title is not None, "a node without a title"
            assert shape is not None, f"node {title.text} has no shape"
            drawn[str(title.text)] = shape.get("fill")
    assert set(records) <= {record_id_of(name) for name in drawn}, drawn
    assert drawn[f"update_{by_name['second']}"] == COMPLETE_FILL, drawn
    assert drawn[f"cleanup_{old_first}"] == "none", "a record cleaned up is drawn unfilled"

    png_file = tmp_path / "chain.png"
    code, _, err = plugin(
        capsys, cluster, namespace, "graph", "chain", "-o", "png", "--output", str(png_file)
    )
    assert code == 0, err
    assert png_file.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # Without Graphviz's program, DOT still works and svg says what is missing.
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    code, out, _ = plugin(capsys, cluster, namespace, "graph", "chain")
    assert (code, out[:15]) == (0, "digraph chain {"), out[:80]
    code, _, err = plugin(capsys, cluster, namespace, "graph", "chain", "-o", "svg")
    assert code == 1, err
    assert "Graphviz's `dot`" in err, err


def solo(value: str) -> dict[str, Any]:
    return hot.stack("solo", hot.template(
        hot.resources("OS::Heat::TestResource", alone={"properties": {"value": value}})
    ))  # fmt: skip


def test_the_plugin_runs_as_kubectl_convergence(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Path
) -> None:
    apply_stack(cluster, namespace, solo("v"))
    wait_for_stack(cluster, namespace, "solo", "CREATE_COMPLETE", operator=operator_process)
    # kubectl finds kubectl-convergence on PATH, as installed with the package.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    run = [cluster.kubectl_binary, "convergence"]
    found = subprocess.run(
        [*run, "resources", "solo", "-n", namespace], env=env, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    [row] = found.stdout.splitlines()[1:]
    cells = row.split()
    assert (cells[0], cells[3]) == ("alone", "CREATE_COMPLETE"), row
    # The preview command is one of the plugin's too.
    manifest = tmp_path / "solo.yaml"
    manifest.write_text(json.dumps(solo("w")))
    previewed = subprocess.run(
        [*run, "preview", "-f", str(manifest), "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
    )
    assert previewed.returncode == 0, previewed.stderr
    assert "alone" in previewed.stdout, previewed.stdout
    assert "update" in previewed.stdout.splitlines()[1].split(), previewed.stdout
    missing = subprocess.run(
        [*run, "-n", namespace, "trace", "nowhere"], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert f'"nowhere" not found in namespace "{namespace}"' in missing.stderr, missing.stderr


def stack_of(value: str, *, fail: bool = False, wait: int = 0) -> dict[str, Any]:
    properties = {"value": value, "fail": fail, "wait_secs": wait}
    return hot.stack(
        "steered",
        hot.template({"a": {"type": "OS::Heat::TestResource", "properties": properties}}),
        disableRollback=True,
    )


def physical_value(cluster: Cluster, namespace: str) -> str:
    listed = cluster.get_json(namespace, "configmaps", "-l", "convergence.dev/resource=a")
    [item] = listed["items"]
    return str(json.loads(item["data"]["properties"])["value"])


def test_cancel_rollback_and_retry_write_the_annotations_the_operator_acts_on(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, capsys: Any
) -> None:
    def status() -> dict[str, Any]:
        return dict(cluster.get_json(namespace, "stack", "steered")["status"])

    def annotations() -> dict[str, str]:
        body = cluster.get_json(namespace, "stack", "steered")
        return dict(body["metadata"].get("annotations") or {})

    apply_stack(cluster, namespace, stack_of("v1"))
    wait_for_stack(cluster, namespace, "steered", "CREATE_COMPLETE", operator=operator_process)

    # cancel --no-rollback: the slow update ends FAILED, the running action finishes.
    apply_stack(cluster, namespace, stack_of("v2", wait=8))
    operator_process.eventually(
        "the slow update to start", lambda: status().get("phase") == "UPDATE_IN_PROGRESS"
    )
    code, out, err = plugin(capsys, cluster, namespace, "cancel", "steered", "--no-rollback",
                            "--wait")  # fmt: skip
    assert code == 0, err
    assert "handled: UPDATE_FAILED (Stack UPDATE cancelled)" in out, out
    assert "convergence.dev/cancel" not in annotations(), "a handled request is consumed"
    first = status()["handledCancelTraversal"]
    # The same cancel in a later update is a new request, carried out too.
    apply_stack(cluster, namespace, stack_of("v2b", wait=8))
    operator_process.eventually(
        "the next slow update to start",
        lambda: (s := status()).get("phase") == "UPDATE_IN_PROGRESS" and s["traversal"] != first,
    )
    code, out, err = plugin(capsys, cluster, namespace, "cancel", "steered", "--no-rollback",
                            "--wait")  # fmt: skip
    assert code == 0, err
    assert "handled: UPDATE_FAILED (Stack UPDATE cancelled)" in out, out
    assert status()["handledCancelTraversal"] != first

    # rollback: back to the last template in service (v1), although rollback is disabled.
    apply_stack(cluster, namespace, stack_of("v3", fail=True))
    wait_for_stack(cluster, namespace, "steered", "UPDATE_FAILED", operator=operator_process)
    code, out, err = plugin(capsys, cluster, namespace, "rollback", "steered", "--wait")
    assert code == 0, err
    value = status()["handledRollback"]
    assert f"rollback requested (convergence.dev/rollback={value})" in out, out
    assert "convergence.dev/rollback" not in annotations()
    wait_for_stack(cluster, namespace, "steered", "ROLLBACK_COMPLETE", operator=operator_process)
    assert physical_value(cluster, namespace) == "v1"

    # retry: the same spec (v3, failing) converged again, in a new traversal.
    before = status()["traversal"]
    code, out, err = plugin(capsys, cluster, namespace, "retry", "steered", "--wait")
    assert code == 0, err
    value = status()["handledRetry"]
    assert f"retry requested (convergence.dev/retry={value})" in out, out
    assert "convergence.dev/retry" not in annotations()
    again = operator_process.eventually(
        "the retried update to fail again in a new traversal",
        lambda: (s := status()).get("phase") == "UPDATE_FAILED" and s["traversal"] != before
        and s,
    )  # fmt: skip
    assert physical_value(cluster, namespace) == "v1", again

    code, _, err = plugin(capsys, cluster, namespace, "retry", "nowhere")
    assert code == 1, err
    assert '"nowhere" not found' in err, err
