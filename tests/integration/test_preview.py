"""StackPreview and `kubectl convergence preview` on the real control plane: the preview of
each of Heat's preview_update cases, then the update applied, and what it really did compared."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from convergence.operator.controllers.preview import PreviewController, PreviewRequest
from convergence.operator.engine.plugin import TypeRegistry
from convergence.operator.kubectl import preview as command
from convergence.operator.namespaces import Namespaces
from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

TYPE = "OS::Heat::TestResource"
CATEGORIES = ("added", "updated", "replaced", "deleted", "unchanged")


def template_of(**specs: dict[str, Any]) -> dict[str, Any]:
    """A template of test resources by name."""
    return hot.template(hot.resources(TYPE, specs))


# Heat's functional preview cases, one after the other on one stack: each step's
# template is previewed, then applied.
ONE = template_of(test1={"properties": {"value": "Test1"}})
TWO = template_of(
    test1={"properties": {"value": "Test1"}}, test2={"properties": {"value": "Test1"}}
)
STEPS: list[tuple[str, dict[str, Any], dict[str, list[str]]]] = [
    ("add", TWO, {"added": ["test2"], "unchanged": ["test1"]}),
    # Only the description differs: a new generation, nothing to do.
    ("no change", {**TWO, "description": "same"}, {"unchanged": ["test1", "test2"]}),
    (
        "update in place",
        template_of(
            test1={"properties": {"value": "Test1 foo"}}, test2={"properties": {"value": "Test1"}}
        ),
        {"updated": ["test1"], "unchanged": ["test2"]},
    ),
    (
        "replace",
        template_of(
            test1={"properties": {"update_replace": True}}, test2={"properties": {"value": "Test1"}}
        ),
        {"replaced": ["test1"], "unchanged": ["test2"]},
    ),
    (
        "delete",
        template_of(test1={"properties": {"update_replace": True}}),
        {"deleted": ["test2"], "unchanged": ["test1"]},
    ),
]


def apply(cluster: Cluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", f"--namespace={namespace}", "-f", "-", input=json.dumps(body))


def ask(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Apply a StackPreview and return its status once the operator answered its generation."""
    body = {
        "apiVersion": hot.API_VERSION,
        "kind": "StackPreview",
        "metadata": {"name": name},
        "spec": spec,
    }
    apply(cluster, namespace, body)
    deadline = time.monotonic() + 60
    while True:
        found = cluster.get_json(namespace, "stackpreview", name) or {}
        status = found.get("status") or {}
        if status.get("observedGeneration") == found["metadata"]["generation"]:
            return dict(status)
        assert time.monotonic() < deadline, f"StackPreview {name} not answered: {found}"
        time.sleep(0.2)


def lists(status: dict[str, Any]) -> dict[str, list[str]]:
    """The status's non-empty lists, by logical name."""
    return {c: [r["name"] for r in status[c]] for c in CATEGORIES if status.get(c)}


def reality(cluster: Cluster, namespace: str) -> dict[str, tuple[str, str]]:
    """Each TestResource's ConfigMap by logical name: (name, resourceVersion)."""
    items = cluster.get_json(
        namespace, "configmaps", "-l", "app.kubernetes.io/managed-by=convergence"
    )["items"]
    found: dict[str, tuple[str, str]] = {}
    for item in items:
        logical = item["metadata"]["labels"]["convergence.dev/resource"]
        assert logical not in found, f"two physical copies of {logical}"
        found[logical] = (item["metadata"]["name"], item["metadata"]["resourceVersion"])
    return found


def what_happened(
    before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]]
) -> dict[str, list[str]]:
    """Reality compared: a new ConfigMap is a replacement, a rewritten one an update."""
    happened: dict[str, list[str]] = {}
    for name in sorted(set(before) | set(after)):
        if name not in before:
            category = "added"
        elif name not in after:
            category = "deleted"
        elif after[name][0] != before[name][0]:
            category = "replaced"
        elif after[name][1] != before[name][1]:
            category = "updated"
        else:
            category = "unchanged"
        happened.setdefault(category, []).append(name)
    return happened


