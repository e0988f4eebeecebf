"""The chart's RBAC is what the operator runs on: without one of its rules, stacks do not converge.

The session's operator is paused; a second copy of the chart's ServiceAccount
and RBAC is rendered by `helm template` (release `probe`), one rule is cut out
of its ClusterRole, and an operator running with that ServiceAccount's token
watches all namespaces. It must be refused (403 in its log) and the stack must
not become Ready; with the rule put back the same identity converges and
deletes a copy of the stack, so the missing rule was the only thing wrong.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from convergence_e2e import (
    EXAMPLES,
    RELEASE_NAMESPACE,
    Helm,
    Kube,
    Operator,
    condition,
    wait_until,
)

from convergence.operator.testing.operator_process import OperatorProcess

PROBE = "probe"
PROBE_ACCOUNT = "probe-convergence"


def probe_rbac(helm: Helm) -> list[dict[str, Any]]:
    """The chart's ServiceAccount and RBAC, rendered for the release `probe`."""
    documents = helm.template(
        PROBE,
        RELEASE_NAMESPACE,
        "--show-only=templates/serviceaccount.yaml",
        "--show-only=templates/rbac.yaml",
    )
    assert {d["kind"] for d in documents} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    }, "the chart's default mode is cluster-wide"
    return documents


def without_rule(documents: list[dict[str, Any]], group: str, resource: str) -> list[Any]:
    """`documents` with the rule for `group`/`resource` cut from the operator's ClusterRole."""
    cut = []
    found = False
    for document in documents:
        if document["kind"] == "ClusterRole" and document["metadata"]["name"] == PROBE_ACCOUNT:
            rules = [
                r
                for r in document["rules"]
                if not (r["apiGroups"] == [group] and r["resources"] == [resource])
            ]
            found = len(rules) < len(document["rules"])
            document = {**document, "rules": rules}
        cut.append(document)
    assert found, f"the chart has no rule for {group}/{resource}"
    return cut


def abandon(kube: Kube, namespace: str) -> None:
    """Let the half-made stack go without an operator: its finalizers removed by hand.

    (Deleting a stack whose first traversal was refused midway is not what this
    test is about; its namespace, deleted after the test, takes the rest.)
    """
    kube.kubectl("delete", f"--namespace={namespace}", "stacks", "--all", "--wait=false")
    unfinalized = '{"metadata": {"finalizers": null}}'
    for kind in ("stacks", "stackresources"):
        for item in kube.items(kind, namespace=namespace):
            kube.kubectl(
                "patch",
                f"--namespace={namespace}",
                kind,
                item["metadata"]["name"],
                "--type=merge",
                "-p",
                unfinalized,
            )


@pytest.fixture
def paused_operator(operator: Operator) -> Iterator[None]:
    """The session's operator stopped (it would converge the probe's stack), then restarted.

    Meanwhile nothing serves the chart's webhook: its failurePolicy is Ignore, so that
    the probe's Stack is stored (and the cut rule, not the webhook, is what fails).
    """
    operator.stop()
    operator.webhook_failure_policy("Ignore")
    try:
        yield
    finally:
        operator.webhook_failure_policy("Fail")
        operator.start()


@pytest.mark.parametrize(
    ("group", "resource"),
    [
        ("apps", "controllerrevisions"),
        ("convergence.dev", "stackresources/status"),
        ("", "configmaps"),
    ],
)
def test_without_one_rbac_rule_the_operator_fails(
    kube: Kube,
    helm: Helm,
    paused_operator: None,
    namespace: str,
    tmp_path: Path,
    group: str,
    resource: str,
) -> None:
    complete = probe_rbac(helm)
    kube.apply(without_rule(complete, group, resource))
    log = tmp_path / "probe-operator.log"
    # All namespaces, as the chart's default; the session's operator is paused meanwhile.
    args = ("--all-namespaces", "--metrics-port=0")
    apply_hello = ("apply", f"--namespace={namespace}", "-f", str(EXAMPLES / "hello-stack.yaml"))
    # The API server's own words for the cut rule, e.g. `cannot create resource
    # "controllerrevisions" in API group "apps"`: another 403 would prove nothing.
    denial = f'resource "{resource}" in API group "{group}"'

    def refused() -> bool:
        """The denial in the operator's log, or in the Stack's status (a failed resource)."""
        text = log.read_text(errors="replace") if log.exists() else ""
        stack = kube.get("stack", "hello", namespace=namespace)
        text += stack.get("status", {}).get("statusReason", "")
        # Quotes come escaped once or twice (a JSON body inside a JSON log line).
        return denial in text.replace("\\", "")

    try:
        kubeconfig = kube.token_kubeconfig(
            RELEASE_NAMESPACE, PROBE_ACCOUNT, tmp_path / "probe.kubeconfig"
        )
        with OperatorProcess(kubeconfig, log, *args):
            kube.kubectl(*apply_hello)
            assert wait_until(refused, timeout=60), (
                f"no 403 without {group}/{resource}:\n{log.read_text(errors='replace')[-3000:]}"
            )
            time.sleep(3)  # time for a wrongly working operator to make progress
            stack = kube.get("stack", "hello", namespace=namespace)
            assert condition(stack, "Ready").get("status") != "True", (
                f"the stack became Ready without {group}/{resource}"
            )

        # With the rule back, the same identity converges and deletes a second
        # copy of the stack, so nothing else was wrong. (A new operator process:
        # kopf keeps a failed handler's retry delay, a minute, in the object.)
        kube.apply(complete)
        again = yaml.safe_load((EXAMPLES / "hello-stack.yaml").read_text())
        again["metadata"]["name"] = "hello-again"
        with OperatorProcess(kubeconfig, log, *args):
            kube.apply([again], namespace=namespace)
            kube.wait("stack/hello-again", "condition=Ready", namespace, timeout=120)
            kube.kubectl(
                "delete", f"--namespace={namespace}", "stack/hello-again", "--timeout=120s"
            )
        abandon(kube, namespace)
    finally:
        for document in complete:
            kind, name = document["kind"], document["metadata"]["name"]
            scope = [f"--namespace={RELEASE_NAMESPACE}"] if kind == "ServiceAccount" else []
            kube.kubectl("delete", *scope, kind, name, "--ignore-not-found")
