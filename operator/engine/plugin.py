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
simulator, ConfigMaps in the Kubernetes operator). Types that manage
Kubernetes objects use `objects` (an `ObjectClient` acting with the stack's
identity; None in the simulator). Two optional hooks: `retain` (the engine
drops a record kept by `deletion_policy: Retain`) and `repair_drift` (put the
physical resource back between traversals; see `converger.repair_drift`).
Values that must stay out of status, Events and logs go to `secrets` (a
`SecretStore`); the type then exposes a `secret_token` in their place, and the
engine puts the value in only where it hands properties to a type (see
`engine/sensitive.py`).

The engine, not the type, decides to replace: a change of a property that is
not update-allowed, a type change, a FAILED resource, or the type's
`needs_replace` hook answering True.

Types are found in the entry-point group `convergence.resource_types`
(`TypeRegistry.from_entry_points`) or registered explicitly (tests).
"""

from __future__ import annotations

import base64
import importlib.metadata
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

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
class ObjectRef:
    """Where one Kubernetes object is: `namespace` is None for a cluster-scoped kind."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


# How the API words an Invalid (422) change of a field that is fixed at creation.
_IMMUTABLE_WORDS = (
    "immutable",  # most: "field is immutable"
    "may not change once set",  # a Service's clusterIP(s)
    "updates to statefulset spec for fields other than",  # a StatefulSet's selector etc.
)


class ObjectRejected(ResourceFailure):
    """The Kubernetes API refused a request about an object.

    `code` is the HTTP status and `reason` the API's reason (e.g. Forbidden,
    Invalid, Conflict); the message names the object and says why.
    """

    def __init__(self, message: str, code: int, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    @property
    def immutable(self) -> bool:
        """The change touches a field that cannot change once the object exists."""
        message = str(self).lower()
        return self.code == 422 and any(words in message for words in _IMMUTABLE_WORDS)

    @property
    def conflict(self) -> bool:
        """An apply without force met fields that another field manager owns."""
        return self.code == 409


class ObjectClient(Protocol):
    """Kubernetes objects as one stack may touch them (Kubernetes::Object's world).

    Every request is made with the stack's identity: its ServiceAccount when
    the Stack names one (impersonated), else the operator's own. Requests the
    API refuses raise ObjectRejected.
    """

    @property
    def namespace(self) -> str:
        """The stack's namespace: the default for namespaced objects."""
        ...

    @property
    def confined(self) -> bool:
        """Whether objects must stay in `namespace` (no cluster-scoped kinds, no other
        namespace); False when the stack's ServiceAccount's RBAC decides instead."""
        ...

    def is_namespaced(self, api_version: str, kind: str) -> bool:
        """Whether the kind is namespaced; ResourceFailure when the API serves no such kind."""
        ...

    def apply(
        self, manifest: Mapping[str, Any], *, force: bool = True, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply under the field manager `convergence`; the live object after it.

        Without `force` an apply meeting fields owned by another manager is
        refused (ObjectRejected.conflict); `dry_run` changes nothing.
        """
        ...

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The live object, or None if there is none."""
        ...

    def delete(self, ref: ObjectRef, *, uid: str | None = None) -> None:
        """Delete the object (in the background); with `uid` only that incarnation of it.
        Missing, or another incarnation, is fine."""
        ...

    def owner_reference(self, record_id: str) -> dict[str, Any] | None:
        """An ownerReference tying an object to the resource record (None: records are
        not objects here, or it is gone); valid only in `namespace`."""
        ...


class ObjectClients(Protocol):
    """Gives each stack its ObjectClient (on Engine; None where there is no Kubernetes API)."""

    def for_stack(self, stack: str) -> ObjectClient:
        """The client of stack `stack`; cheap, and makes no request before it is used."""
        ...


@dataclass(frozen=True)
class StoredSecret:
    """One entry of a SecretStore: string data and the resource it was written for."""

    name: str
    stack: str
    logical_name: str
    data: Mapping[str, str] = field(default_factory=dict)


class SecretStore(Protocol):
    """Where types keep values that must never appear in status, Events or logs.

    In the simulator a dict; in the operator one Secret per entry in the stack's
    namespace, owned by the resource's StackResource. An entry is named by the
    type (its physical name, typically); `record_id` says which resource record
    it belongs to.
    """

    def write(
        self,
        name: str,
        data: Mapping[str, str],
        *,
        stack: str,
        logical_name: str,
        record_id: str,
    ) -> None:
        """Create or overwrite the entry `name` (writes are retried after a crash)."""
        ...

    def read(self, name: str) -> StoredSecret | None:
        """The entry called `name`, if any."""
        ...

    def delete(self, name: str) -> None:
        """Delete the entry called `name`; nothing happens if there is none."""
        ...

    def release(self, name: str) -> None:
        """Untie the entry from its stack (deletion_policy Retain): it outlives the record."""
        ...

    def locate(self, name: str) -> str:
        """Where a consumer finds the entry `name` (in Kubernetes: the Secret's name)."""
        ...


# A reference to one key of a SecretStore entry, as it travels in place of the
# value: a type returns it from `reference_id` / `get_attribute` (so status,
# sync points and outputs hold only the reference), and the engine puts the
# value in where the reference occurs in the properties it gives a type.
_SECRET_TOKEN_PREFIX = "$(convergence.secret:"
SECRET_TOKEN = re.compile(r"\$\(convergence\.secret:([A-Za-z0-9_.~%-]+)/([A-Za-z0-9_.~%-]+)\)")


def secret_token(name: str, key: str) -> str:
    """The reference to key `key` of SecretStore entry `name` (see SECRET_TOKEN)."""
    return f"{_SECRET_TOKEN_PREFIX}{quote(name, safe='')}/{quote(key, safe='')})"


def has_secret_token(text: str) -> bool:
    """Whether a string holds a secret reference (a quick check before SECRET_TOKEN)."""
    return _SECRET_TOKEN_PREFIX in text


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
    # Kubernetes objects as this stack may touch them; None where there is no Kubernetes API.
    objects: ObjectClient | None = None
    # Where values that must stay out of status live (OS::Heat::RandomString); None: nowhere.
    secrets: SecretStore | None = None

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

    def retain(self) -> None:
        """Let go of the physical resource, kept by `deletion_policy: Retain`.

        Called once when the engine drops the record instead of deleting (with
        the applied properties): e.g. remove what ties the resource to the
        stack. Must be idempotent; a failure fails the cleanup.
        """
        return None

    def repair_drift(self) -> str | None:
        """Put the physical resource back to the applied properties if someone else
        changed or deleted it; say what drifted (None: nothing did, or the type
        cannot tell). Called between traversals on COMPLETE resources."""
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
