"""HOT templates and the Stack objects that carry them, as tests, benchmarks and the e2e suite
write them.

Plain data, no engine: a test that checks how a template is read builds it here and hands it
to the engine itself. One place decides the version a test writes when versions are not what
it tests, and the Stack's apiVersion and kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The HOT version written when a test is not about versions (Heat's wallaby).
VERSION = "2021-04-16"

API_VERSION = "convergence.dev/v1alpha1"


def template(
    resources: Mapping[str, Any] | None = None, version: str = VERSION, **sections: Any
) -> dict[str, Any]:
    """A HOT template of `resources` by name; `sections` are the others (parameters, outputs,
    conditions, parameter_groups, ...) as HOT spells them."""
    given = {} if resources is None else resources
    return {"heat_template_version": version, "resources": given, **sections}


def resources(
    type_name: str, specs: Mapping[str, Mapping[str, Any]] | None = None, /, **named: Any
) -> dict[str, dict[str, Any]]:
    """Resources of one type by name, from `specs` and keywords: each spec (properties,
    depends_on, ...) gets the type."""
    given = {**(specs or {}), **named}
    return {name: {"type": type_name, **spec} for name, spec in given.items()}


def stack(
    name: str, template: Mapping[str, Any], namespace: str | None = None, **spec: Any
) -> dict[str, Any]:
    """A Stack object of `template`; `spec` holds its other fields as the CRD spells them
    (parameters, parametersFrom, environment, disableRollback, timeoutSeconds, ...). Without
    `namespace`, the one given to kubectl applies."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": "Stack",
        "metadata": metadata,
        "spec": {"template": template, **spec},
    }
