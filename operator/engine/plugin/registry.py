"""The registry of resource types: found in the entry-point group `convergence.resource_types`
(`TypeRegistry.from_entry_points`) or registered explicitly (tests).

A type that names a template file (`server.yaml`: a template resource) is run
by the type registered as `TEMPLATE_RESOURCE_TYPE`; which templates exist is
the stack's files map's business (hot/template_resources.py), not the registry's.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from convergence.operator.engine.hot.environment import is_template_type
from convergence.operator.engine.hot.template_resources import TEMPLATE_RESOURCE_TYPE
from convergence.operator.engine.plugin.errors import UnknownResourceType
from convergence.operator.engine.plugin.resource_type import ResourceType

ENTRY_POINT_GROUP = "convergence.resource_types"


class TypeRegistry:
    """Resource types by their template name (e.g. `OS::Heat::TestResource`)."""

    def __init__(self, types: Mapping[str, type[ResourceType]] | None = None) -> None:
        self._types: dict[str, type[ResourceType]] = dict(types or {})
        self._lazy: dict[str, Callable[[], Any]] = {}
        # The operator's workers share one registry across threads: a type being
        # loaded by one of them must not look unknown to another.
        self._loading = threading.Lock()

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> TypeRegistry:
        """A registry of every type installed in the entry-point group (loaded on first use)."""
        return cls.from_loaders(
            {ep.name: ep.load for ep in importlib.metadata.entry_points(group=group)}
        )

    @classmethod
    def from_loaders(cls, loaders: Mapping[str, Callable[[], Any]]) -> TypeRegistry:
        """A registry whose types are loaded by these callables on first use."""
        registry = cls()
        registry._lazy.update(loaders)
        return registry

    def register(self, type_name: str, plugin: type[ResourceType]) -> None:
        """Register (or override) a type explicitly."""
        self._types[type_name] = plugin
        self._lazy.pop(type_name, None)

    def exists(self, type_name: str) -> bool:
        """Whether a type of this name is known (StackDefinition's `type_exists`)."""
        if is_template_type(type_name):
            type_name = TEMPLATE_RESOURCE_TYPE
        return type_name in self._types or type_name in self._lazy

    def attributes(self, type_name: str) -> frozenset[str] | None:
        """The attributes `get_attr` may name on a type (None: any name, e.g. a path into a
        Kubernetes object; StackDefinition's `type_attributes`); None for an unknown type."""
        if not self.exists(type_name):
            return None
        plugin = self.get(type_name)
        return None if plugin.any_attribute else frozenset(plugin.attributes_schema)

    def get(self, type_name: str) -> type[ResourceType]:
        """The type registered under `type_name`; raise UnknownResourceType if none."""
        if is_template_type(type_name):
            type_name = TEMPLATE_RESOURCE_TYPE
        if type_name in self._types:
            return self._types[type_name]
        with self._loading:
            if type_name not in self._types:
                if type_name not in self._lazy:
                    raise UnknownResourceType(f"Unknown resource type {type_name!r}")
                loaded = self._lazy[type_name]()
                if not (isinstance(loaded, type) and issubclass(loaded, ResourceType)):
                    raise UnknownResourceType(
                        f"{type_name!r} does not name a ResourceType subclass"
                    )
                self._types[type_name] = loaded
                del self._lazy[type_name]
        return self._types[type_name]

    def names(self) -> Iterable[str]:
        """Every registered type name."""
        return sorted({*self._types, *self._lazy})
