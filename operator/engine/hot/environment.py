"""The Heat environment a Stack's `spec.environment` holds, read as Heat reads it.

Sections:
- `parameters`: values for the stack's parameters; the Stack's own
  `spec.parameters` (and `parametersFrom`) win, as the values given with a Heat
  stack-create win over its environment's;
- `parameter_defaults`: new defaults for the parameters a template declares
  (others are ignored, as in Heat); any value given wins over them;
- `resource_registry`: type aliases (`My::Server: OS::Heat::TestResource`,
  globs `OS::Nova::*: My::*`), templates (`My::Server: server.yaml`, a file of
  the Stack's `spec.files`: a template resource) and, under `resources`,
  per-resource overrides (`resources: {web: {My::Server: other.yaml}}`), which
  win over the global entries for that resource and reach into its nested
  stack (`resources: {group: {inner: {...}}}`).

`event_sinks`, `encrypted_param_names`, `parameter_merge_strategies`, hooks
and `restricted_actions` are refused with an error naming the key.

A type ending in `.yaml` or `.template` names a template (as in Heat). A
nested stack gets its parent's environment as Heat gives it (`child`): the
same registry without the entry that mapped the resource to its template (so
a template registered for `OS::Foo` may itself use the real `OS::Foo`), the
per-resource overrides found under the resource's name, and the same
parameter defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from convergence.operator.engine.hot.errors import ErrorCollector, TemplateError

# The sections of a Heat environment that a Stack's `spec.environment` may hold.
ENVIRONMENT_SECTIONS = ("parameters", "parameter_defaults", "resource_registry")
# Heat's other sections, and why each is refused.
_REFUSED_SECTIONS = {
    "event_sinks": "events are Kubernetes Events here (kubectl convergence events)",
    "encrypted_param_names": "mark parameters `hidden: true` and pass them from a Secret "
    "(spec.parametersFrom)",
    "parameter_merge_strategies": "environment files are not merged by Convergence: write one "
    "environment",
}
_REFUSED_ENTRIES = {
    "hooks": "breakpoints are not supported by Convergence",
    "restricted_actions": "restricted actions are not supported by Convergence",
}
# Type names that name a template (Heat's rule).
TEMPLATE_SUFFIXES = (".yaml", ".template")
_RESOURCES = "resources"


def is_template_type(resource_type: str) -> bool:
    """Whether a type names a template file (a template resource), as in Heat."""
    return resource_type.endswith(TEMPLATE_SUFFIXES)


@dataclass(frozen=True)
class Resolution:
    """What a resource's type resolves to: a type name or a template file, and which
    registry entry mapped it there (None: the type as written)."""

    type: str
    mapped_from: str | None = None
    # Whether that entry is one of the resource's per-resource overrides.
    per_resource: bool = False


@dataclass(frozen=True)
class Environment:
    """A Heat environment, checked (see the module)."""

    registry: Mapping[str, str] = field(default_factory=dict)
    # Resource name -> its overrides: type -> target, or a nested resource name -> more.
    resources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    parameter_defaults: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, environment: Mapping[str, Any] | None) -> Environment:
        """Check a Stack's `spec.environment`; TemplateError (every mistake, each at its path)."""
        environment = environment or {}
        errors = ErrorCollector()
        for section in environment:
            if section in _REFUSED_SECTIONS:
                errors.add(
                    TemplateError(
                        f"environment.{section}",
                        f"{section} is not supported by Convergence: {_REFUSED_SECTIONS[section]}",
                    )
                )
            elif section not in ENVIRONMENT_SECTIONS:
                errors.add(
                    TemplateError(
                        f"environment.{section}",
                        f"unsupported section; expected {', '.join(ENVIRONMENT_SECTIONS)}",
                    )
                )
        maps: dict[str, Mapping[str, Any]] = {}
        for section in ENVIRONMENT_SECTIONS:
            value = environment.get(section) or {}
            if not isinstance(value, Mapping):
                errors.add(TemplateError(f"environment.{section}", "expected a map"))
                value = {}
            maps[section] = value
        registry: dict[str, str] = {}
        resources: dict[str, Mapping[str, Any]] = {}
        for key, target in maps["resource_registry"].items():
            where = f"environment.resource_registry.{key}"
            with errors.part():
                if key == _RESOURCES:
                    if not isinstance(target, Mapping):
                        raise TemplateError(where, "expected a map of resource names")
                    for name, overrides in target.items():
                        with errors.part():
                            _check_overrides(f"{where}.{name}", overrides)
                    resources = dict(target)
                else:
                    registry[key] = _target(where, key, target)
        errors.check()
        return cls(registry, resources, dict(maps["parameters"]), dict(maps["parameter_defaults"]))

    def resolve(self, resource_type: str, resource_name: str | None = None) -> Resolution:
        """Follow the registry for a resource: its own overrides first, then exact names,
        then the longest `prefix*` glob (a glob value ending in `*` keeps the rest of the
        name, as in Heat), until a type or template no entry maps further."""
        own = {
            key: value
            for key, value in (self.resources.get(resource_name or "") or {}).items()
            if isinstance(value, str)
        }
        seen = [resource_type]
        current = resource_type
        resolution = Resolution(resource_type)
        while not is_template_type(current):
            per_resource = current in own
            target = own.get(current, self.registry.get(current))
            key = current
            if target is None:
                globs = [
                    pattern
                    for pattern in self.registry
                    if pattern.endswith("*")
                    and current.startswith(pattern[:-1])
                    and self.registry[pattern] != current
                ]
                if not globs:
                    return resolution
                key = max(globs, key=len)
                target = self.registry[key]
                if target.endswith("*"):
                    target = target[:-1] + current[len(key) - 1 :]
            if target == current:
                return resolution
            if target in seen:
                raise TemplateError(
                    "resource_registry", f"alias loop: {' -> '.join([*seen, target])}"
                )
            seen.append(target)
            current = target
            resolution = Resolution(target, key, per_resource)
        return resolution

    def defaults_for(self, declared: Mapping[str, Any]) -> dict[str, Any]:
        """The parameter defaults of the parameters a template declares."""
        return {name: value for name, value in self.parameter_defaults.items() if name in declared}

    def child(self, resource_name: str, resolution: Resolution) -> Environment:
        """The environment of the nested stack resource `resource_name` makes (see the module)."""
        registry = dict(self.registry)
        if resolution.mapped_from is not None and not resolution.per_resource:
            registry.pop(resolution.mapped_from, None)
        nested: dict[str, Mapping[str, Any]] = {}
        for pattern, overrides in self.resources.items():
            if fnmatchcase(resource_name, pattern):
                nested.update({k: v for k, v in overrides.items() if isinstance(v, Mapping)})
        return Environment(registry, nested, {}, dict(self.parameter_defaults))

    def as_dict(self) -> dict[str, Any]:
        """The environment as a Stack's `spec.environment` (what a child Stack is given)."""
        document: dict[str, Any] = {}
        registry: dict[str, Any] = dict(self.registry)
        if self.resources:
            registry[_RESOURCES] = {name: dict(value) for name, value in self.resources.items()}
        if registry:
            document["resource_registry"] = registry
        if self.parameters:
            document["parameters"] = dict(self.parameters)
        if self.parameter_defaults:
            document["parameter_defaults"] = dict(self.parameter_defaults)
        return document


