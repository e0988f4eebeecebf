"""What a resource type implements (`ResourceType`) and what one step of it may use
(`ResourceContext`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from convergence.operator.engine.plugin.errors import ResourceFailure
from convergence.operator.engine.plugin.objects import ObjectClient
from convergence.operator.engine.plugin.properties import (
    NoProperties,
    PropertiesModel,
    update_allowed,
)
from convergence.operator.engine.plugin.reality import Clock, PhysicalRecord, Reality
from convergence.operator.engine.plugin.secrets import SecretStore
from convergence.operator.engine.record_ids import short_id

if TYPE_CHECKING:
    from convergence.operator.engine.plugin.stacks import NestedStacks

# What lifecycle steps return and the engine persists between polls.
Cookie = Any


@dataclass(frozen=True)
class StackRef:
    """The identity of the stack a resource belongs to, as plugins see it."""

    name: str
    id: str


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
    # The stack's child stacks (OS::Heat::Stack; see `stacks`); None: nesting is not wired.
    stacks: NestedStacks | None = None
    # The resource's `update_policy` in the definition a create or update converges to
    # (as the template gives it; the type validates it): e.g. ResourceGroup's batches.
    update_policy: Mapping[str, Any] = field(default_factory=dict)

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
    # True for types that answer any attribute name (beyond attributes_schema), so
    # that a template naming another one is no error.
    any_attribute: ClassVar[bool] = False
    # False for types that create nothing physical (e.g. OS::Heat::None).
    has_physical_resource: ClassVar[bool] = True
    # Heat's needs_replace_failed: whether a FAILED resource is replaced by the next
    # update. False for nested stacks, whose FAILED resource (once its child exists) is
    # updated in place: the child's own traversal replaces what failed in it.
    replace_on_failure: ClassVar[bool] = True

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
    def validate_definition(
        cls, known: Mapping[str, Any], update_policy: Mapping[str, Any]
    ) -> None:
        """Refuse a definition before any traversal starts (the Stack webhook, a stack
        taking up a new template): `known` holds the properties whose values need no
        other resource's data, `update_policy` the resource's. Raise ResourceFailure
        saying what is wrong. The default refuses nothing: properties are validated
        when the resource runs."""
        return None

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

    def attribute_names(self) -> Collection[str]:
        """What `get_attr: [res]` (every attribute) reads: `attributes_schema`, unless the
        type knows its attributes only once made (a template resource: its child's outputs)."""
        return tuple(self.attributes_schema)

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
