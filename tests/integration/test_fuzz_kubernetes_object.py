"""Random Kubernetes::Object manifests on the real operator: the operator never crashes, and
each update of the stack ends *_COMPLETE or *_FAILED with a reason.

One stack is updated with a new random manifest per example (kinds the API serves and
ones it does not, cluster-scoped kinds and other namespaces that confinement refuses,
names the API rejects, odd data), each time waiting for the stack to settle; a second
resource reads the object's attributes, so what the API made of it flows on. The
utility types are fuzzed on the simulator (tests/unit/reconcilers/test_fuzz_types.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

EXAMPLES = 20

names = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,12}[a-z0-9]", fullmatch=True),
    st.sampled_from(["UPPER", "-dash", "a" * 300, "x.y", ""]),
)
data = st.dictionaries(
    st.from_regex(r"[A-Za-z_.-]{1,10}", fullmatch=True) | st.text(max_size=5),
    st.text(max_size=20) | st.integers() | st.booleans() | st.none(),
    max_size=3,
)
kinds = st.sampled_from(
    [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("v1", "Namespace"),  # cluster-scoped: confinement refuses it
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("example.com/v1", "Widget"),  # no such kind
        ("v1", "Nonsense"),
        ("apps/v1", "Deployment"),  # with no spec: the API says what is missing
    ]
)


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    api_version, kind = draw(kinds)
    metadata: dict[str, Any] = {}
    if draw(st.booleans()):
        metadata["name"] = draw(names)
    if draw(st.integers(0, 4)) == 4:
        metadata["namespace"] = draw(st.sampled_from(["default", "kube-system", "no-such-ns"]))
    if draw(st.booleans()):
        metadata["labels"] = draw(data)
    manifest: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if kind in ("ConfigMap", "Secret"):
        manifest[draw(st.sampled_from(["data", "stringData", "binaryData"]))] = draw(data)
    elif kind == "Service":
        manifest["spec"] = {
            "ports": [{"port": draw(st.integers(-1, 70000))}],
            "type": draw(st.sampled_from(["ClusterIP", "NodePort", "Bogus"])),
        }
    elif draw(st.booleans()):
        manifest["spec"] = draw(data)
    return manifest


def stack(namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    reads = {"name": {"get_resource": "obj"}, "metadata": {"get_attr": ["obj", "metadata"]}}
    template = hot.template(
        {
            "obj": {
                "type": "Kubernetes::Object",
                # Bounded: a kind that never becomes ready fails in time.
                "properties": {"manifest": manifest, "timeout": 15},
            },
            "reader": {"type": "OS::Heat::Value", "properties": {"value": reads}},
        }
    )
    return hot.stack("fuzz", template, namespace)


def test_random_manifests_end_complete_or_clearly_failed(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    outcomes: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(manifest=manifests())
    # A character beyond the BMP (JSON writes a surrogate pair, which YAML has not):
    # once made every reconcile of the Stack fail before anything started.
    @example(manifest={"apiVersion": "v1", "kind": "ConfigMap", "data": {"smile": "\U0001f600"}})
    def update(manifest: dict[str, Any]) -> None:
        body = stack(namespace, manifest)
        applied = cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
        if applied.returncode != 0:
            # The CRD's schema refused it (e.g. a null): nothing reached the operator.
            outcomes.append("refused by the API")
            return
        assert operator_process.process is not None
        assert operator_process.process.poll() is None, (
            f"the operator died:\n{operator_process.tail()}"
        )
        status = wait_for_stack(cluster, namespace, "fuzz", operator=operator_process, timeout=60)
        outcomes.append(status["phase"])
        if status["phase"].endswith("_FAILED"):
            assert status.get("statusReason"), f"{status['phase']} without a reason: {manifest}"

    update()
    # Data flows only from a completed object: at least one example must have been one.
    assert any(o.endswith("_COMPLETE") for o in outcomes), outcomes
    assert any(o.endswith("_FAILED") for o in outcomes), outcomes
    cluster.kubectl("delete", "stack", "fuzz", f"--namespace={namespace}", "--timeout=60s")
    assert operator_process.process is not None
    assert operator_process.process.poll() is None, "the operator died"
