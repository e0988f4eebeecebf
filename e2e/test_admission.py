"""The chart's validating webhook: `kubectl apply` refuses an invalid Stack, naming each key.

The API server calls the operator the chart configured (its Service and CA, or
with the local operator its `webhook.url` and the certificate the chart made
at install), with the chart's failurePolicy Fail.
"""

from __future__ import annotations

import yaml
from convergence_e2e import (
    RELEASE_NAMESPACE,
    STACK_LABEL,
    WEBHOOK_CONFIGURATION,
    Kube,
    Operator,
)

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import wait_for_stack

TEST = "OS::Heat::TestResource"


def apply(kube: Kube, namespace: str, body: dict[str, object]) -> tuple[bool, str]:
    result = kube.cluster.kubectl(
        "apply", f"--namespace={namespace}", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    return result.returncode == 0, result.stdout + result.stderr


def test_the_chart_configures_the_webhook_for_stacks(kube: Kube, operator: Operator) -> None:
    configuration = kube.get("validatingwebhookconfiguration", WEBHOOK_CONFIGURATION)
    (webhook,) = configuration["webhooks"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["rules"][0]["resources"] == ["stacks"]
    assert kube.exists("secret", "convergence-webhook-tls", namespace=RELEASE_NAMESPACE)


def test_an_invalid_stack_is_refused_and_nothing_is_created(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    template = hot.template(
        {
            "web": {"type": TEST, "properties": {"value": {"get_param": "imge"}}},
            "db": {"type": "OS::Nova::Server"},
            "app": {"type": TEST, "properties": {"value": {"get_attr": ["web", "outptu"]}}},
        },
        parameters={"image": {"type": "string", "default": "nginx"}},
    )
    accepted, said = apply(kube, namespace, hot.stack("broken", template))
    assert not accepted, said
    assert 'admission webhook "stacks.convergence.dev" denied the request' in said, said
    for error in (
        "resources.web.properties.value: get_param: unknown parameter 'imge'",
        "resources.db.type: unknown resource type 'OS::Nova::Server'",
        "resources.app.properties.value: get_attr: unknown attribute 'outptu' of resource 'web'",
    ):
        assert error in said, f"{error!r} missing:\n{said}"
    assert kube.items("stacks", namespace=namespace) == []
    assert kube.items("configmaps", "-l", STACK_LABEL, namespace=namespace) == []


def test_a_valid_stack_passes_the_webhook_and_converges(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    template = hot.template(
        {"web": {"type": TEST, "properties": {"value": {"get_param": "image"}}}},
        parameters={"image": {"type": "string", "default": "nginx"}},
    )
    accepted, said = apply(kube, namespace, hot.stack("fine", template))
    assert accepted, said
    wait_for_stack(kube.cluster, namespace, "fine", "CREATE_COMPLETE", operator=operator)
    kube.kubectl("delete", f"--namespace={namespace}", "stack/fine", "--timeout=120s")
    assert kube.items("configmaps", "-l", STACK_LABEL, namespace=namespace) == []
