"""check_resource: one worker step on one node of a traversal.

A step reads the stack, the node's record and its sync point, then does one
thing and records it: start an action (create, update in place, replace,
delete), poll an action in flight once, or finish a node and push its data to
its successors' sync points. It returns whether the same message should be
delivered again after a delay (an action is still running). Steps are
level-triggered and idempotent, so a message delivered twice, or again after
the worker died between two writes, does no harm: the record says how far the
node got, and a create is retried under the same physical name.

Traversals and locks: a record's `lock` names the traversal whose action is in
flight on it. A newer traversal never interrupts it: its node waits, the action
finishes under the old traversal's messages, and then the node is triggered
again in the newest traversal. Messages of a stale traversal that hold no lock
are dropped.

Replacement: when an update cannot be done in place, a new record replacing
the old one is created (its id derived from the old id and the traversal, so a
retried step finds it) and triggered in the same traversal; it stands in for
the old record's update node (same predecessors, same sync point, same
successors), and the old record is deleted later by its cleanup node.

Retain: a cleanup node whose record has `deletion_policy: Retain` does not
delete the physical resource; it calls the type's `retain` hook (e.g. strip
what ties it to the stack) and drops the record. `repair_drift` (below) is not
a step: the operator calls it periodically on stacks at rest.

Secrets: properties are stored as resolved, with secret references in them;
a type is given them with the references revealed (`_validated`, see
engine/sensitive.py), and a failure reason never shows a revealed value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from convergence.operator.engine import operations, sync_point
from convergence.operator.engine.graph import Graph, Node, cleanup_node, update_node
from convergence.operator.engine.hot.definition import ALL_ATTRIBUTES, ResourceData
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.operations import replacement_id
from convergence.operator.engine.outcome import (
    ActionResult,
    Outcome,
    StepOutcome,
    acted,
)
from convergence.operator.engine.plugin import (
    PropertiesModel,
    ResourceContext,
    ResourceFailure,
    ResourceType,
    changed_properties,
)
from convergence.operator.engine.sensitive import Revealed, reveal
from convergence.operator.engine.store import (
    COMPLETE,
    CREATE,
    DELETE,
    FAILED,
    IN_PROGRESS,
    INIT,
    UPDATE,
    Conflict,
    NodeData,
    NotFound,
    PendingAction,
    ResourceRecord,
    StackRecord,
)
from convergence.operator.engine.wiring import Engine


@dataclass(frozen=True)
class StepReport:
    """What one step did, for the operator (metrics, conditions, Events), traces and tests."""

    message: NodeMessage
    outcome: StepOutcome
    resource: str | None = None
    inputs: dict[str, str | None] = field(default_factory=dict)
    pushed: list[str] = field(default_factory=list)
    triggered: list[str] = field(default_factory=list)
    poll_after: float | None = None

    def __str__(self) -> str:
        parts = [f"{self.message.node.kind} {self.resource or self.message.node.record_id[:8]}"]
        parts.append(f"[{self.message.traversal[:8]}]: {self.outcome}")
        if self.inputs:
            parts.append("inputs " + ", ".join(f"{k}={v}" for k, v in sorted(self.inputs.items())))
        if self.pushed:
            parts.append("pushed to " + ", ".join(self.pushed))
        if self.triggered:
            parts.append("triggered " + ", ".join(self.triggered))
        if self.poll_after is not None:
            parts.append(f"poll again in {self.poll_after:g}s")
        return "; ".join(parts)


def check_resource(engine: Engine, message: NodeMessage) -> StepReport:
    """Run one step of one node; report.poll_after says when to deliver the message again."""
    step = _Step(engine, message)
    try:
        step.run()
    except Conflict:
        # Someone wrote the record between our read and our write: look again.
        step.outcome = StepOutcome(Outcome.CONFLICT)
        step.poll_after = 0.0
    return step.finished()


def messages_for_record(
    stack: StackRecord | None, record_id: str, record: ResourceRecord | None
) -> list[NodeMessage]:
    """The node messages a wake-up of one record runs now, in this order.

    A watch event or a retry names a record, not a node (the operator's work
    queue is keyed by record): its update and cleanup nodes in the stack's
    current traversal, and first, when an action of an older traversal holds
    the record, the node of that action in its own traversal, which finishes
    it and then re-enters the newest one. Steps of messages that do not apply
    drop them, so the update and cleanup nodes are both tried.
    """
    if stack is None or not stack.traversal:
        return []
    messages = [
        NodeMessage(stack.name, stack.traversal, update_node(record_id)),
        NodeMessage(stack.name, stack.traversal, cleanup_node(record_id)),
    ]
    if record is not None and record.lock and record.lock != stack.traversal:
        deleting = record.pending is not None and record.pending.action == DELETE
        node = cleanup_node(record_id) if deleting else update_node(record_id)
        messages.insert(0, NodeMessage(stack.name, record.lock, node))
    return messages


class _Step:
    """The state of one check_resource step (one message, read once)."""

    def __init__(self, engine: Engine, message: NodeMessage) -> None:
        self.engine = engine
        self.store = engine.store
        self.message = message
        self.traversal = message.traversal
        # What the step did, reported by finished().
        self.outcome: StepOutcome | None = None
        self.resource: str | None = None
        self.inputs: dict[str, str | None] = {}
        self.pushed: list[str] = []
        self.triggered: list[str] = []
        self.poll_after: float | None = None
        # Secret values put into properties in this step (scrubbed out of failure reasons).
        self.revealed = Revealed()

    # -- entry ---------------------------------------------------------------------------------

    def finished(self) -> StepReport:
        """The report of the step (every way through run() decides an outcome)."""
        assert self.outcome is not None, f"step of {self.message} decided no outcome"
        return StepReport(
            self.message,
            self.outcome,
            self.resource,
            self.inputs,
            self.pushed,
            self.triggered,
            self.poll_after,
        )

    def run(self) -> None:
        stack = self.store.get_stack(self.message.stack)
        if stack is None:
            self.outcome = StepOutcome(Outcome.STACK_GONE)
            return
        node = self.message.node
        record = self.store.get_resource(node.record_id)
        if record is not None:
            self.resource = record.name

        if stack.traversal != self.traversal:
            if record is not None and record.lock == self.traversal:
                # Never interrupted: finish the action, then re-enter the newest traversal.
                self._continue_action(stack, record, current=False)
            else:
                self.outcome = StepOutcome(Outcome.STALE_TRAVERSAL)
            return

        if operations.timed_out(stack, self.engine.clock.now()):
            operations.mark_failed(self.engine, stack.name, self.traversal, "Timed out")
            if record is not None and record.lock == self.traversal:
                # The traversal is over, the action is not: let it finish.
                self._continue_action(stack, record, current=False)
                if self.outcome is not None:
                    self.outcome = replace(self.outcome, timed_out=True)
            else:
                self.outcome = StepOutcome(Outcome.TIMED_OUT, timed_out=True)
            return

        graph_node = self._graph_node(stack.graph, node, record)
        if graph_node is None:
            self.outcome = StepOutcome(Outcome.NOT_IN_GRAPH)
            return
        if record is None:
            if node.is_update:
                self.outcome = StepOutcome(Outcome.RECORD_GONE)
            else:
                # Deleted already (by this step before it died, or by an older traversal).
                self.outcome = StepOutcome(Outcome.ALREADY_DELETED)
                self._propagate(stack, graph_node, None)
            return
        if record.lock is not None:
            if record.lock == self.traversal:
                self._continue_action(stack, record, current=True)
            else:
                # The holder re-triggers this node when its action ends.
                self.outcome = StepOutcome(Outcome.BUSY, busy_with=record.lock)
            return

        predecessors = stack.graph.predecessors(graph_node)
        entries = sync_point.read(self.store, graph_node)
        if not sync_point.is_satisfied(entries, predecessors, self.traversal):
            missing = sync_point.waiting_for(entries, predecessors, self.traversal)
            self.outcome = StepOutcome(Outcome.WAITING, waiting_for=tuple(missing))
            return
        if self.store.current_traversal(stack.name) != self.traversal:
            # The stack read above may come from a cache that has not seen a newer
            # traversal start: never act for a stale one (the newer one covers this node).
            self.outcome = StepOutcome(Outcome.STALE_TRAVERSAL)
            return
        if graph_node.is_update:
            inputs = sync_point.input_data(entries, predecessors, self.traversal)
            self._check_update(stack, record, graph_node, inputs)
        else:
            self._check_cleanup(stack, record, graph_node)

    def _graph_node(self, graph: Graph, node: Node, record: ResourceRecord | None) -> Node | None:
        if node in graph:
            return node
        # A replacement made in this traversal stands in for the update node of the
        # record it replaces (only update nodes: its cleanup belongs to a later traversal).
        # One an older traversal made does not: it is only cleaned up, if at all.
        if (
            node.is_update
            and record is not None
            and record.replaces is not None
            and operations.replaced_in(record, self.traversal)
        ):
            stand_in = Node(record.replaces, node.is_update)
            if stand_in in graph:
                return stand_in
        return None

    # -- update nodes --------------------------------------------------------------------------

    def _check_update(
        self,
        stack: StackRecord,
        record: ResourceRecord,
        graph_node: Node,
        inputs: Mapping[str, NodeData],
    ) -> None:
        self.inputs = {name: data.reference_id for name, data in inputs.items()}
        if record.replaced_by == replacement_id(record.id, self.traversal):
            self.outcome = StepOutcome(Outcome.REPLACED_ALREADY)
            definition = self.engine.definition(operations.stack_ref(stack), stack.template)
            # The replacement is made after the mark: a step that died in between left none.
            self._make_replacement(stack, record, definition.resources[record.name].type)
            return
        if record.converged == self.traversal and record.status == COMPLETE:
            self.outcome = StepOutcome(Outcome.DONE_ALREADY)
            self._propagate(stack, graph_node, self._node_data(record))
            return

        definition = self.engine.definition(operations.stack_ref(stack), stack.template)
        resource = definition.resources[record.name]
        data = {n: ResourceData(d.reference_id, dict(d.attributes)) for n, d in inputs.items()}
        requires = frozenset(d.record_id for d in inputs.values())
        action = CREATE if record.action == INIT else UPDATE
        pending = PendingAction(
            action=action,
            traversal=self.traversal,
            template=stack.template,
            requires=requires,
            deletion_policy=resource.deletion_policy,
        )
        try:
            plugin_type = self.engine.types.get(resource.type)
            raw = definition.resolve_properties(record.name, data)
            properties = self._validated(plugin_type, raw, stack.name)
        except Exception as exc:
            self._fail(stack, record, action, _reason(exc), pending, current=True)
            return
        pending = replace(pending, properties=raw)

        if record.deletion_requested:
            self._replace(stack, record, resource.type)
            return
        if record.action == INIT:
            self._start(
                stack, replace(record, type=resource.type), pending, plugin_type, properties
            )
            return
        if record.status == FAILED or record.type != resource.type or record.action == DELETE:
            self._replace(stack, record, resource.type)
            return
        before = self._applied_properties(plugin_type, record)
        changed = changed_properties(before, properties) if before is not None else frozenset()
        plugin = plugin_type(self._context(stack, record), properties)
        if (
            before is None
            or any(not plugin_type.updatable(name) for name in changed)
            or plugin.needs_replace(before, changed)
        ):
            self._replace(stack, record, resource.type)
            return
        if changed:
            self._start(stack, record, pending, plugin_type, properties)
            return
        # Nothing to change: record that the record is at this template, then move on.
        unchanged = StepOutcome(Outcome.UNCHANGED)
        self._complete(stack, record, pending, plugin_type, plugin, True, unchanged)

    def _validated(
        self, plugin_type: type[ResourceType], raw: Mapping[str, Any], stack_name: str
    ) -> PropertiesModel:
        """Resolved properties as the type gets them: secret references revealed, validated.

        What is stored stays `raw`, with the references (see engine/sensitive.py).
        """
        return plugin_type.validate_properties(
            reveal(raw, stack_name, self.engine.secrets, self.revealed)
        )

    def _applied_properties(
        self, plugin_type: type[ResourceType], record: ResourceRecord
    ) -> PropertiesModel | None:
        try:
            return self._validated(plugin_type, record.properties or {}, record.stack)
        except Exception:
            return None  # what was applied no longer fits the type: replace

    def _replace(self, stack: StackRecord, record: ResourceRecord, type_name: str) -> None:
        """Mark the record replaced in this traversal, then make its replacement.

        In this order: a replacement's update node runs as soon as the record
        exists (its own watch event wakes it), so one must never exist while
        the mark on the record it replaces can still be lost to a concurrent
        write, which would let this record be updated in place as well.
        """
        new_id = replacement_id(record.id, self.traversal)
        self.store.update_resource(replace(record, replaced_by=new_id))
        self._make_replacement(stack, record, type_name)
        self.outcome = StepOutcome(Outcome.REPLACEMENT_CREATED, replacement=new_id)

    def _make_replacement(self, stack: StackRecord, record: ResourceRecord, type_name: str) -> None:
        """The record replacing `record` in this traversal, made if missing, and its node run."""
        new_id = replacement_id(record.id, self.traversal)
        if self.store.get_resource(new_id) is None:
            self.store.create_resource(
                ResourceRecord(
                    id=new_id,
                    stack=stack.name,
                    name=record.name,
                    type=type_name,
                    created_at=self.engine.clock.now(),
                    template=stack.template,
                    replaces=record.id,
                )
            )
        self._trigger(stack.name, update_node(new_id))

    # -- cleanup nodes -------------------------------------------------------------------------

    def _check_cleanup(self, stack: StackRecord, record: ResourceRecord, graph_node: Node) -> None:
        if update_node(record.id) in stack.graph and record.replaced_by is None:
            self.outcome = StepOutcome(Outcome.KEPT)
            self._propagate(stack, graph_node, None)
            return
        if record.action == INIT or record.deletion_policy == "Retain":
            # Nothing physical to delete (never created), or it must be left alone.
            if record.action != INIT and not self._retain(stack, record):
                return
            # Push first: once the record is gone nothing would wake this node again.
            self._propagate(stack, graph_node, None)
            self.store.delete_resource(record)
            self.outcome = StepOutcome(Outcome.RECORD_DELETED, retained=record.action != INIT)
            return
        pending = PendingAction(action=DELETE, traversal=self.traversal)
        plugin_type = self.engine.types.get(record.type)
        self._start(
            stack, record, pending, plugin_type, self._delete_properties(plugin_type, record)
        )

    def _retain(self, stack: StackRecord, record: ResourceRecord) -> bool:
        """Let the type release a resource it keeps (Retain); False if that failed."""
        plugin_type = self.engine.types.get(record.type)
        context = self._context(stack, record)
        plugin = plugin_type(context, self._delete_properties(plugin_type, record))
        try:
            plugin.retain()
        except Exception as exc:
            pending = PendingAction(action=DELETE, traversal=self.traversal)
            self._fail(stack, record, DELETE, _reason(exc), pending, True, context)
            return False
        return True

    def _delete_properties(
        self, plugin_type: type[ResourceType], record: ResourceRecord
    ) -> PropertiesModel:
        try:
            return self._validated(plugin_type, record.properties or {}, record.stack)
        except Exception:
            # A delete must still run with whatever was applied.
            return plugin_type.Properties.model_construct(**dict(record.properties or {}))

    # -- actions -------------------------------------------------------------------------------

    def _context(self, stack: StackRecord, record: ResourceRecord) -> ResourceContext:
        return ResourceContext(
            stack=operations.stack_ref(stack),
            name=record.name,
            record_id=record.id,
            clock=self.engine.clock,
            reality=self.engine.reality,
            data=dict(record.data),
            resource_id=record.resource_id,
            objects=self.engine.objects.for_stack(stack.name) if self.engine.objects else None,
            secrets=self.engine.secrets,
        )

    def _start(
        self,
        stack: StackRecord,
        record: ResourceRecord,
        pending: PendingAction,
        plugin_type: type[ResourceType],
        properties: PropertiesModel,
    ) -> None:
        """Take the lock and record the action, then start it and record its cookie."""
        locked = replace(
            record,
            action=pending.action,
            status=IN_PROGRESS,
            status_reason="state changed",
            lock=self.traversal,
            pending=pending,
            requires=pending.requires | record.requires
            if pending.action == UPDATE
            else (pending.requires if pending.action == CREATE else record.requires),
            replaced_by=None if pending.action == UPDATE else record.replaced_by,
        )
        locked = self.store.update_resource(locked)
        self._begin(stack, locked, plugin_type, properties, current=True)

    def _begin(
        self,
        stack: StackRecord,
        record: ResourceRecord,
        plugin_type: type[ResourceType],
        properties: PropertiesModel,
        *,
        current: bool,
    ) -> None:
        pending = record.pending
        assert pending is not None
        context = self._context(stack, record)
        plugin = plugin_type(context, properties)
        try:
            if pending.action == CREATE:
                cookie = plugin.create()
            elif pending.action == UPDATE:
                before = self._applied_properties(plugin_type, record)
                assert before is not None
                cookie = plugin.update(before, changed_properties(before, properties))
            else:
                cookie = plugin.delete()
            # As Heat does, the first check comes at once: an action done already
            # (most are) is recorded complete in one write, without waiting a poll.
            done = _is_complete(plugin, pending.action, cookie)
        except Exception as exc:
            self._fail(stack, record, pending.action, _reason(exc), pending, current, context)
            return
        if done:
            started = replace(pending, started=True, cookie=cookie)
            self._finish(stack, replace(record, pending=started), plugin_type, plugin, current)
            return
        self.store.update_resource(
            replace(
                record,
                pending=replace(pending, started=True, cookie=cookie),
                data=dict(context.data),
                resource_id=context.resource_id,
            )
        )
        self.outcome = acted(pending.action, ActionResult.STARTED)
        self.poll_after = self.engine.poll_interval

    def _continue_action(
        self, stack: StackRecord, record: ResourceRecord, *, current: bool
    ) -> None:
        pending = record.pending
        assert pending is not None
        plugin_type = self.engine.types.get(record.type)
        if pending.action == DELETE:
            properties = self._delete_properties(plugin_type, record)
        else:
            try:
                properties = self._validated(plugin_type, pending.properties or {}, record.stack)
            except Exception as exc:
                self._fail(stack, record, pending.action, _reason(exc), pending, current)
                return
        if not pending.started:
            # The worker died after taking the lock: start again (creates are idempotent).
            self._begin(stack, record, plugin_type, properties, current=current)
            if self.outcome is not None and self.outcome.action is not None:
                self.outcome = replace(
                    self.outcome, action=replace(self.outcome.action, again=True)
                )
            return
        context = self._context(stack, record)
        plugin = plugin_type(context, properties)
        try:
            done = _is_complete(plugin, pending.action, pending.cookie)
        except Exception as exc:
            self._fail(stack, record, pending.action, _reason(exc), pending, current, context)
            return
        if not done:
            if dict(context.data) != dict(record.data) or context.resource_id != record.resource_id:
                self.store.update_resource(
                    replace(record, data=dict(context.data), resource_id=context.resource_id)
                )
            self.outcome = acted(pending.action, ActionResult.IN_PROGRESS)
            self.poll_after = self.engine.poll_interval
            return
        self._finish(stack, record, plugin_type, plugin, current)

    def _finish(
        self,
        stack: StackRecord,
        record: ResourceRecord,
        plugin_type: type[ResourceType],
        plugin: ResourceType,
        current: bool,
    ) -> None:
        """Record the end of the record's pending action (complete), and push on."""
        pending = record.pending
        assert pending is not None
        if pending.action == DELETE:
            # The successors hear of it before the record goes: a worker that dies
            # in between finds the record again and pushes again (pushes are
            # idempotent), whereas a deleted record would never wake this node.
            if current:
                self._propagate(stack, cleanup_node(record.id), None)
            self.store.delete_resource(record)
            self.outcome = acted(DELETE, ActionResult.COMPLETE)
            if not current:
                self._reenter_newest(stack.name, record)
            return
        self._complete(
            stack,
            record,
            pending,
            plugin_type,
            plugin,
            current,
            acted(pending.action, ActionResult.COMPLETE),
        )

    def _complete(
        self,
        stack: StackRecord,
        record: ResourceRecord,
        pending: PendingAction,
        plugin_type: type[ResourceType],
        plugin: ResourceType,
        current: bool,
        outcome: StepOutcome,
    ) -> None:
        """Record a finished create/update (reading the referenced attributes once), push on."""
        context = plugin.context
        wanted = self.engine.definition(operations.stack_ref(stack), pending.template)
        names = wanted.required_attributes(record.name) if record.name in wanted.resources else ()
        if ALL_ATTRIBUTES in names:
            names = frozenset(plugin_type.attributes_schema)
        # A value revealed to the type in this step is stored as its reference again.
        attributes = self.revealed.hide(
            {name: plugin.get_attribute(name) for name in sorted(names)}
        )
        completed = self.store.update_resource(
            replace(
                record,
                status=COMPLETE,
                status_reason="state changed",
                action=record.action if record.action != INIT else CREATE,
                lock=None,
                pending=None,
                template=pending.template,
                properties=dict(pending.properties or {}),
                requires=pending.requires,
                deletion_policy=pending.deletion_policy,
                replaced_by=None,
                data=dict(context.data),
                resource_id=context.resource_id,
                reference_id=self.revealed.hide(plugin.reference_id()),
                attributes=attributes,
                converged=pending.traversal,
            )
        )
        self.outcome = outcome
        if current:
            graph_node = self._graph_node(stack.graph, update_node(record.id), record)
            assert graph_node is not None
            self._propagate(stack, graph_node, self._node_data(completed))
        else:
            self._reenter_newest(stack.name, completed)

    def _fail(
        self,
        stack: StackRecord,
        record: ResourceRecord,
        action: str,
        reason: str,
        pending: PendingAction,
        current: bool,
        context: ResourceContext | None = None,
    ) -> None:
        """Record the failure on the record, then fail the traversal (or re-enter a newer one)."""
        reason = self.revealed.scrub(reason)
        self.store.update_resource(
            replace(
                record,
                action=action,
                status=FAILED,
                status_reason=reason,
                lock=None,
                pending=None,
                requires=record.requires | pending.requires,
                data=dict(context.data) if context else record.data,
                resource_id=context.resource_id if context else record.resource_id,
            )
        )
        self.outcome = acted(action, ActionResult.FAILED, reason)
        handled = current and operations.mark_failed(
            self.engine, stack.name, self.traversal, f"Resource {action} failed: {reason}"
        )
        if not handled:
            self._reenter_newest(stack.name, record)

    # -- propagation ---------------------------------------------------------------------------

    @staticmethod
    def _node_data(record: ResourceRecord) -> NodeData:
        return NodeData(record.id, record.name, record.reference_id, dict(record.attributes))

    def _propagate(self, stack: StackRecord, graph_node: Node, data: NodeData | None) -> None:
        """Push to every successor's sync point; trigger those now satisfied; tell the stack.

        A successor that has this node's entry of this traversal already heard of
        it when that push was made (and was triggered then, or is woken again by
        a restart's listing): it is neither written nor triggered again. A node
        that runs again (done already, kept) would otherwise wake its successors
        again, and with the operator running both nodes of a record per wake-up,
        an update's update and cleanup nodes would keep waking each other.
        """
        graph = stack.graph
        for successor in sorted(graph.successors(graph_node), key=lambda n: (n.is_update, n)):
            try:
                if sync_point.has_pushed(
                    sync_point.read(self.store, successor), graph_node, self.traversal
                ):
                    continue
                entries = sync_point.push(
                    self.store,
                    successor,
                    graph_node,
                    self.traversal,
                    data if successor.is_update else None,
                )
            except NotFound:
                continue  # deleted by an older traversal: it has nothing left to wait for
            self.pushed.append(str(successor))
            if sync_point.is_satisfied(entries, graph.predecessors(successor), self.traversal):
                self._trigger(stack.name, successor)
        if graph_node in graph.roots or graph_node in graph.update_roots:
            if not sync_point.has_pushed(
                self.store.stack_sync_point(stack.name), graph_node, self.traversal
            ):
                sync_point.push_stack(self.store, stack.name, graph_node, self.traversal)
                self.pushed.append("stack")
            operations.root_done(self.engine, stack.name, self.traversal, graph)

    def _trigger(self, stack_name: str, node: Node, traversal: str | None = None) -> None:
        message = NodeMessage(stack_name, traversal or self.traversal, node)
        self.engine.dispatcher.trigger(message)
        self.triggered.append(str(node))

    def _reenter_newest(self, stack_name: str, record: ResourceRecord) -> None:
        """After a stale action ended: run this record's node in the newest traversal."""
        stack = self.store.get_stack(stack_name)
        if stack is None:
            return
        for record_id in (record.id, record.replaces):
            if record_id is None:
                continue
            for node in (update_node(record_id), cleanup_node(record_id)):
                if node in stack.graph:
                    self._trigger(stack_name, node, stack.traversal)
                    return


