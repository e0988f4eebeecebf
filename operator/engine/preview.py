"""Preview: what converging a stack to a template would do, by logical name, changing nothing.

Heat's `preview_update` (`openstack stack update --dry-run`): each resource
of the stack and of the template falls in one of five lists, `added`,
`updated` (in place, with the properties that change), `replaced` (with the
properties, or the other reason, that force it), `deleted` and `unchanged`.
A create previews as everything added, a delete as everything deleted.

Each resource is decided by `decision.decide_update`, the very function the
converger's update node carries out, on the record a traversal would choose
(`operations.best_existing_record`) and with its properties resolved and
validated as an update node would (secret references revealed to the type,
never shown). So a parameter change that reaches a property counts, a changed
`depends_on` alone leaves a resource unchanged, a type change replaces, and a
type's own `needs_replace` hook is asked (Kubernetes::Object's is a dry-run
apply with the stack's identity, which changes nothing).

Values not known yet: a property whose value comes from a resource that
changes first is *unknown* until that resource is done, as in Heat, and
counts as changed (listed in `unknown` too). Known are `get_resource` of a
resource left unchanged or updated in place (its physical id stays) and
`get_attr` of a resource left unchanged whose attribute was read when it last
converged; anything of an added or replaced resource is unknown. An unknown
property that is not update-allowed therefore previews as a replacement.

Nothing is written: the template is bound and validated as the update would
(a `TemplateError` or `OperationRefused` says why it would be refused), but
no revision, record or traversal is stored. A resource whose known
properties fail its type's validation makes the preview fail with that
error (`PropertiesInvalid`), as the update would fail it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from convergence.operator.engine.decision import (
    UpdateDecision,
    UpdateKind,
    applied_properties,
    decide_update,
    resource_context,
    validated_properties,
)
from convergence.operator.engine.definitions import Definition
from convergence.operator.engine.hot.definition import ResourceData
from convergence.operator.engine.hot.functions.references import GetAttr
from convergence.operator.engine.operations import (
    OperationRefused,
    best_existing_record,
    stack_ref,
)
from convergence.operator.engine.plugin import StackRef
from convergence.operator.engine.sensitive import Revealed
from convergence.operator.engine.store import (
    DELETE,
    ResourceRecord,
    StackRecord,
    TemplateRevision,
)
from convergence.operator.engine.type_checks import check_types
from convergence.operator.engine.wiring import Engine

# The id of the revision a preview binds: never stored.
PREVIEW_REVISION = "preview"
# The five lists, in the order Heat shows them.
CATEGORIES = ("added", "updated", "replaced", "deleted", "unchanged")


class PropertiesInvalid(ValueError):
    """A resource's properties would fail its type's validation: the update would fail it."""


@dataclass(frozen=True)
class ResourceChange:
    """One logical resource in a preview."""

    name: str
    type: str
    # updated: the properties that change in place; replaced: those that change.
    properties: tuple[str, ...] = ()
    # replaced: the changed properties that cannot change in place.
    forced_by: tuple[str, ...] = ()
    # replaced: why, in words.
    reason: str = ""
    # Properties whose value is known only once what they come from is done (count as changed).
    unknown: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form (camelCase, empty fields left out), as the StackPreview status shows it."""
        shown: dict[str, Any] = {"name": self.name, "type": self.type}
        for key, value in (
            ("properties", list(self.properties)),
            ("forcedBy", list(self.forced_by)),
            ("reason", self.reason),
            ("unknown", list(self.unknown)),
        ):
            if value:
                shown[key] = value
        return shown


@dataclass(frozen=True)
class Preview:
    """What an operation would do, in Heat's five lists (each sorted by logical name)."""

    added: tuple[ResourceChange, ...] = ()
    updated: tuple[ResourceChange, ...] = ()
    replaced: tuple[ResourceChange, ...] = ()
    deleted: tuple[ResourceChange, ...] = ()
    unchanged: tuple[ResourceChange, ...] = ()

    def names(self) -> dict[str, list[str]]:
        """Each list as logical names."""
        return {category: [c.name for c in getattr(self, category)] for category in CATEGORIES}

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """JSON form of the five lists."""
        return {category: [c.to_dict() for c in getattr(self, category)] for category in CATEGORIES}