def nested_environment(environment: Mapping[str, Any], resource: str) -> dict[str, Any]:
    """The environment of the nested stack that resource `resource` of a stack with
    `environment` makes, when its type does not say (OS::Heat::Stack, ResourceGroup):
    Heat's child environment, no registry entry taken out."""
    return Environment.parse(environment).child(resource, Resolution(resource)).as_dict()


def _target(where: str, key: str, target: Any) -> str:
    if key in _REFUSED_ENTRIES:
        raise TemplateError(where, f"{key}: {_REFUSED_ENTRIES[key]}")
    if not isinstance(target, str) or not target:
        raise TemplateError(
            where,
            "expected a resource type name or a template file (name.yaml); "
            "per-resource overrides go under resource_registry.resources",
        )
    return target


def _check_overrides(where: str, overrides: Any) -> None:
    if not isinstance(overrides, Mapping):
        raise TemplateError(where, "expected a map of types to types or templates")
    errors = ErrorCollector()
    for key, value in overrides.items():
        with errors.part():
            if isinstance(value, Mapping) and key not in _REFUSED_ENTRIES:
                # A resource of this resource's nested stack.
                _check_overrides(f"{where}.{key}", value)
            else:
                _target(f"{where}.{key}", key, value)
    errors.check()


def resolve_type(resource_type: str, registry: Mapping[str, str]) -> str:
    """Follow resource_registry aliases (no per-resource overrides): see Environment.resolve."""
    return Environment(registry=dict(registry)).resolve(resource_type).type
