"""The Heat environment a Stack's `spec.environment` may hold: `resource_registry` (type
aliases) and `parameter_defaults`.

Template files and per-resource overrides of a registry are not supported;
`parameter_defaults` apply to the parameters a template declares (others are
ignored, as in Heat), and the stack's own parameter values win over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.hot.template import Template

# The sections of a Heat environment that a Stack's `spec.environment` may hold.
ENVIRONMENT_SECTIONS = ("resource_registry", "parameter_defaults")


def resource_registry(environment: Mapping[str, Any]) -> dict[str, str]:
    """The type aliases of a Heat environment (`resource_registry`: alias -> type name).

    Only type names are supported as values (Heat also allows template files
    and nested `resources:` overrides); anything else is a TemplateError.
    """
    unknown = sorted(set(environment) - set(ENVIRONMENT_SECTIONS))
    if unknown:
        raise TemplateError(
            "environment",
            f"unsupported section(s) {', '.join(unknown)}; "
            f"expected {', '.join(ENVIRONMENT_SECTIONS)}",
        )
    registry = environment.get("resource_registry") or {}
    if not isinstance(registry, Mapping):
        raise TemplateError("environment.resource_registry", "expected a map of type names")
    for alias, target in registry.items():
        if not isinstance(target, str) or not target:
            raise TemplateError(
                f"environment.resource_registry.{alias}",
                "expected a resource type name (template files and per-resource "
                "overrides are not supported)",
            )
    return dict(registry)


def parameter_defaults(environment: Mapping[str, Any], template: Template) -> dict[str, Any]:
    """The environment's `parameter_defaults` for the parameters `template` declares
    (others are ignored, as in Heat); parameter values given to the stack win."""
    defaults = environment.get("parameter_defaults") or {}
    if not isinstance(defaults, Mapping):
        raise TemplateError("environment.parameter_defaults", "expected a map of values")
    return {name: value for name, value in defaults.items() if name in template.parameter_schemas}


def resolve_type(resource_type: str, registry: Mapping[str, str]) -> str:
    """Follow resource_registry aliases: exact names first, then the longest `prefix*` glob
    (a glob value ending in `*` keeps the rest of the name, as in Heat)."""
    seen = [resource_type]
    current = resource_type
    while True:
        target = registry.get(current)
        if target is None:
            globs = [
                pattern
                for pattern in registry
                if pattern.endswith("*")
                and current.startswith(pattern[:-1])
                and registry[pattern] != current
            ]
            if not globs:
                return current
            pattern = max(globs, key=len)
            target = registry[pattern]
            if target.endswith("*"):
                target = target[:-1] + current[len(pattern) - 1 :]
        if target == current:
            return current
        if target in seen:
            raise TemplateError("resource_registry", f"alias loop: {' -> '.join([*seen, target])}")
        seen.append(target)
        current = target
