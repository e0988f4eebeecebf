"""The Stack validating webhook on the local control plane: a local operator serves it, the
API server calls it at https://127.0.0.1:PORT.

The chart registers the webhook in a cluster (a Service and a CA it makes).
Here a test registers a ValidatingWebhookConfiguration of its own with a `url`
clientConfig and the CA of `pki.write_webhook_certificate`, and removes it at
teardown. It applies only to namespaces carrying the test's label, so that a
configuration left behind while no operator serves it (a crashed run) can
never refuse another test's Stacks.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from convergence.operator.handlers import VALIDATE_STACK
from convergence.operator.kube.names import GROUP, STACKS, VERSION
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.hot import stack, template
from convergence.operator.testing.operator_process import OperatorProcess
from convergence.operator.testing.pki import WebhookCertificate

# The label of namespaces a test's webhook applies to (its value: the test's own).
SELECTOR_LABEL = "convergence.dev/test-webhook"
# What the webhook says of a Stack it refuses.
REFUSED = "invalid template"


def operator_args(port: int, cert: str, key: str, address: str = "127.0.0.1") -> tuple[str, ...]:
    """`convergence run` flags that serve the webhook on `port` with this certificate."""
    return (
        f"--webhook-port={port}",
        f"--webhook-address={address}",
        f"--webhook-cert={cert}",
        f"--webhook-key={key}",
    )


@dataclass
class StackWebhook:
    """A webhook configuration sending a labelled namespace's Stacks to a local operator."""

    cluster: Cluster
    certificate: WebhookCertificate
    port: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def name(self) -> str:
        return f"convergence-test-{self.token}"

    @property
    def labels(self) -> dict[str, str]:
        """The labels of a namespace this webhook applies to."""
        return {SELECTOR_LABEL: self.token}

    def operator_args(self) -> tuple[str, ...]:
        return operator_args(self.port, str(self.certificate.cert), str(self.certificate.key))

    def configuration(self) -> dict[str, Any]:
        """The ValidatingWebhookConfiguration, as the chart's but for a `url`."""
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": [
                {
                    "name": f"stacks.{GROUP}",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 10,
                    "namespaceSelector": {"matchLabels": self.labels},
                    "rules": [
                        {
                            "apiGroups": [GROUP],
                            "apiVersions": [VERSION],
                            "resources": [STACKS],
                            "operations": ["CREATE", "UPDATE"],
                            "scope": "Namespaced",
                        }
                    ],
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{self.port}/{VALIDATE_STACK}",
                        "caBundle": self.certificate.ca_bundle,
                    },
                }
            ],
        }

    def register(self) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(self.configuration()))

    def unregister(self) -> None:
        self.cluster.kubectl(
            "delete", "validatingwebhookconfiguration", self.name, "--ignore-not-found"
        )

    def create_namespace(self, name: str) -> str:
        """A namespace this webhook applies to."""
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": self.labels},
        }
        self.cluster.kubectl("create", "-f", "-", input=json.dumps(body))
        return name

    def wait_until_serving(self, namespace: str, timeout: float = 60) -> None:
        """Until the webhook refuses an invalid Stack in `namespace` (see wait_until_refusing)."""
        wait_until_refusing(self.cluster, namespace, timeout)


def wait_until_refusing(cluster: Cluster, namespace: str, timeout: float = 60) -> None:
    """Until a Stack the engine refuses is refused at apply in `namespace` (a dry run, so
    nothing is stored): the webhook is registered and its operator serves it."""
    probe = stack("webhook-probe", template({"a": {"type": "No::Such::Type"}}))
    deadline = time.monotonic() + timeout
    while True:
        result = cluster.kubectl(
            "create",
            f"--namespace={namespace}",
            "--dry-run=server",
            "-f",
            "-",
            input=json.dumps(probe),
            check=False,
        )
        if result.returncode != 0 and REFUSED in result.stderr:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                "the Stack webhook did not refuse an unknown type within "
                f"{timeout:.0f}s: {result.stdout}{result.stderr}"
            )
        time.sleep(0.3)


@dataclass(frozen=True)
class ServedWebhook:
    """A test module's webhook, the operator serving it, and a namespace it applies to."""

    webhook: StackWebhook
    operator: OperatorProcess
    namespace: str
