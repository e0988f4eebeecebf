"""The resource type plugin API: what a resource type implements and what it may use.

A resource type is declarative where it can be: a pydantic model of its
properties (each field says whether it may change in place through
`json_schema_extra=UPDATE_ALLOWED`), a schema of attributes, and a reference id.
Its lifecycle steps never block: `create`, `update` and `delete` start an action
and return a JSON-serialisable cookie that the engine persists; the matching
`check_*_complete` polls the action with that cookie and says whether it is
done. Raising `ResourceFailure` (or any other exception) fails the action.

Plugins never see traversals, sync points or the store. What they may touch is
on `ResourceContext`: the stack identity, their logical name, a physical name
generator, a clock, persisted per-resource data (Heat's `data_set`), their
physical resource id, and `Reality`, the physical world (in memory in the
simulator, ConfigMaps in the Kubernetes operator).

The engine, not the type, decides to replace: a change of a property that is
not update-allowed, a type change, a FAILED resource, or the type's
`needs_replace` hook answering True.

Types are found in the entry-point group `convergence.resource_types`
(`TypeRegistry.from_entry_points`) or registered explicitly (tests).
"""

from __future__ import annotations

import base64
import importlib.metadata
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

ENTRY_POINT_GROUP = "convergence.resource_types"

# Put on a property's Field to allow changing it without replacement:
#   value: str = Field("x", description="...", json_schema_extra=UPDATE_ALLOWED)
UPDATE_ALLOWED: dict[str, Any] = {"update_allowed": True}

# What lifecycle steps return and the engine persists between polls.
Cookie = Any


class ResourceFailure(Exception):
    """An action of a resource failed; the message says why (shown in status and events)."""


class PropertiesModel(BaseModel):
    """Base of every properties model: unknown properties are an error, like in Heat."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class NoProperties(PropertiesModel):
    """Properties model of a type that takes none."""


def update_allowed(model: type[PropertiesModel], name: str) -> bool:
    """Whether property `name` of `model` may change in place (declared on its Field)."""
    extra = model.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and extra.get("update_allowed") is True


def changed_properties(before: PropertiesModel, after: PropertiesModel) -> frozenset[str]:
    """Names of the properties whose values differ between two instances of one model."""
    return frozenset(
        name for name in type(after).model_fields if getattr(before, name) != getattr(after, name)
    )


class Clock(Protocol):
    """Where time comes from: wall time in the operator, virtual time in the simulator."""

    def now(self) -> float:
        """Seconds since an arbitrary, fixed origin."""
        ...


@dataclass(frozen=True)
class PhysicalRecord:
    """One physical resource as Reality holds it.

    `properties` are the properties it was last given, `attributes` what it
    exposes; `stack` and `logical_name` say whose it is (labels on a ConfigMap).
    """

    name: str
    stack: str
    logical_name: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)


class Reality(Protocol):
    """The physical world a resource type acts on: named physical records."""

    def create(self, record: PhysicalRecord) -> None:
        """Create a record; replace it if one with that name exists (creates are retried)."""
        ...

    def get(self, name: str) -> PhysicalRecord | None:
        """The record called `name`, if any."""
        ...

    def update(self, record: PhysicalRecord) -> None:
        """Overwrite the record called `record.name`."""
        ...

    def delete(self, name: str) -> None:
        """Delete the record called `name`; nothing happens if there is none."""
        ...


@dataclass(frozen=True)
class StackRef:
    """The identity of the stack a resource belongs to, as plugins see it."""

    name: str
    id: str


def short_id(record_id: str) -> str:
    """Eight lowercase base32 characters derived from a record's UUID (Heat's short_id)."""
    raw = uuid.UUID(record_id).bytes[:5]
    return base64.b32encode(raw).decode("ascii").lower()


@dataclass
class ResourceContext:
    """What one lifecycle step of one resource may use.

    `data` and `resource_id` are persisted by the engine after the step, so a
    plugin changes them by assignment and finds them again at the next poll.
    """

    stack: StackRef
    name: str
    record_id: str
    clock: Clock
    reality: Reality
    data: MutableMapping[str, Any] = field(default_factory=dict)
    resource_id: str | None = None

    def physical_name(self) -> str:
        """`<stack>-<resource>-<short id>`: stable for this resource version, unique per version."""
        return f"{self.stack.name}-{self.name}-{short_id(self.record_id)}"[:255]

    def now(self) -> float:
        """The current time in seconds."""
        return self.clock.now()

    def physical_record(
        self, properties: Mapping[str, Any], attributes: Mapping[str, Any]
    ) -> PhysicalRecord:
        """A record named after this resource's physical name, labelled with stack and name."""
        return PhysicalRecord(
            name=self.physical_name(),
            stack=self.stack.name,
            logical_name=self.name,
            properties=dict(properties),
            attributes=dict(attributes),
        )


class ResourceType:
    """Base class of resource types. Subclasses set `Properties` and `attributes_schema`.

    An instance lives for one step: it is built from the context and the
    validated properties of the action at hand (the new ones for create and
    update, the applied ones for delete).
    """

    Properties: ClassVar[type[PropertiesModel]] = NoProperties
    # Attribute name -> description.
    attributes_schema: ClassVar[Mapping[str, str]] = {}
    # False for types that create nothing physical (e.g. OS::Heat::None).
    has_physical_resource: ClassVar[bool] = True

    def __init__(self, context: ResourceContext, properties: PropertiesModel) -> None:
        self.context = context
        self.properties = properties

    @classmethod
    def validate_properties(cls, raw: Mapping[str, Any]) -> PropertiesModel:
        """Validate resolved template properties; raise ResourceFailure if they are invalid."""
        try:
            return cls.Properties.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'properties'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ResourceFailure(f"Property error: {problems}") from None

    @classmethod
    def updatable(cls, name: str) -> bool:
        """Whether property `name` may change without replacing the resource."""
        return update_allowed(cls.Properties, name)

    def needs_replace(self, before: PropertiesModel, changed: frozenset[str]) -> bool:
        """Ask for replacement beyond the schema (self.properties are the new ones)."""
        return False

    def create(self) -> Cookie:
        """Start creating the physical resource; return a cookie for the checks."""
        return None

    def check_create_complete(self, cookie: Cookie) -> bool:
        """Poll the create started with `cookie`; True when done."""
        return True

    def update(self, before: PropertiesModel, changed: frozenset[str]) -> Cookie:
        """Start an in-place update from `before` to self.properties (`changed` names differ)."""
        return None

    def check_update_complete(self, cookie: Cookie) -> bool:
        """Poll the update started with `cookie`; True when done."""
        return True

    def delete(self) -> Cookie:
        """Start deleting the physical resource (missing is fine); return a cookie."""
        return None

    def check_delete_complete(self, cookie: Cookie) -> bool:
        """Poll the delete started with `cookie`; True when done."""
        return True

    def reference_id(self) -> str | None:
        """What `get_resource` gives: the physical id, else the logical name (Heat's default)."""
        return self.context.resource_id or self.context.name

    def get_attribute(self, name: str) -> Any:
        """The value of attribute `name` (read once per traversal by the engine)."""
        return None


class UnknownResourceType(LookupError):
    """No resource type is registered under this name."""


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
        return type_name in self._types or type_name in self._lazy

    def get(self, type_name: str) -> type[ResourceType]:
        """The type registered under `type_name`; raise UnknownResourceType if none."""
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
