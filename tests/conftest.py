"""Fixtures shared by every test that touches Kubernetes.

The session starts the project's own control plane (real etcd, kube-apiserver
and kube-controller-manager) and stops it at the end; with KUBECONFIG and
USE_EXISTING_CLUSTER=1 it uses that cluster instead (e.g. kind), so the same
tests run there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config
from kubernetes.client import ApiClient

from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import (
    REPO_ROOT,
    ControlPlane,
    build_binaries,
    free_port,
)
from convergence.operator.testing.operator_process import OperatorProcess
from convergence.operator.testing.pki import write_webhook_certificate
from convergence.operator.testing.webhook import ServedWebhook, StackWebhook

CRDS = REPO_ROOT / "crds"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The real control plane for this test session, with the CRDs installed."""
    if os.environ.get("USE_EXISTING_CLUSTER") == "1":
        existing = os.environ.get("KUBECONFIG")
        if not existing:
            pytest.fail("USE_EXISTING_CLUSTER=1 needs KUBECONFIG to point at the cluster")
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            pytest.fail("USE_EXISTING_CLUSTER=1 needs kubectl on PATH")
        cluster = Cluster(Path(existing), kubectl)
        _install_crds(cluster)
        yield cluster
        return

    bin_dir = build_binaries()
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"), bin_dir=bin_dir)
    kubeconfig = plane.up()
    try:
        cluster = Cluster(kubeconfig, str(bin_dir / "kubectl"))
        _install_crds(cluster)
        yield cluster
    finally:
        plane.down()


def _install_crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> Iterator[ApiClient]:
    """A client of the real API server, closed at the end (no leaked sockets)."""
    # The kubernetes package leaves its config loaders unannotated.
    client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    with contextlib.closing(client):
        yield client


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def operator_env() -> dict[str, str]:
    """Extra environment of the module's operator (a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def operator_process(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, operator_env: dict[str, str]
) -> Iterator[OperatorProcess]:
    """`convergence run` on all namespaces for one test module, its log in a tmp dir."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with OperatorProcess(cluster.kubeconfig, log, env=operator_env) as process:
        yield process
    print(f"operator log: {log}")


@pytest.fixture(scope="module")
def webhook(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedWebhook]:
    """The module's operator serving the Stack validating webhook, registered for the
    namespaces `webhook.create_namespace` makes (and only those: see testing/webhook.py),
    with one such namespace for the module. Removed at teardown."""
    workdir = tmp_path_factory.mktemp("webhook")
    registration = StackWebhook(cluster, write_webhook_certificate(workdir), free_port())
    log = workdir / "operator.log"
    with OperatorProcess(
        cluster.kubeconfig, log, "--all-namespaces", *registration.operator_args()
    ) as process:
        registration.register()
        namespace = registration.create_namespace(f"w-{uuid.uuid4().hex[:10]}")
        try:
            registration.wait_until_serving(namespace)
            yield ServedWebhook(registration, process, namespace)
        finally:
            registration.unregister()
            cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    print(f"operator log: {log}")