@dataclass
class _Lists:
    by_category: dict[str, list[ResourceChange]] = field(
        default_factory=lambda: {category: [] for category in CATEGORIES}
    )

    def add(self, category: str, change: ResourceChange) -> None:
        self.by_category[category].append(change)

    def preview(self) -> Preview:
        return Preview(
            **{
                category: tuple(sorted(changes, key=lambda c: c.name))
                for category, changes in self.by_category.items()
            }
        )


def preview_update(
    engine: Engine,
    stack_name: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
    environment: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> Preview:
    """What updating `stack_name` to `template` would do (a create if there is no such stack).

    Raises TemplateError (the template, parameters or environment are
    invalid, immutable parameters included), OperationRefused (the stack is
    being deleted) or PropertiesInvalid.
    """
    stack = engine.store.get_stack(stack_name)
    if stack is None:
        return preview_create(engine, stack_name, template, parameters, environment, files)
    if stack.action == DELETE:
        raise OperationRefused(f"Stack {stack_name} is being deleted ({stack.phase})")
    ref = stack_ref(stack)
    previous = engine.definition(ref, stack.template)
    definition = _definition(engine, ref, template, parameters, environment, previous, files)
    by_name: dict[str, list[ResourceRecord]] = {}
    for record in engine.store.list_resources(stack_name):
        by_name.setdefault(record.name, []).append(record)
    chosen = {
        name: best
        for name in definition.resources
        if (best := best_existing_record(by_name.get(name, ()), None, stack.template)) is not None
    }
    lists = _Lists()
    kinds: dict[str, UpdateKind] = {}
    revealed = Revealed()
    for name in _dependency_order(definition):
        kind, change = _preview_resource(engine, stack, definition, name, chosen, kinds, revealed)
        kinds[name] = kind
        lists.add(_CATEGORY[kind], change)
    for name in sorted(set(by_name) - set(definition.resources)):
        newest = max(by_name[name], key=lambda r: (r.created_at, r.id))
        lists.add("deleted", ResourceChange(name, newest.type))
    return lists.preview()


def preview_create(
    engine: Engine,
    stack_name: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
    environment: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> Preview:
    """What creating a stack of `template` would do: every resource added.

    Raises TemplateError, or PropertiesInvalid for a resource whose
    properties need no other resource and fail its type's validation.
    """
    ref = StackRef(stack_name, "")
    definition = _definition(engine, ref, template, parameters, environment, None, files)
    revealed = Revealed()
    lists = _Lists()
    for name, resource in definition.resources.items():
        if not definition.property_references(name):
            raw = definition.resolve_properties(name, {})
            _validate(engine, resource.type, name, raw, stack_name, revealed)
        lists.add("added", ResourceChange(name, resource.type))
    return lists.preview()


def preview_delete(engine: Engine, stack_name: str) -> Preview:
    """What deleting `stack_name` would do: every resource deleted (nothing if no such stack)."""
    lists = _Lists()
    newest: dict[str, ResourceRecord] = {}
    for record in engine.store.list_resources(stack_name):
        kept = newest.get(record.name)
        if kept is None or (record.created_at, record.id) > (kept.created_at, kept.id):
            newest[record.name] = record
    for name, record in newest.items():
        lists.add("deleted", ResourceChange(name, record.type))
    return lists.preview()


_CATEGORY = {
    UpdateKind.CREATE: "added",
    UpdateKind.UPDATE: "updated",
    UpdateKind.REPLACE: "replaced",
    UpdateKind.UNCHANGED: "unchanged",
}


def _definition(
    engine: Engine,
    ref: StackRef,
    template: Mapping[str, Any],
    parameters: Mapping[str, Any] | None,
    environment: Mapping[str, Any] | None,
    previous: Definition | None,
    files: Mapping[str, str] | None = None,
) -> Definition:
    """The template bound as the operation would bind it (validated; nothing stored)."""
    revision = TemplateRevision(
        PREVIEW_REVISION,
        ref.name,
        dict(template),
        dict(parameters or {}),
        dict(environment or {}),
        dict(files or {}),
    )
    definition = engine.definitions(revision, ref, engine.types, previous)
    check_types(definition, engine.types)
    return definition


def _dependency_order(definition: Definition) -> list[str]:
    """Resources in template order, each after everything it requires."""
    dependencies = definition.dependencies()
    ordered: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        # Iterative, so that a long chain does not hit the recursion limit.
        pending = [(name, iter(sorted(dependencies.get(name, ()))))]
        while pending:
            current, requirements = pending[-1]
            for required in requirements:
                if required not in placed and required in definition.resources:
                    pending.append((required, iter(sorted(dependencies.get(required, ())))))
                    break
            else:
                pending.pop()
                if current not in placed:
                    placed.add(current)
                    ordered.append(current)

    for name in definition.resources:
        place(name)
    return ordered


def _unknown_properties(
    definition: Definition,
    name: str,
    chosen: Mapping[str, ResourceRecord],
    kinds: Mapping[str, UpdateKind],
) -> frozenset[str]:
    """Properties of `name` whose value depends on what a resource changing first gives."""
    unknown: set[str] = set()
    for key, references in definition.property_references(name).items():
        for reference in references:
            required = reference.resource_name
            record = chosen.get(required)
            kind = kinds.get(required, UpdateKind.CREATE)
            if isinstance(reference, GetAttr):
                attribute = reference.attribute_name
                known = (
                    kind is UpdateKind.UNCHANGED
                    and record is not None
                    and attribute is not None
                    and attribute in record.attributes
                )
            else:
                known = (
                    kind in (UpdateKind.UNCHANGED, UpdateKind.UPDATE)
                    and record is not None
                    and record.reference_id is not None
                )
            if not known:
                unknown.add(key)
                break
    return frozenset(unknown)


def _preview_resource(
    engine: Engine,
    stack: StackRecord,
    definition: Definition,
    name: str,
    chosen: Mapping[str, ResourceRecord],
    kinds: Mapping[str, UpdateKind],
    revealed: Revealed,
) -> tuple[UpdateKind, ResourceChange]:
    """What the update node of `name` would decide, on the record a traversal would choose."""
    resource = definition.resources[name]
    record = chosen.get(name)
    if record is None:
        return UpdateKind.CREATE, ResourceChange(name, resource.type)
    unknown = _unknown_properties(definition, name, chosen, kinds)
    # Every reference resolves against what its resource holds now; an unknown
    # property then takes its applied value, so that the type validates the
    # rest and the decision counts the unknown ones as changed.
    data = {
        required: ResourceData(dep.reference_id, dict(dep.attributes))
        if (dep := chosen.get(required)) is not None
        else ResourceData(None, {})
        for required in definition.dependencies().get(name, ())
    }
    try:
        raw = definition.resolve_properties(name, data)
    except Exception:
        if not unknown:
            raise
        # A function that cannot take what a changing resource holds now: only the
        # properties that need no other resource are known.
        dynamic = definition.property_references(name)
        raw = {k: v for k, v in resource.properties.items() if k not in dynamic}
        unknown = frozenset(dynamic)
    applied = dict(record.properties or {})
    for key in unknown:
        raw.pop(key, None)
        if key in applied:
            raw[key] = applied[key]
    plugin_type = engine.types.get(resource.type)
    properties = _validate(engine, resource.type, name, raw, stack.name, revealed, unknown)
    plugin = plugin_type(resource_context(engine, stack, record), properties)
    decision = decide_update(
        record,
        resource.type,
        lambda: applied_properties(engine, plugin_type, record, revealed),
        plugin,
        unknown,
    )
    return decision.kind, _change(name, resource.type, decision, unknown)


def _validate(
    engine: Engine,
    type_name: str,
    name: str,
    raw: Mapping[str, Any],
    stack_name: str,
    revealed: Revealed,
    unknown: Iterable[str] = (),
) -> Any:
    plugin_type = engine.types.get(type_name)
    try:
        return validated_properties(engine, plugin_type, raw, stack_name, revealed)
    except Exception as exc:
        pending = sorted(unknown)
        note = f" (with {', '.join(pending)} as applied now)" if pending else ""
        raise PropertiesInvalid(
            revealed.scrub(f"resources.{name}.properties: {exc}{note}")
        ) from None


def _change(
    name: str, type_name: str, decision: UpdateDecision, unknown: frozenset[str]
) -> ResourceChange:
    if decision.kind is UpdateKind.UNCHANGED or decision.kind is UpdateKind.CREATE:
        return ResourceChange(name, type_name)
    return ResourceChange(
        name,
        type_name,
        properties=tuple(sorted(decision.changed)),
        forced_by=tuple(sorted(decision.forced_by)),
        reason=decision.reason,
        unknown=tuple(sorted(unknown & decision.changed)),
    )
