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
what ties it to the stack) and drops the record. `repair_drift` (drift.py) is not
a step (drift.py): the operator calls it periodically on stacks at rest.

Secrets: properties are stored as resolved, with secret references in them;
a type is given them with the references revealed (`_validated`, see
engine/sensitive.py), and a failure reason never shows a revealed value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from convergence.operator.engine import operations, sync_point
from convergence.operator.engine.actions import ResourceActions, failure_reason
from convergence.operator.engine.decision import UpdateKind, decide_update
from convergence.operator.engine.graph import Node, cleanup_node, update_node
from convergence.operator.engine.hot.definition import ResourceData
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.outcome import (
    Outcome,
    StepOutcome,
)
from convergence.operator.engine.record_ids import replacement_id
from convergence.operator.engine.store import (
    COMPLETE,
    CREATE,
    DELETE,
    INIT,
    UPDATE,
    AlreadyExists,
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
        parts = [f"{self.message.node.kind} {self.resource or self.message.node.record_id}"]
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


class _Step(ResourceActions):
    """One check_resource step: which node runs, and what it decides (see the module)."""

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
                self._update_record_gone(stack, node)
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
        if graph_node.is_update:
            inputs = sync_point.input_data(entries, predecessors, self.traversal)
            self._check_update(stack, record, graph_node, inputs)
        else:
            self._check_cleanup(stack, record, graph_node)

    def _stale(self, stack: StackRecord) -> bool:
        """The traversal fence, right before a node acts (outcome STALE_TRAVERSAL if stale).

        The stack read at the step's start may come from a cache that has not
        seen a newer traversal start: never act for a stale one (the newer one
        covers this node). A node that only pushes on (done already, kept) needs
        no fence: a push is keyed by its traversal, so a stale one is ignored;
        and those are most steps (each write of a record wakes it again).
        """
        if self.store.is_current(stack.name, self.traversal):
            return False
        self.outcome = StepOutcome(Outcome.STALE_TRAVERSAL)
        return True

    # -- update nodes --------------------------------------------------------------------------

    def _update_record_gone(self, stack: StackRecord, node: Node) -> None:
        """An update node whose record no longer exists.

        Replaced in this traversal, the record's replacement stands in for it and
        the message is stale. Otherwise a step of an older traversal that had passed
        its traversal fence deleted the record after this traversal chose it (a
        cleanup's delete is never interrupted): this node can never push, so the
        traversal would wait for ever. The operation starts again, choosing among
        the records there are now (the rest of it is converged already).
        """
        if self.store.get_resource(replacement_id(node.record_id, self.traversal)) is not None:
            self.outcome = StepOutcome(Outcome.RECORD_GONE)
            return
        operations.restart_operation(self.engine, stack.name, self.traversal)
        self.outcome = StepOutcome(Outcome.RECORD_LOST)

    def _check_update(
        self,
        stack: StackRecord,
        record: ResourceRecord,
        graph_node: Node,
        inputs: Mapping[str, NodeData],
    ) -> None:
        self.inputs = {name: data.reference_id for name, data in inputs.items()}
        if record.converged == self.traversal and record.status == COMPLETE:
            self.outcome = StepOutcome(Outcome.DONE_ALREADY)
            self._propagate(stack, graph_node, self._node_data(record))
            return
        if self._stale(stack):
            return
        if record.replaced_by == replacement_id(record.id, self.traversal):
            self.outcome = StepOutcome(Outcome.REPLACED_ALREADY)
            definition = self.engine.definition(operations.stack_ref(stack), stack.template)
            # The replacement is made after the mark: a step that died in between left none.
            self._make_replacement(stack, record, definition.resources[record.name].type)
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
            self._unless_unavailable(exc)
            self._fail(stack, record, action, failure_reason(exc), pending, current=True)
            return
        pending = replace(pending, properties=raw)

        plugin = plugin_type(self._context(stack, record), properties)
        decision = decide_update(
            record, resource.type, lambda: self._applied_properties(plugin_type, record), plugin
        )
        if decision.kind is UpdateKind.REPLACE:
            self._replace(stack, record, resource.type)
        elif decision.kind is UpdateKind.CREATE:
            self._start(
                stack, replace(record, type=resource.type), pending, plugin_type, properties
            )
        elif decision.kind is UpdateKind.UPDATE:
            self._start(stack, record, pending, plugin_type, properties)
        else:
            # Nothing to change: record that the record is at this template, then move on.
            unchanged = StepOutcome(Outcome.UNCHANGED)
            self._complete(stack, record, pending, plugin_type, plugin, True, unchanged)

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
            # Made meanwhile by another worker or replica stepping this node: the same id.
            with contextlib.suppress(AlreadyExists):
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
        if self._stale(stack):
            return
        if record.action == INIT or record.deletion_policy == "Retain":
            # Nothing physical to delete (never created), or it must be left alone.
            if record.action != INIT and not self._retain(stack, record):
                return
            # Push first: once the record is gone nothing would wake this node again.
            self._propagate(stack, graph_node, None)
            try:
                self.store.delete_resource(record)
            except NotFound:
                # Another worker or replica ran this node at the same time and deleted it.
                self.outcome = StepOutcome(Outcome.ALREADY_DELETED)
                return
            self.outcome = StepOutcome(Outcome.RECORD_DELETED, retained=record.action != INIT)
            return
        pending = PendingAction(action=DELETE, traversal=self.traversal)
        plugin_type = self.engine.types.get(record.type)
        self._start(
            stack, record, pending, plugin_type, self._delete_properties(plugin_type, record)
        )

    # -- actions -------------------------------------------------------------------------------

    # -- propagation ---------------------------------------------------------------------------
