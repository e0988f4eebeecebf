"""Stack operations: every create, update, rollback and delete converges the stack to a template.

Each operation is a traversal with a fresh id, stored by compare-and-set on the
stack record; storing it makes every older traversal stale without interrupting
anything (running actions finish, then their nodes re-enter the newest
traversal). Starting a traversal picks, for each resource of the target
template, the best existing record (Heat's scoring), creates INIT records for
the rest (named by `record_ids.record_id`: readable, unique), computes the
graph once and stores it with the stack, then triggers the leaves.

This module also holds every write of stack state after the start: a traversal
is *ready* (in service) when all its update nodes are done, and *complete*
(`*_COMPLETE`) when the cleanup nodes are done too; it fails with
`*_FAILED` (and rolls back if rollback is enabled); it can be cancelled. Each of
these writes is a compare-and-set that first checks the traversal is still the
stack's current one, so a stale worker never overwrites a newer traversal.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from convergence.operator.engine.definitions import Definition
from convergence.operator.engine.graph import (
    ExistingRecord,
    Graph,
    cleanup_node,
    traversal_graph,
    update_node,
)
from convergence.operator.engine.hot.definition import ResourceData
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.plugin import StackRef
from convergence.operator.engine.record_ids import record_id, replacement_id
from convergence.operator.engine.store import (
    COMPLETE,
    CREATE,
    DELETE,
    FAILED,
    IN_PROGRESS,
    ROLLBACK,
    UPDATE,
    AlreadyExists,
    Conflict,
    ResourceRecord,
    StackRecord,
    TemplateRevision,
)
from convergence.operator.engine.sync_point import is_satisfied
from convergence.operator.engine.type_checks import check_types
from convergence.operator.engine.wiring import Engine


class OperationRefused(Exception):
    """The stack is in a state that does not allow this operation."""


class StackNotFound(LookupError):
    """No stack of that name."""


def replaced_in(record: ResourceRecord, traversal: str) -> bool:
    """Whether `record` is the replacement `traversal` made (of the record it replaces)."""
    return record.replaces is not None and record.id == replacement_id(record.replaces, traversal)


def stack_ref(stack: StackRecord) -> StackRef:
    """The identity plugins and definitions see."""
    return StackRef(stack.name, stack.uid)


def _get(engine: Engine, name: str) -> StackRecord:
    stack = engine.store.get_stack(name)
    if stack is None:
        raise StackNotFound(f"Stack {name!r} not found")
    return stack


# -- choosing records ----------------------------------------------------------------------------


def record_score(record: ResourceRecord, target: str | None, current: str | None) -> int:
    """Heat's score of an existing record as the one to converge to `target`.

    A record at the target template wins (a rollback reuses what still exists),
    then one at the template being replaced; FAILED and deleted ones lose.
    """
    score = 0
    if record.status == FAILED:
        score -= 30
    if record.action == DELETE:
        score -= 50
    if record.replaced_by is not None:
        score -= 1
    if record.template is not None and record.template == current:
        score += 5
    if record.template is not None and record.template == target:
        score += 10
    return score


def best_existing_record(
    candidates: Iterable[ResourceRecord], target: str | None, current: str | None
) -> ResourceRecord | None:
    """The record a resource's update node should work on, if any may be reused.

    A record being deleted is never reused: its deletion cannot be revoked.
    Ties go to the newest record.
    """
    usable = [
        r for r in candidates if not (r.action == DELETE and r.status in (IN_PROGRESS, COMPLETE))
    ]
    if not usable:
        return None
    return max(usable, key=lambda r: (record_score(r, target, current), r.created_at, r.id))


# -- starting traversals -------------------------------------------------------------------------


def converge(
    engine: Engine,
    stack: StackRecord,
    revision: str | None,
    action: str,
    definition: Definition | None = None,
    **settings: Any,
) -> StackRecord:
    """Start a traversal converging `stack` to template revision `revision` (None: empty).

    Raises store.Conflict when someone else changed the stack since it was read.
    """
    ref = stack_ref(stack)
    if definition is None:
        definition = engine.definition(ref, revision)
    traversal = engine.new_id()
    now = engine.clock.now()
    existing = engine.store.list_resources(stack.name)
    by_name: dict[str, list[ResourceRecord]] = {}
    for record in existing:
        by_name.setdefault(record.name, []).append(record)

    # Every replica that heard of the same change (`desired`) makes the same new records
    # (their ids derive from it): whichever starts the traversal first, the others find
    # them made, and no record is left over of a start that lost.
    desired = settings.get("desired")
    chosen: dict[str, str] = {}
    new_records: list[ResourceRecord] = []
    for name, resource in definition.resources.items():
        best = best_existing_record(by_name.get(name, ()), revision, stack.template)
        if best is None:
            unique = (
                engine.new_id()
                if desired is None
                else str(uuid.uuid5(uuid.NAMESPACE_OID, f"{stack.uid}/{desired}/{name}"))
            )
            best = ResourceRecord(
                id=record_id(stack.name, name, unique),
                stack=stack.name,
                name=name,
                type=resource.type,
                created_at=now,
                template=revision,
                deletion_policy=resource.deletion_policy,
            )
            new_records.append(best)
        chosen[name] = best.id
    # Independent writes: the store may make them at once (a 1000-resource create
    # would otherwise wait on 1000 round trips here before any node runs).
    engine.store.create_resources(new_records, exist_ok=desired is not None)

    dependencies = definition.dependencies()
    template_dependencies = {
        name: frozenset(dep for dep in dependencies.get(name, ()) if dep in chosen)
        for name in chosen
    }
    graph = traversal_graph(
        template_dependencies,
        chosen,
        (ExistingRecord(r.id, r.name, r.requires, r.replaces) for r in existing),
    )
    started = replace(
        stack,
        traversal=traversal,
        template=revision,
        action=action,
        status=IN_PROGRESS,
        status_reason=start_reason(action),
        ready=False,
        graph=graph,
        started_at=now,
        **settings,
    )
    stored = engine.store.update_stack(started)
    if len(graph) == 0:
        return _finish(engine, stored.name, traversal, complete=True) or stored
    for leaf in graph.leaves():
        engine.dispatcher.trigger(NodeMessage(stack.name, traversal, leaf))
    # A record an older traversal's step deleted after the listing above, but
    # before this traversal became the stack's, was announced to no node of
    # this one: its cleanup node runs now (it finds the record gone and pushes on).
    present = {record.id for record in engine.store.list_resources(stack.name)}
    for record in existing:
        if record.id not in present:
            engine.dispatcher.trigger(NodeMessage(stack.name, traversal, cleanup_node(record.id)))
    return stored


def _new_revision(
    engine: Engine,
    stack: StackRecord,
    template: Mapping[str, Any],
    parameters: Mapping[str, Any] | None,
    previous: Definition | None,
    environment: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> tuple[str, Definition]:
    # Validated before anything is stored: a bad template never starts a traversal.
    revision = TemplateRevision(
        engine.new_id(),
        stack.name,
        dict(template),
        dict(parameters or {}),
        dict(environment or {}),
        dict(files or {}),
    )
    definition = engine.definitions(revision, stack_ref(stack), engine.types, previous)
    check_types(definition, engine.types)
    engine.store.put_template(revision)
    engine.remember(revision.id, definition)
    return revision.id, definition


def superseded(stored: str | None, desired: str | None) -> bool:
    """Whether a create or update for `desired` is started already (`stored` is the same
    id) or stale: `stored` is of a later generation, the leading number of each id."""
    if desired is None or stored is None:
        return False
    if stored == desired:
        return True
    return _generation(stored) > _generation(desired)


def _generation(desired: str) -> int:
    head = desired.split(" ", 1)[0]
    return int(head) if head.isdigit() else -1


def create_stack(
    engine: Engine,
    name: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
    *,
    disable_rollback: bool = True,
    timeout: float | None = None,
    environment: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
    desired: str | None = None,
) -> StackRecord:
    """Create a stack: converge from nothing to `template` (with Heat's `environment` and
    files map).

    With `desired` (the caller's id of this desired state), a stack created for
    the same id already, or converging to a later one, is returned as it is.
    """
    existing = engine.store.get_stack(name)
    if existing is not None and superseded(existing.desired, desired):
        return existing
    new = StackRecord(
        name=name,
        uid=engine.new_id(),
        traversal="",
        disable_rollback=disable_rollback,
        timeout=timeout,
    )
    # The template is validated before the stack is stored: an invalid one
    # leaves nothing behind.
    revision = TemplateRevision(
        engine.new_id(),
        name,
        dict(template),
        dict(parameters or {}),
        dict(environment or {}),
        dict(files or {}),
    )
    definition = engine.definitions(revision, stack_ref(new), engine.types, None)
    check_types(definition, engine.types)
    try:
        engine.store.create_stack(new)
    except AlreadyExists:
        if desired is None:
            raise
        # Another worker or replica is creating it for the same change: whichever
        # starts the traversal first wins, and the other finds it started.
    engine.store.put_template(revision)
    engine.remember(revision.id, definition)

    def start(current: StackRecord) -> StackRecord:
        if superseded(current.desired, desired):
            return current
        return converge(engine, current, revision.id, CREATE, definition, desired=desired)

    return _retry(start, engine, name)


def update_stack(
    engine: Engine,
    name: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
    *,
    disable_rollback: bool | None = None,
    timeout: float | None = None,
    environment: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
    desired: str | None = None,
) -> StackRecord:
    """Update a stack to `template` (with Heat's `environment` and files map), even while
    another operation is in progress.

    With `desired` (the caller's id of this desired state), an update started for
    the same id already (by another worker, another replica), or for a later one,
    is not started.
    """
    stack = _get(engine, name)
    if superseded(stack.desired, desired):
        return stack
    if stack.action == DELETE:
        raise OperationRefused(f"Stack {name} is being deleted ({stack.phase})")
    previous = engine.definition(stack_ref(stack), stack.template)
    revision, definition = _new_revision(
        engine, stack, template, parameters, previous, environment, files
    )
    settings: dict[str, Any] = {"desired": desired}
    if disable_rollback is not None:
        settings["disable_rollback"] = disable_rollback
    if timeout is not None:
        settings["timeout"] = timeout

    def start(current: StackRecord) -> StackRecord:
        if superseded(current.desired, desired):
            return current  # started meanwhile, by whoever changed the stack, or stale
        # A stack stored but never converged (its creator stopped, or another replica
        # is just about to start it) is still being created.
        action = UPDATE if current.traversal else CREATE
        return converge(engine, current, revision, action, definition, **settings)

    return _retry(start, engine, name)


def delete_stack(engine: Engine, name: str) -> StackRecord:
    """Delete a stack: converge to the empty template (running actions finish first).

    A stack whose delete has started (by another worker or replica meanwhile) is
    left to it: a delete is started once.
    """
    return _retry(
        lambda s: s if s.action == DELETE else converge(engine, s, None, DELETE), engine, name
    )


def rollback_stack(engine: Engine, name: str) -> StackRecord:
    """Converge back to the last template that completed (a failed create: to nothing)."""

    def roll_back(stack: StackRecord) -> StackRecord:
        if stack.status == COMPLETE and stack.prev_template == stack.template:
            return stack  # nothing to roll back
        return converge(engine, stack, stack.prev_template, ROLLBACK)

    return _retry(roll_back, engine, name)


def cancel_update(engine: Engine, name: str, *, rollback: bool = False) -> StackRecord:
    """Cancel the operation in progress, rolling back or not.

    Without rollback (CREATE or UPDATE): a new traversal id with nothing to do
    and `*_FAILED` "Stack <ACTION> cancelled"; running actions finish, nothing
    new starts. With rollback (UPDATE only, as in Heat): a rollback traversal.
    """
    stack = _get(engine, name)
    allowed = (UPDATE,) if rollback else (CREATE, UPDATE)
    if stack.status != IN_PROGRESS or stack.action not in allowed:
        raise OperationRefused(
            f"Cannot cancel {'with' if rollback else 'without'} rollback "
            f"when stack is {stack.phase}"
        )
    if rollback:
        return rollback_stack(engine, name)
    stopped = stop_traversal(engine, name, stack.traversal, cancelled_reason(stack.action))
    if stopped is None:
        raise OperationRefused(f"Stack {name} changed while cancelling")
    return stopped


def cancelled_reason(action: str) -> str:
    """The status reason of an operation cancelled without rollback."""
    return f"Stack {action} cancelled"


def rollback_lost(stack: StackRecord) -> bool:
    """Whether the stack failed with rollback enabled and its rollback never started.

    Failing and starting the rollback are two stack writes (Heat shows
    `*_FAILED` before `ROLLBACK_IN_PROGRESS`): a process that died between
    them leaves this state, and only a cancel without rollback leaves it on purpose.
    """
    return (
        stack.status == FAILED
        and stack.action in (CREATE, UPDATE)
        and not stack.disable_rollback
        and stack.status_reason != cancelled_reason(stack.action)
    )


def resume_lost_rollback(engine: Engine, name: str) -> bool:
    """Start the rollback of a failure whose rollback never started; whether it did."""
    stack = engine.store.get_stack(name)
    if stack is None or not rollback_lost(stack):
        return False
    failed = stack.traversal

    def roll_back(current: StackRecord) -> StackRecord:
        if current.traversal != failed:
            return current  # something newer started meanwhile
        return converge(engine, current, current.prev_template, ROLLBACK)

    return _retry(roll_back, engine, name).traversal != failed


def _retry(start: Callable[[StackRecord], StackRecord], engine: Engine, name: str) -> StackRecord:
    while True:
        try:
            return start(_get(engine, name))
        except Conflict:
            continue


# -- stack state after the start -----------------------------------------------------------------


def start_reason(action: str) -> str:
    """The status reason of a stack whose traversal of `action` has started."""
    return f"Stack {action} started"


def write_stack_state(
    engine: Engine,
    name: str,
    traversal: str,
    change: Callable[[StackRecord], StackRecord | None],
) -> StackRecord | None:
    """Apply `change` to the stack by compare-and-set if `traversal` is still current.

    Returns the stored record, or None when the traversal is stale or `change`
    declined (returned None).
    """
    while True:
        stack = engine.store.get_stack(name)
        if stack is None or stack.traversal != traversal:
            return None
        changed = change(stack)
        if changed is None:
            return None
        try:
            return engine.store.update_stack(changed)
        except Conflict:
            continue


def stop_traversal(engine: Engine, name: str, traversal: str, reason: str) -> StackRecord | None:
    """Fail the current traversal: a new traversal id with an empty graph, `*_FAILED`."""
    return write_stack_state(
        engine,
        name,
        traversal,
        lambda s: replace(
            s,
            traversal=engine.new_id(),
            graph=Graph.empty(),
            status=FAILED,
            status_reason=reason,
        ),
    )


def mark_failed(engine: Engine, name: str, traversal: str, reason: str) -> bool:
    """Fail the traversal and roll back if enabled; False if a newer traversal owns the stack."""
    failed = stop_traversal(engine, name, traversal, reason)
    if failed is None:
        return False
    if not failed.disable_rollback and failed.action in (CREATE, UPDATE):
        _retry(lambda s: converge(engine, s, s.prev_template, ROLLBACK), engine, name)
    return True


def timed_out(stack: StackRecord, now: float) -> bool:
    """Whether the stack's operation has run past its timeout."""
    return (
        stack.status == IN_PROGRESS
        and stack.timeout is not None
        and now > stack.started_at + stack.timeout
    )


def check_timeout(engine: Engine, name: str) -> bool:
    """Fail the stack's operation with "Timed out" if it is past its deadline (a watchdog)."""
    stack = engine.store.get_stack(name)
    if stack is None or not timed_out(stack, engine.clock.now()):
        return False
    return mark_failed(engine, name, stack.traversal, "Timed out")


def root_done(engine: Engine, name: str, traversal: str, graph: Graph) -> StackRecord | None:
    """Called after a root pushed to the stack sync point: mark ready / complete if all did.

    A root steps again after its traversal is over (a wake-up by a later event
    finds it done and pushes again), and the last roots of a traversal push at
    about the same time: the stack is read first, one worker at a time, and
    only a traversal still in progress lists its records for strays. Listing
    them on each such push cost a LIST of the whole stack per push (113 LISTs
    after an update of 300; 18 during an update of 1000).
    """
    entries = engine.store.stack_sync_point(name)
    every_root = is_satisfied(entries, graph.roots, traversal)
    update_roots = bool(graph.update_roots) and is_satisfied(entries, graph.update_roots, traversal)
    if not every_root and not update_roots:
        return None
    # The last roots push at about the same time, and each found every root arrived:
    # this engine's workers take turns, and the ones after the first find it done.
    with engine.one_at_a_time(f"root-done/{name}"):
        stack = engine.store.get_stack(name)
        if stack is None or stack.traversal != traversal or stack.status != IN_PROGRESS:
            return None  # over (or superseded) already
        if every_root:
            strays = stray_records(engine, name, traversal, graph)
            if strays:
                # Made by a step of an older traversal that had not yet seen this one
                # start: no node of this traversal cleans them up, so a new traversal
                # of the same operation does (the rest is converged already).
                return restart_operation(engine, name, traversal)
            return _finish(engine, name, traversal, complete=True)
        if not stack.ready:
            return _finish(engine, name, traversal, complete=False)
        return None


def stray_records(engine: Engine, name: str, traversal: str, graph: Graph) -> list[str]:
    """Ids of the stack's records that no node of `traversal`'s graph covers.

    A replacement this traversal made stands in for the record it replaces.
    """
    return [
        record.id
        for record in engine.store.list_resources(name)
        if update_node(record.id) not in graph
        and cleanup_node(record.id) not in graph
        and not replaced_in(record, traversal)
    ]


def restart_operation(engine: Engine, name: str, traversal: str) -> StackRecord:
    """Start `traversal`'s operation again in a new traversal, unless it is over or superseded."""
    return _retry(lambda s: _reconverge(engine, s, traversal), engine, name)


def _reconverge(engine: Engine, stack: StackRecord, traversal: str) -> StackRecord:
    if stack.traversal != traversal or stack.status != IN_PROGRESS:
        return stack  # a newer traversal took over: it covers the strays
    return converge(engine, stack, stack.template, stack.action)


def _outputs(engine: Engine, stack: StackRecord) -> dict[str, Any]:
    definition = engine.definition(stack_ref(stack), stack.template)
    data: dict[str, ResourceData] = {}
    for record in engine.store.list_resources(stack.name):
        if record.converged == stack.traversal and record.name in definition.resources:
            data[record.name] = ResourceData(record.reference_id, dict(record.attributes))
    try:
        return definition.resolve_outputs(data)
    except Exception as exc:  # an output that cannot be resolved must not block completion
        return {"error": f"{type(exc).__name__}: {exc}"}


def _finish(engine: Engine, name: str, traversal: str, *, complete: bool) -> StackRecord | None:
    def change(stack: StackRecord) -> StackRecord | None:
        if stack.status != IN_PROGRESS or (stack.ready and not complete):
            return None
        updated = stack
        if not stack.ready:
            # In service: this template becomes the one a rollback returns to.
            updated = replace(
                updated,
                ready=True,
                prev_template=stack.template,
                outputs=_outputs(engine, stack) if stack.action != DELETE else {},
            )
        if complete:
            updated = replace(
                updated,
                status=COMPLETE,
                status_reason=f"Stack {stack.action} completed successfully",
            )
        return updated

    return write_stack_state(engine, name, traversal, change)
