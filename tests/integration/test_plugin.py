"""A third-party resource type, installed the way pip would install it, used by the operator.

The package is built in a temporary directory: a module with the type and a
`*.dist-info` with `METADATA` and an `entry_points.txt` registering it in the
group `convergence.resource_types`. The operator runs with that directory on
its PYTHONPATH, so nothing but the entry point tells it about the type.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from convergence.operator.testing import hot
from convergence.operator.testing.cluster import Cluster, wait_for_stack
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

# The example type of the README ("Writing a resource type"), as a package would ship it.
MODULE = '''
"""Example::Greeting: a greeting for someone, as an attribute."""

from typing import Any, ClassVar

from pydantic import Field

from convergence.operator.engine.plugin import (
    UPDATE_ALLOWED,
    Cookie,
    PropertiesModel,
    ResourceFailure,
    ResourceType,
)


class GreetingProperties(PropertiesModel):
    name: str = Field(..., description="Who to greet.", json_schema_extra=UPDATE_ALLOWED)
    language: str = Field("en", description="en or fr; a change replaces the resource.")


class Greeting(ResourceType):
    """Says hello: nothing physical, just an attribute computed from the properties."""

    Properties: ClassVar[type[PropertiesModel]] = GreetingProperties
    attributes_schema: ClassVar[dict[str, str]] = {"greeting": "The greeting."}
    has_physical_resource: ClassVar[bool] = False

    def create(self) -> Cookie:
        assert isinstance(self.properties, GreetingProperties)
        if self.properties.language not in ("en", "fr"):
            raise ResourceFailure(f"language: no greeting in {self.properties.language!r}")
        self.context.resource_id = self.context.physical_name()
        return None

    def get_attribute(self, name: str) -> Any:
        assert isinstance(self.properties, GreetingProperties)
        word = {"en": "Hello", "fr": "Bonjour"}[self.properties.language]
        return f"{word}, {self.properties.name}!" if name == "greeting" else None
'''

ENTRY_POINTS = """
[convergence.resource_types]
Example::Greeting = convergence_greeting:Greeting
"""


def install_package(where: Path) -> Path:
    """A site directory holding the package `convergence-greeting` as pip lays it out."""
    site = where / "site"
    dist_info = site / "convergence_greeting-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (site / "convergence_greeting.py").write_text(textwrap.dedent(MODULE).lstrip())
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: convergence-greeting\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS.lstrip())
    return site


def stack(namespace: str, name: str, language: str) -> dict[str, Any]:
    greeting = {"type": "Example::Greeting", "properties": {"name": name, "language": language}}
    template = hot.template(
        {"hello": greeting},
        outputs={"greeting": {"value": {"get_attr": ["hello", "greeting"]}}},
    )
    return hot.stack("greeter", template, namespace)


def record_ids(cluster: Cluster, namespace: str) -> list[str]:
    result = cluster.kubectl(
        "get",
        "stackresources",
        f"--namespace={namespace}",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    )
    return result.stdout.split()


def test_a_type_installed_by_entry_point_converges_a_stack(
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(install_package(tmp_path)))
    log = tmp_path / "operator.log"
    with OperatorProcess(cluster.kubeconfig, log, "--namespace", namespace) as operator:

        def apply(body: dict[str, Any]) -> None:
            cluster.kubectl("apply", "-f", "-", input=json.dumps(body))

        apply(stack(namespace, "world", "en"))
        status = wait_for_stack(cluster, namespace, "greeter", "CREATE_COMPLETE", operator=operator)
        assert status["outputs"] == {"greeting": "Hello, world!"}
        [created] = record_ids(cluster, namespace)

        # `name` is update-allowed: in place; `language` is not: replaced.
        apply(stack(namespace, "Kubernetes", "en"))
        status = wait_for_stack(cluster, namespace, "greeter", "UPDATE_COMPLETE", operator=operator)
        assert status["outputs"] == {"greeting": "Hello, Kubernetes!"}
        assert record_ids(cluster, namespace) == [created], "updated in place"
        apply(stack(namespace, "Kubernetes", "fr"))
        status = wait_for_stack(cluster, namespace, "greeter", "UPDATE_COMPLETE", operator=operator)
        assert status["outputs"] == {"greeting": "Bonjour, Kubernetes!"}
        assert created not in record_ids(cluster, namespace), "replaced"

        # The type's own failure is the stack's reason.
        apply(stack(namespace, "Kubernetes", "xx"))
        status = wait_for_stack(cluster, namespace, "greeter", "UPDATE_FAILED", operator=operator)
        assert "no greeting in 'xx'" in status["statusReason"], status["statusReason"]
        assert operator.process is not None
        assert operator.process.poll() is None, "the operator died"
