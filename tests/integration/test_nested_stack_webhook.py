"""OS::Heat::Stack where the Stack webhook runs: an invalid child is refused at its apply, and
the parent's status says so (a module of its own: the webhook's operator is its only one)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.webhook import ServedWebhook

pytestmark = pytest.mark.controlplane

BAD_CHILD = "heat_template_version: 2021-04-16\nresources: {a: {type: OS::Nova::Server}}\n"


def stacks(cluster: Cluster, namespace: str) -> list[str]:
    listed = cluster.kubectl("get", f"--namespace={namespace}", "stacks", "-o", "json").stdout
    return [item["metadata"]["name"] for item in json.loads(listed)["items"]]


def bad_parent(namespace: str) -> dict[str, Any]:
    template = hot.template(
        {"db": {"type": "OS::Heat::Stack", "properties": {"template": BAD_CHILD}}}
    )
    return hot.stack("bad", template, namespace=namespace)


def test_where_the_webhook_runs_it_refuses_an_invalid_child_and_the_parent_says_so(
    cluster: Cluster, webhook: ServedWebhook
) -> None:
    namespace = webhook.webhook.create_namespace(f"n-{uuid.uuid4().hex[:10]}")
    try:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(bad_parent(namespace)))
        status = wait_for_stack(
            cluster, namespace, "bad", "CREATE_FAILED", operator=webhook.operator
        )
        reason = status["statusReason"]
        assert "cannot apply nested stack bad-db-" in reason, reason
        assert "unknown resource type 'OS::Nova::Server'" in reason, reason
        assert stacks(cluster, namespace) == ["bad"], "the invalid child was stored"
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