def test_each_preview_matches_what_the_update_then_does(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    created = ask(cluster, namespace, "first", {"stackName": "s", "template": ONE})
    assert created["phase"] == "Ready", created
    assert created["operation"] == "create"
    assert lists(created) == {"added": ["test1"]}
    assert cluster.get_json(namespace, "stack", "s") is None, "a preview creates nothing"
    apply(cluster, namespace, hot.stack("s", ONE))
    wait_for_stack(cluster, namespace, "s", "CREATE_COMPLETE", operator=operator_process)
    assert sorted(reality(cluster, namespace)) == ["test1"]

    for step, template, expected in STEPS:
        before = reality(cluster, namespace)
        answer = ask(cluster, namespace, "next", {"stackName": "s", "template": template})
        assert answer["phase"] == "Ready", (step, answer)
        assert answer["operation"] == "update"
        assert lists(answer) == expected, step
        assert reality(cluster, namespace) == before, f"{step}: the preview changed reality"
        apply(cluster, namespace, hot.stack("s", template))
        wait_for_stack(cluster, namespace, "s", "UPDATE_COMPLETE", operator=operator_process)
        assert what_happened(before, reality(cluster, namespace)) == expected, step

    gone = ask(cluster, namespace, "last", {"stackName": "s", "delete": True})
    assert (gone["phase"], gone["operation"], lists(gone)) == (
        "Ready",
        "delete",
        {"deleted": ["test1"]},
    )
    cluster.kubectl("delete", f"--namespace={namespace}", "stack", "s", "--timeout=60s")
    assert reality(cluster, namespace) == {}


def test_replacement_and_unknown_values_are_explained(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    def chain(value: str) -> dict[str, Any]:
        return template_of(
            source={"properties": {"value": value, "update_replace": True}},
            consumer={"properties": {"update_replace_value": {"get_attr": ["source", "output"]}}},
            reader={"properties": {"value": {"get_attr": ["source", "output"]}}},
        )

    apply(cluster, namespace, hot.stack("s", chain("a")))
    wait_for_stack(cluster, namespace, "s", "CREATE_COMPLETE", operator=operator_process)
    answer = ask(cluster, namespace, "p", {"stackName": "s", "template": chain("b")})
    assert lists(answer) == {"updated": ["reader"], "replaced": ["consumer", "source"]}
    replaced = {r["name"]: r for r in answer["replaced"]}
    assert replaced["consumer"]["forcedBy"] == ["update_replace_value"]
    assert replaced["consumer"]["unknown"] == ["update_replace_value"]
    assert replaced["source"]["reason"] == f"{TYPE} replaces it on a change of value"
    assert replaced["source"]["properties"] == ["value"]
    assert answer["updated"][0]["unknown"] == ["value"]

    before = reality(cluster, namespace)
    apply(cluster, namespace, hot.stack("s", chain("b")))
    wait_for_stack(cluster, namespace, "s", "UPDATE_COMPLETE", operator=operator_process)
    assert what_happened(before, reality(cluster, namespace)) == lists(answer)


def test_an_invalid_template_gets_the_engines_error(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    bad = template_of(a={"properties": {"value": {"get_param": "imge"}}})
    answer = ask(cluster, namespace, "bad", {"stackName": "s", "template": bad})
    assert answer["phase"] == "Failed"
    assert answer["reason"] == "InvalidTemplate"
    assert "resources.a.properties.value" in answer["message"], answer["message"]
    assert "unknown parameter 'imge'" in answer["message"], answer["message"]
    refused = ask(
        cluster,
        namespace,
        "props",
        {"template": template_of(a={"properties": {"wait_secs": "soon"}})},
    )
    assert (refused["phase"], refused["reason"]) == ("Failed", "PropertiesInvalid")
    assert "resources.a.properties" in refused["message"]


def test_parameters_from_are_read_as_the_previews_service_account(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    cluster.kubectl(
        "create", f"--namespace={namespace}", "secret", "generic", "db", "--from-literal=word=hi"
    )
    cluster.kubectl("create", f"--namespace={namespace}", "serviceaccount", "nobody")
    template = hot.template(
        hot.resources(TYPE, a={"properties": {"value": {"get_param": "word"}}}),
        parameters={"word": {"type": "string", "hidden": True}},
    )
    source = [{"kind": "Secret", "name": "db"}]
    # Single-tenant mode, no ServiceAccount: the operator's identity reads it.
    read = ask(cluster, namespace, "as-operator", {"template": template, "parametersFrom": source})
    assert (read["phase"], lists(read)) == ("Ready", {"added": ["a"]}), read
    assert "hi" not in json.dumps(read), "a preview shows no parameter value"
    # A ServiceAccount that may not read the Secret: refused, naming who and what.
    refused = ask(
        cluster,
        namespace,
        "as-nobody",
        {"template": template, "parametersFrom": source, "serviceAccountName": "nobody"},
    )
    assert (refused["phase"], refused["reason"]) == ("Failed", "ParametersForbidden"), refused
    assert f"ServiceAccount {namespace}/nobody may not read Secret db" in refused["message"]


def test_files_from_are_read_for_a_preview_of_template_resources(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    server = "heat_template_version: 2021-04-16\nresources: {box: {type: OS::Heat::None}}\n"
    cluster.kubectl(
        "create",
        f"--namespace={namespace}",
        "configmap",
        "templates",
        f"--from-literal=server.yaml={server}",
    )
    template = hot.template({"web": {"type": "server.yaml"}})
    source = [{"kind": "ConfigMap", "name": "templates"}]
    read = ask(cluster, namespace, "templated", {"template": template, "filesFrom": source})
    assert (read["phase"], lists(read)) == ("Ready", {"added": ["web"]}), read
    assert read["added"][0]["type"] == "server.yaml", read
    missing = ask(
        cluster,
        namespace,
        "untemplated",
        {"template": template, "filesFrom": [{"kind": "ConfigMap", "name": "none"}]},
    )
    assert (missing["phase"], missing["reason"]) == ("Failed", "FilesNotFound"), missing
    assert missing["message"] == "filesFrom: not found: ConfigMap none", missing


def test_multi_tenant_mode_reads_no_source_for_a_preview_naming_no_service_account(
    cluster: Cluster, namespace: str
) -> None:
    # The controller itself, on the real API, as an operator run with
    # --require-service-account would build it.
    cluster.kubectl(
        "create", f"--namespace={namespace}", "configmap", "settings", "--from-literal=word=hi"
    )
    api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    controller = PreviewController(
        Namespaces(api, TypeRegistry.from_entry_points(), require_service_account=True)
    )
    template = hot.template(
        hot.resources(TYPE, a={"properties": {"value": {"get_param": "word"}}}),
        parameters={"word": {"type": "string"}},
    )
    body = {
        "metadata": {"namespace": namespace, "name": "p", "generation": 1},
        "spec": {
            "template": template,
            "parametersFrom": [{"kind": "ConfigMap", "name": "settings"}],
        },
    }
    patch: dict[str, Any] = {}
    controller.reconcile(PreviewRequest.of(body), patch)
    assert (patch["phase"], patch["reason"]) == ("Failed", "ParametersForbidden"), patch
    assert "names no spec.serviceAccountName" in patch["message"]
    without_sources: dict[str, Any] = {}
    body["spec"] = {"template": template, "parameters": {"word": "inline"}}
    controller.reconcile(PreviewRequest.of(body), without_sources)
    assert (without_sources["phase"], lists(without_sources)) == ("Ready", {"added": ["a"]})


# -- kubectl convergence preview -----------------------------------------------------------------


def plugin_args(cluster: Cluster, namespace: str, *argv: str) -> argparse.Namespace:
    """The command line as the plugin's main hands it over (its global options set here)."""
    top = argparse.ArgumentParser(prog="kubectl convergence")
    command.register(top.add_subparsers(dest="command", required=True))
    args = top.parse_args(["preview", *argv])
    args.kubeconfig, args.context, args.namespace = str(cluster.kubeconfig), None, namespace
    return args


def test_kubectl_convergence_preview_prints_the_operators_answer(
    cluster: Cluster,
    namespace: str,
    operator_process: OperatorProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    apply(cluster, namespace, hot.stack("web", TWO))
    wait_for_stack(cluster, namespace, "web", "CREATE_COMPLETE", operator=operator_process)
    manifest = tmp_path / "stack.yaml"
    changed = template_of(
        test1={"properties": {"value": "Test1 foo"}},
        test3={"properties": {"update_replace_value": "x"}},
    )
    manifest.write_text(yaml.safe_dump(hot.stack("web", changed)))

    assert command.run(plugin_args(cluster, namespace, "-f", str(manifest))) == 0
    printed = capsys.readouterr().out
    rows = [line.split()[:3] for line in printed.splitlines()[1:] if line.strip()][:3]
    assert rows == [
        ["test3", TYPE, "add"],
        ["test1", TYPE, "update"],
        ["test2", TYPE, "delete"],
    ], printed
    assert "changes value" in printed
    assert "update of stack web: 1 added, 1 updated, 1 deleted" in printed

    assert command.run(plugin_args(cluster, namespace, "-f", str(manifest), "-o", "yaml")) == 0
    answer = yaml.safe_load(capsys.readouterr().out)
    assert lists(answer) == {"added": ["test3"], "updated": ["test1"], "deleted": ["test2"]}
    assert command.run(plugin_args(cluster, namespace, "-f", str(manifest), "--delete")) == 0
    assert "delete of stack web: 2 deleted" in capsys.readouterr().out

    listed = cluster.get_json(namespace, "stackpreviews")
    assert listed["items"] == [], "the command leaves no StackPreview behind"
    stack = cluster.get_json(namespace, "stack", "web")
    assert stack["spec"]["template"] == TWO, "previewing changes no Stack"

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(
        yaml.safe_dump(
            hot.stack("web", template_of(a={"properties": {"value": {"get_attr": ["b", "x"]}}}))
        )
    )
    assert command.run(plugin_args(cluster, namespace, "-f", str(invalid))) == 1
    out, err = capsys.readouterr()
    assert out == "", "no preview, no table"
    assert "unknown resource 'b'" in err, err
    assert command.run(plugin_args(cluster, namespace, "-f", str(invalid), "-o", "json")) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["reason"] == "InvalidTemplate"
    assert "error: no preview (InvalidTemplate): " in err, err
    assert "unknown resource 'b'" in err, err
