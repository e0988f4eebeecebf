"""Fixtures of the end-to-end suite: the chart installed by Helm, the operator under its identity.

The suite needs only KUBECONFIG (see convergence_e2e.py for E2E_OPERATOR). The
modules run in name order and tell one story: the chart is installed once per
session with least privilege (test_chart_install), multi-tenant mode applies a
stack's objects as its own ServiceAccount (test_multi_tenant), a missing RBAC
rule breaks the operator (test_rbac), stacks live, fail, roll back and die
under the chart's identity (test_stacks), and the chart is uninstalled in the
documented order, after refusing to strand a Stack (test_uninstall).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from convergence_e2e import (
    CHART,
    DEPLOYMENT,
    RELEASE,
    RELEASE_NAMESPACE,
    Helm,
    Kube,
    Operator,
    chart_values,
    operator_mode,
    tool,
)

from convergence.operator.testing.cluster import Cluster


@pytest.fixture(scope="session")
def kube() -> Kube:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        pytest.fail("the end-to-end suite needs KUBECONFIG (make e2e or make e2e-kind set it)")
    return Kube(Cluster(Path(kubeconfig), tool("kubectl")))


@pytest.fixture(scope="session")
def helm(kube: Kube) -> Helm:
    return Helm(kube.cluster.kubeconfig)


@pytest.fixture(scope="session")
def release(kube: Kube, helm: Helm) -> str:
    """The chart installed by Helm (once; test_uninstall removes it at the end)."""
    installed = helm("list", f"--namespace={RELEASE_NAMESPACE}", "--short")
    if RELEASE not in installed.split():
        # Without a kubelet (the local control plane) no pod ever becomes ready.
        wait = ["--wait", "--timeout=5m"] if operator_mode() == DEPLOYMENT else []
        helm(
            "install",
            RELEASE,
            str(CHART),
            f"--namespace={RELEASE_NAMESPACE}",
            "--create-namespace",
            *chart_values(),
            *wait,
        )
    kube.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/stacks.convergence.dev",
        "crd/stackresources.convergence.dev",
    )
    return RELEASE


@pytest.fixture(scope="session")
def operator(
    kube: Kube, helm: Helm, release: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """The operator running under the chart's ServiceAccount for the whole session."""
    running = Operator(kube, helm, tmp_path_factory.mktemp("operator"))
    running.start()
    try:
        yield running
    finally:
        running.stop()
        print(f"operator log: {running.log}")


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test; deleting it must not hang on a stranded finalizer."""
    name = f"e2e-{os.urandom(4).hex()}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
