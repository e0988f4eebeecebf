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
identity; None in the simulator); types made of a child stack use `stacks`
(`NestedStacks`, the sanctioned door to child Stacks, which `objects`
refuses); `update_policy` is the resource's during a create or update. Optional
hooks: `retain` (the engine drops a record kept by `deletion_policy: Retain`),
`repair_drift` (put the physical resource back between traversals; see
`converger.repair_drift`) and `validate_definition` (refuse a definition
before anything starts; see `engine/type_checks.py`).
Values that must stay out of status, Events and logs go to `secrets` (a
`SecretStore`); the type then exposes a `secret_token` in their place, and the
engine puts the value in only where it hands properties to a type (see
`engine/sensitive.py`).

The engine, not the type, decides to replace: a change of a property that is
not update-allowed, a type change, a FAILED resource (unless the type sets
`replace_on_failure = False` and its physical resource exists: nested stacks),
or the type's `needs_replace` hook answering True.

Types are found in the entry-point group `convergence.resource_types`
(`TypeRegistry.from_entry_points`) or registered explicitly (tests).

This package is the only door resource types use into the operator (an
import-linter contract keeps it so): import from `convergence.operator.engine.plugin`,
never from its modules. Kubernetes refusals arrive as exception types
(`ObjectImmutable`, `ObjectConflict`), never as HTTP status codes. Types that
take a value the way a template parameter does (OS::Heat::Value) coerce it
with `coerce_value`, as the template language does.
"""

from convergence.operator.engine.hot.coercion import ParameterValueError, coerce_value
from convergence.operator.engine.plugin.errors import (
    ObjectConflict,
    ObjectImmutable,
    ObjectRejected,
    ResourceFailure,
    Unavailable,
    UnknownResourceType,
)
from convergence.operator.engine.plugin.fencing import Fenced, acting, check_write
from convergence.operator.engine.plugin.objects import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OPERATOR_PREFIX,
    RESOURCE_LABEL,
    STACK_LABEL,
    STACK_RESOURCE_LABEL,
    ObjectClient,
    ObjectClients,
    ObjectRef,
    label_value,
)
from convergence.operator.engine.plugin.properties import (
    UPDATE_ALLOWED,
    NoProperties,
    PropertiesModel,
    changed_properties,
    update_allowed,
)
from convergence.operator.engine.plugin.reality import Clock, PhysicalRecord, Reality
from convergence.operator.engine.plugin.registry import ENTRY_POINT_GROUP, TypeRegistry
from convergence.operator.engine.plugin.resource_type import (
    Cookie,
    ResourceContext,
    ResourceType,
    StackRef,
)
from convergence.operator.engine.plugin.secrets import (
    SECRET_TOKEN,
    SecretStore,
    StoredSecret,
    has_secret_token,
    secret_token,
)
from convergence.operator.engine.plugin.stacks import (
    NestedStackClients,
    NestedStacks,
    NestedStackState,
    nested_stack_name,
    template_document,
)
from convergence.operator.engine.record_ids import short_id

__all__ = [
    "ENTRY_POINT_GROUP",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "OPERATOR_PREFIX",
    "RESOURCE_LABEL",
    "SECRET_TOKEN",
    "STACK_LABEL",
    "STACK_RESOURCE_LABEL",
    "UPDATE_ALLOWED",
    "Clock",
    "Cookie",
    "Fenced",
    "NestedStackClients",
    "NestedStackState",
    "NestedStacks",
    "NoProperties",
    "ObjectClient",
    "ObjectClients",
    "ObjectConflict",
    "ObjectImmutable",
    "ObjectRef",
    "ObjectRejected",
    "ParameterValueError",
    "PhysicalRecord",
    "PropertiesModel",
    "Reality",
    "ResourceContext",
    "ResourceFailure",
    "ResourceType",
    "SecretStore",
    "StackRef",
    "StoredSecret",
    "TypeRegistry",
    "Unavailable",
    "UnknownResourceType",
    "acting",
    "changed_properties",
    "check_write",
    "coerce_value",
    "has_secret_token",
    "label_value",
    "nested_stack_name",
    "secret_token",
    "short_id",
    "template_document",
    "update_allowed",
]
