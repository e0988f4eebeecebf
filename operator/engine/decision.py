"""What an update node does to its record: create, update in place, replace, or nothing.

One decision, made in one place: the converger carries it out (converger.py)
and preview reports it (preview.py), so what a preview says and what the
update then does cannot disagree. As in Heat, the engine decides, not the
type: a resource is replaced when it cannot be updated (deletion requested,
FAILED — unless its type updates a FAILED resource in place, as nested stacks
do once their child exists —, being deleted, of another type now, or its
applied properties no longer fit the type), when a property that is not update-allowed changes, or
when the type's `needs_replace` hook asks for it; else it is updated in place
when a property changes, and left as it is otherwise (a changed `depends_on`,
metadata or deletion policy alone changes no property).

The helpers beside it give a type what a step gives it: its context, and
properties validated with secret references revealed (see sensitive.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from convergence.operator.engine.plugin import (
    PropertiesModel,
    ResourceContext,
    ResourceType,
    StackRef,
    changed_properties,
)
from convergence.operator.engine.sensitive import Revealed, reveal
from convergence.operator.engine.store import DELETE, FAILED, INIT, ResourceRecord, StackRecord
from convergence.operator.engine.wiring import Engine


class UpdateKind(StrEnum):
    """What an update node does to the record it runs on."""

    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class UpdateDecision:
    """The decision and why: the properties that change, those that force a replacement."""

    kind: UpdateKind
    # Properties whose values change (for a replacement as well).
    changed: frozenset[str] = frozenset()
    # Properties whose change cannot be made in place (not update-allowed).
    forced_by: frozenset[str] = frozenset()
    # Why the record is replaced (or, FAILED, updated in place), in words.
    reason: str = ""


def decide_update(
    record: ResourceRecord,
    type_name: str,
    applied: Callable[[], PropertiesModel | None],
    plugin: ResourceType,
    unknown: frozenset[str] = frozenset(),
) -> UpdateDecision:
    """The decision for `record`, to become a resource of `type_name` with `plugin`'s properties.

    `applied` gives the record's applied properties as its type validates them
    now (None: they no longer fit), asked only when they matter. `unknown`
    names properties whose new value cannot be known yet (preview: they depend
    on resources that change first); as in Heat, they count as changed.
    """
    if record.deletion_requested:
        return _replace("its StackResource is being deleted")
    if record.action == INIT:
        return UpdateDecision(UpdateKind.CREATE)
    if record.action == DELETE:
        return _replace(f"it is {record.phase}")
    plugin_type = type(plugin)
    repaired = record.status == FAILED and _updated_after_failure(record, plugin_type)
    if record.status == FAILED and not repaired:
        return _replace(f"it is {record.phase}")
    if record.type != type_name:
        return _replace(f"its type changes from {record.type} to {type_name}")
    before = applied()
    if before is None:
        if repaired and record.properties is None:
            # Its create failed: nothing was applied, so every property counts as changed.
            everything = frozenset(type(plugin.properties).model_fields)
            return UpdateDecision(UpdateKind.UPDATE, everything, reason=_REPAIRED)
        return _replace(f"its applied properties no longer fit {type_name}")
    changed = changed_properties(before, plugin.properties) | unknown
    forced_by = frozenset(name for name in changed if not plugin_type.updatable(name))
    if forced_by:
        names = ", ".join(sorted(forced_by))
        return UpdateDecision(
            UpdateKind.REPLACE, changed, forced_by, f"{names} cannot change in place"
        )
    if plugin.needs_replace(before, changed):
        names = ", ".join(sorted(changed))
        return UpdateDecision(
            UpdateKind.REPLACE,
            changed,
            reason=f"{type_name} replaces it on a change of {names}",
        )
    if repaired:
        # As Heat does for a nested stack: always updated, even unchanged, so that
        # the child converges again (its own FAILED resources are replaced there).
        return UpdateDecision(UpdateKind.UPDATE, changed, reason=_REPAIRED)
    if changed:
        return UpdateDecision(UpdateKind.UPDATE, changed)
    return UpdateDecision(UpdateKind.UNCHANGED)


_REPAIRED = "it FAILED: its type updates it in place"


def _updated_after_failure(record: ResourceRecord, plugin_type: type[ResourceType]) -> bool:
    """Whether a FAILED record is updated in place rather than replaced: its type says so
    (nested stacks) and its physical resource exists (a child never made is replaced)."""
    return not plugin_type.replace_on_failure and record.resource_id is not None


def _replace(reason: str) -> UpdateDecision:
    return UpdateDecision(UpdateKind.REPLACE, reason=reason)


def resource_context(
    engine: Engine,
    stack: StackRecord,
    record: ResourceRecord,
    update_policy: Mapping[str, Any] | None = None,
) -> ResourceContext:
    """What a step of `record`'s type may use (`update_policy`: its definition's)."""
    return ResourceContext(
        stack=StackRef(stack.name, stack.uid),
        name=record.name,
        record_id=record.id,
        clock=engine.clock,
        reality=engine.reality,
        data=dict(record.data),
        resource_id=record.resource_id,
        objects=engine.objects.for_stack(stack.name) if engine.objects else None,
        secrets=engine.secrets,
        stacks=engine.stacks.for_stack(stack.name) if engine.stacks else None,
        update_policy=dict(update_policy or {}),
    )


def validated_properties(
    engine: Engine,
    plugin_type: type[ResourceType],
    raw: Mapping[str, Any],
    stack_name: str,
    revealed: Revealed,
) -> PropertiesModel:
    """Resolved properties as the type gets them: secret references revealed, validated.

    What is stored stays `raw`, with the references (see engine/sensitive.py).
    """
    return plugin_type.validate_properties(reveal(raw, stack_name, engine.secrets, revealed))


def applied_properties(
    engine: Engine, plugin_type: type[ResourceType], record: ResourceRecord, revealed: Revealed
) -> PropertiesModel | None:
    """The record's applied properties validated by its type now (None: they no longer fit)."""
    try:
        return validated_properties(
            engine, plugin_type, record.properties or {}, record.stack, revealed
        )
    except Exception:
        return None
