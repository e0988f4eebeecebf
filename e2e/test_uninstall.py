"""Uninstalling in the documented order leaves nothing behind; out of order, the chart refuses.

The documented order (README, NOTES.txt): delete every Stack and wait until
they are gone (the operator deletes their resources and removes their
finalizers), then `helm uninstall`, then delete the CRDs (Helm keeps them).
The chart's pre-delete hook Job runs files/uninstall_guard.py with the
operator's ServiceAccount, and fails while Stacks exist, so Helm stops before
removing anything. On the local control plane no kubelet runs the hook's pod;
the suite plays the kubelet for it (convergence_e2e.play_uninstall_guard).
"""

from __future__ import annotations

from pathlib import Path

from convergence_e2e import (
    EXAMPLES,
    MANAGED_BY,
    RELEASE,
    RELEASE_NAMESPACE,
    SERVICE_ACCOUNT,
    Helm,
    Kube,
    Operator,
    uninstall,
    uninstall_guard_log,
)


def test_uninstalling_while_stacks_exist_is_refused(
    kube: Kube, helm: Helm, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    kube.kubectl("apply", f"--namespace={namespace}", "-f", str(EXAMPLES / "hello-stack.yaml"))
    kube.wait("stack/hello", "condition=Ready", namespace)

    refused = uninstall(kube, helm, tmp_path)
    assert refused.returncode != 0, f"helm uninstall went ahead with a Stack left:\n{refused}"
    assert "convergence-uninstall-guard" in refused.stderr, refused.stderr
    said = uninstall_guard_log(kube, tmp_path)
    assert f"{namespace}/hello" in said, f"the guard must name the Stack left:\n{said}"
    assert kube.exists("deployment", "convergence", namespace=RELEASE_NAMESPACE), (
        "a refused uninstall must remove nothing"
    )
    assert kube.exists("serviceaccount", SERVICE_ACCOUNT, namespace=RELEASE_NAMESPACE)
    # Helm marks the release `uninstalling` before its hooks run; it stays so
    # (listed with --all) until a later `helm uninstall` gets past the guard.
    assert RELEASE in helm("list", "--all", f"--namespace={RELEASE_NAMESPACE}", "--short").split()
    job = kube.get("job", "convergence-uninstall-guard", namespace=RELEASE_NAMESPACE)
    failed = [c for c in job["status"].get("conditions", []) if c["type"] == "Failed"]
    assert failed, f"the guard Job did not fail: {job['status']}"
    # The operator still runs: the stack is deleted as usual.
    kube.kubectl("delete", f"--namespace={namespace}", "stack/hello", "--timeout=120s")


def test_uninstalling_in_the_documented_order_leaves_nothing(
    kube: Kube, helm: Helm, operator: Operator, tmp_path: Path
) -> None:
    # 1. Every Stack, deleted by the running operator.
    kube.kubectl("delete", "stacks", "--all", "--all-namespaces", "--timeout=180s")
    assert kube.items("stacks", "--all-namespaces") == []
    operator.stop()
    # 2. The release; its guard finds no Stack and lets Helm go on.
    done = uninstall(kube, helm, tmp_path)
    assert done.returncode == 0, f"helm uninstall failed:\n{done.stdout}\n{done.stderr}"
    for kind, name in [
        ("deployment", "convergence"),
        ("serviceaccount", SERVICE_ACCOUNT),
        ("service", "convergence-metrics"),
        ("configmap", "convergence-uninstall-guard"),
        ("job", "convergence-uninstall-guard"),
        ("service", "convergence-webhook"),
        ("secret", "convergence-webhook-tls"),
    ]:
        assert not kube.exists(kind, name, namespace=RELEASE_NAMESPACE), f"{kind}/{name} left"
    for kind, name in [
        ("clusterrole", "convergence"),
        ("clusterrole", "convergence-crds"),
        ("clusterrolebinding", "convergence"),
        ("clusterrolebinding", "convergence-crds"),
        ("validatingwebhookconfiguration", "convergence-stacks"),
    ]:
        assert not kube.exists(kind, name), f"{kind}/{name} left"
    assert kube.items("stackresources", "--all-namespaces") == []
    assert kube.items("configmaps", "--all-namespaces", "-l", MANAGED_BY) == []
    # 3. The CRDs, which Helm installs but never deletes.
    crds = ["crd/stacks.convergence.dev", "crd/stackresources.convergence.dev"]
    assert all(kube.exists(crd) for crd in crds), "helm uninstall keeps the CRDs"
    kube.kubectl("delete", *crds, "--timeout=120s")
    assert not any(kube.exists(crd) for crd in crds)
    kube.kubectl("delete", "namespace", RELEASE_NAMESPACE, "--timeout=120s")
