"""The chart installs the CRDs and the ServiceAccount the operator runs as, with least privilege."""

from __future__ import annotations

import pytest
from convergence_e2e import (
    DEPLOYMENT,
    OPERATOR_USER,
    RELEASE_NAMESPACE,
    SERVICE_ACCOUNT,
    Kube,
    operator_mode,
)

# What the operator does (see the chart's templates/_helpers.tpl) ...
GRANTED = [
    ("get", "stacks.convergence.dev"),
    ("watch", "stacks.convergence.dev"),
    ("patch", "stacks.convergence.dev"),
    ("patch", "stacks.convergence.dev/status"),
    # Nested stacks (OS::Heat::Stack, ResourceGroup) are child Stacks the operator writes.
    ("create", "stacks.convergence.dev"),
    ("delete", "stacks.convergence.dev"),
    ("patch", "stackpreviews.convergence.dev/status"),
    ("create", "stackresources.convergence.dev"),
    ("patch", "stackresources.convergence.dev"),
    ("delete", "stackresources.convergence.dev"),
    ("patch", "stackresources.convergence.dev/status"),
    ("create", "controllerrevisions.apps"),
    ("delete", "controllerrevisions.apps"),
    ("create", "configmaps"),
    ("patch", "configmaps"),
    ("get", "secrets"),
    ("create", "secrets"),
    ("delete", "secrets"),
    ("create", "events"),
]
# ... and what it never does, so it may not.
DENIED = [
    ("update", "stacks.convergence.dev"),
    ("create", "stackpreviews.convergence.dev"),
    ("update", "stackresources.convergence.dev"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("update", "controllerrevisions.apps"),
    ("impersonate", "serviceaccounts"),
    ("get", "pods"),
    ("create", "deployments.apps"),
    ("delete", "namespaces"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
]


def test_the_chart_installs_the_crds_and_the_operator_identity(kube: Kube, release: str) -> None:
    crds = {c["metadata"]["name"] for c in kube.items("crds")}
    assert {"stacks.convergence.dev", "stackresources.convergence.dev"} <= crds
    account = kube.get("serviceaccount", SERVICE_ACCOUNT, namespace=RELEASE_NAMESPACE)
    assert account["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    deployment = kube.get("deployment", "convergence", namespace=RELEASE_NAMESPACE)
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    expected_replicas = 1 if operator_mode() == DEPLOYMENT else 0
    assert deployment["spec"]["replicas"] == expected_replicas
    # The Stack webhook: its configuration (cluster-wide), Service and certificate.
    assert kube.exists("validatingwebhookconfiguration", "convergence-stacks")
    assert kube.exists("service", "convergence-webhook", namespace=RELEASE_NAMESPACE)
    assert kube.exists("secret", "convergence-webhook-tls", namespace=RELEASE_NAMESPACE)


@pytest.mark.parametrize(("verb", "resource"), GRANTED)
def test_the_operator_may_do_what_it_does(
    kube: Kube, release: str, verb: str, resource: str
) -> None:
    assert kube.can_i(verb, resource, "default", OPERATOR_USER), f"{verb} {resource} is needed"


@pytest.mark.parametrize(("verb", "resource"), DENIED)
def test_the_operator_may_not_do_more(kube: Kube, release: str, verb: str, resource: str) -> None:
    assert not kube.can_i(verb, resource, "default", OPERATOR_USER), (
        f"least privilege: the chart must not grant {verb} {resource}"
    )


@pytest.mark.parametrize("verb", ["list", "create", "patch", "delete"])
def test_the_operator_keeps_its_replica_lease_in_the_release_namespace_only(
    kube: Kube, release: str, verb: str
) -> None:
    lease = "leases.coordination.k8s.io"
    assert kube.can_i(verb, lease, RELEASE_NAMESPACE, OPERATOR_USER), f"{verb} {lease} is needed"
    assert not kube.can_i(verb, lease, "default", OPERATOR_USER), (
        f"least privilege: leases only in {RELEASE_NAMESPACE}"
    )