@dataclass(frozen=True)
class Drift:
    """What `repair_drift` found on one resource: `message` says what drifted and what was done."""

    resource: str
    record_id: str
    type: str
    message: str
    repaired: bool = True


def repair_drift(engine: Engine, stack_name: str) -> list[Drift]:
    """Heat's "observe reality" between traversals: put back what others changed.

    Only a stack at rest is looked at (its traversal COMPLETE), and only the
    records its traversal converged and that no action holds; each type's
    `repair_drift` compares its physical resource with the applied properties
    and restores it. The stack is read again before each resource, so a
    traversal starting meanwhile stops the round (it converges everything
    anyway). Data a repair changes (e.g. the uid of a recreated object) is
    recorded. Returns what drifted, for Events and conditions.
    """
    drifts: list[Drift] = []
    stack = engine.store.get_stack(stack_name)
    if stack is None:
        return drifts
    traversal = stack.traversal
    for record in engine.store.list_resources(stack_name):
        stack = engine.store.get_stack(stack_name)
        if stack is None or stack.traversal != traversal or stack.status != COMPLETE:
            break
        if (
            record.status != COMPLETE
            or record.action not in (CREATE, UPDATE)
            or record.lock is not None
            or record.replaced_by is not None
            or record.converged != traversal
            or update_node(record.id) not in stack.graph
        ):
            continue
        step = _Step(engine, NodeMessage(stack_name, traversal, update_node(record.id)))
        context = step._context(stack, record)
        try:
            plugin_type = engine.types.get(record.type)
            plugin = plugin_type(
                context, step._validated(plugin_type, record.properties or {}, stack_name)
            )
            message = plugin.repair_drift()
        except Exception as exc:
            drifts.append(
                Drift(record.name, record.id, record.type, f"repair failed: {_reason(exc)}", False)
            )
            continue
        if dict(context.data) != dict(record.data) or context.resource_id != record.resource_id:
            # Lost to a concurrent step: the next round looks again.
            with contextlib.suppress(Conflict, NotFound):
                engine.store.update_resource(
                    replace(record, data=dict(context.data), resource_id=context.resource_id)
                )
        if message:
            drifts.append(Drift(record.name, record.id, record.type, message))
    return drifts


def _is_complete(plugin: ResourceType, action: str, cookie: Any) -> bool:
    """The type's check_*_complete for `action`."""
    if action == CREATE:
        return plugin.check_create_complete(cookie)
    if action == UPDATE:
        return plugin.check_update_complete(cookie)
    return plugin.check_delete_complete(cookie)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ResourceFailure):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
