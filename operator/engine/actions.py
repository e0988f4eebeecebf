"""A step's dealings with one resource's action: lock, start, poll, finish, push on.

`ResourceActions` is the half of a converger step (converger.py) that carries
out what the step decided about one record: take the record's lock and start
the type's create, update or delete, check at once whether it is done (as Heat
does) and otherwise poll it on later steps, record the end (complete or
failed), and push the node's data to its successors' sync points. Drift repair
(drift.py) uses the same context and properties helpers between traversals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from convergence.operator.engine import operations, sync_point
from convergence.operator.engine.decision import (
    applied_properties,
    resource_context,
    validated_properties,
)
from convergence.operator.engine.graph import Graph, Node, cleanup_node, update_node
from convergence.operator.engine.hot.definition import ALL_ATTRIBUTES
from convergence.operator.engine.messages import NodeMessage
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
    acting,
    changed_properties,
)
from convergence.operator.engine.sensitive import Revealed
from convergence.operator.engine.store import (
    COMPLETE,
    CREATE,
    DELETE,
    FAILED,
    IN_PROGRESS,
    INIT,
    UPDATE,
    NodeData,
    NotFound,
    PendingAction,
    ResourceRecord,
    StackRecord,
)
from convergence.operator.engine.wiring import Engine


class ResourceActions:
    """The state of one step (one message, read once) and what it does to a record."""

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
        # The engine's fence when the step began, before it read anything (see _fenced).
        self._fence = engine.fence()

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

    def _validated(
        self, plugin_type: type[ResourceType], raw: Mapping[str, Any], stack_name: str
    ) -> PropertiesModel:
        """Resolved properties as the type gets them (see decision.validated_properties)."""
        return validated_properties(self.engine, plugin_type, raw, stack_name, self.revealed)

    def _applied_properties(
        self, plugin_type: type[ResourceType], record: ResourceRecord
    ) -> PropertiesModel | None:
        return applied_properties(self.engine, plugin_type, record, self.revealed)

    def _retain(self, stack: StackRecord, record: ResourceRecord) -> bool:
        """Let the type release a resource it keeps (Retain); False if that failed."""
        plugin_type = self.engine.types.get(record.type)
        context = self._context(stack, record)
        plugin = plugin_type(context, self._delete_properties(plugin_type, record))
        try:
            with acting(self._may_act):
                plugin.retain()
        except Exception as exc:
            self._unless_unavailable(exc)
            pending = PendingAction(action=DELETE, traversal=self.traversal)
            self._fail(stack, record, DELETE, failure_reason(exc), pending, True, context)
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

    def _context(self, stack: StackRecord, record: ResourceRecord) -> ResourceContext:
        return resource_context(self.engine, stack, record, self._update_policy(stack, record))

    def _update_policy(self, stack: StackRecord, record: ResourceRecord) -> Mapping[str, Any]:
        """The update_policy of the definition the record's create or update converges to."""
        pending = record.pending
        if pending is None or pending.action == DELETE or pending.template is None:
            return {}
        try:
            wanted = self.engine.definition(operations.stack_ref(stack), pending.template)
        except NotFound:
            return {}  # a stale action's template may be gone; see _complete
        resource = wanted.resources.get(record.name)
        return {} if resource is None else resource.update_policy

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
            holder=self.engine.engine_id,
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
        if self._fenced():
            return
        context = self._context(stack, record)
        plugin = plugin_type(context, properties)
        try:
            with acting(self._may_act):
                if pending.action == CREATE:
                    cookie = plugin.create()
                elif pending.action == UPDATE:
                    before = self._applied_properties(plugin_type, record)
                    if before is None:
                        # A FAILED create its type updates in place (decision.py): nothing
                        # was applied, so every property changes.
                        everything = frozenset(type(properties).model_fields)
                        cookie = plugin.update(properties, everything)
                    else:
                        cookie = plugin.update(before, changed_properties(before, properties))
                else:
                    cookie = plugin.delete()
                # As Heat does, the first check comes at once: an action done already
                # (most are) is recorded complete in one write, without waiting a poll.
                done = is_complete(plugin, pending.action, cookie)
        except Exception as exc:
            self._unless_unavailable(exc)
            self._fail(
                stack, record, pending.action, failure_reason(exc), pending, current, context
            )
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

    def _held_here(self, record: ResourceRecord) -> ResourceRecord | None:
        """The record, its action held by this engine; None (outcome HELD) while another
        engine that is alive holds it.

        The holder is the engine that started the action (or took it over). A
        holder that died (its replica's Lease expired) is replaced by the first
        engine to write its own id over it: the write is conditional on the
        record's version, so of several engines taking over at once one wins and
        the others see it hold the action. A record locked before engines had
        ids has no holder: whoever steps it takes it.
        """
        holder = record.holder
        if holder == self.engine.engine_id:
            return self._as_stored(record)
        if holder is not None and self.engine.alive(holder):
            self.outcome = StepOutcome(Outcome.HELD, busy_with=holder)
            # Looked at again in case the holder dies (it pushes on when it is done).
            self.poll_after = self.engine.held_poll_interval
            return None
        return self.store.update_resource(replace(record, holder=self.engine.engine_id))

    def _fenced(self) -> bool:
        """Whether this engine must not act on reality now (outcome HELD, by itself).

        A replica whose peers may have found it dead (its Lease unrenewed too
        long: the API away, or the process frozen and resumed) may have had its
        actions taken over; acting on what this step read before could undo
        theirs. So a step acts only if the engine has been alive to its peers,
        without a break, since the step began; otherwise it looks again later.
        The type's writes are checked again as they are sent (`acting`, run
        around its action); what no check by the writer can cover is a freeze
        between that last check and the request leaving (see plugin/fencing.py).
        """
        if self._may_act():
            return False
        self.outcome = StepOutcome(Outcome.HELD, busy_with=self.engine.engine_id)
        self.poll_after = self.engine.held_poll_interval
        return True

    def _as_stored(self, record: ResourceRecord) -> ResourceRecord:
        """A record whose started action this engine holds, shown to be as stored.

        An engine that had a break (frozen, or cut off: `Engine.resumed`) reads
        its caches from before it at first. There it may still hold an action
        that a peer took over and finished meanwhile, and checking that action
        complete could write reality over the peer's. So once per fence period
        a write conditional on the record's version shows the read is current
        (a stale read fails it as a Conflict, and the step reads again). An
        action not started is always confirmed so before it starts
        (`_continue_action`).
        """
        pending = record.pending
        if not self.engine.resumed() or pending is None or not pending.started:
            return record
        if self.engine.confirmed.known(self._fence, record.id):
            return record
        stored = self.store.update_resource(record)
        self.engine.confirmed.add(self._fence, record.id)
        return stored

    def _may_act(self) -> bool:
        """Whether this engine has been alive to its peers, without a break, since the
        step began (the same period of its fence)."""
        fence = self.engine.fence()
        return fence is not None and fence == self._fence

    def _continue_action(
        self, stack: StackRecord, record: ResourceRecord, *, current: bool
    ) -> None:
        held = self._held_here(record)
        if held is None:
            return
        record = held
        pending = record.pending
        assert pending is not None
        plugin_type = self.engine.types.get(record.type)
        if pending.action == DELETE:
            properties = self._delete_properties(plugin_type, record)
        else:
            try:
                properties = self._validated(plugin_type, pending.properties or {}, record.stack)
            except Exception as exc:
                self._fail(stack, record, pending.action, failure_reason(exc), pending, current)
                return
        if self._fenced():
            return
        if not pending.started:
            # The worker died after taking the lock: start again (creates are idempotent),
            # once a write conditional on the record's version has shown that what this
            # step read is what the API holds. A replica cut off for a while (frozen,
            # partitioned) reads its stale cache at first: there, its own lock of an
            # action long over, which it must not start again over what came since.
            record = self.store.update_resource(record)
            self._begin(stack, record, plugin_type, properties, current=current)
            if self.outcome is not None and self.outcome.action is not None:
                self.outcome = replace(
                    self.outcome, action=replace(self.outcome.action, again=True)
                )
            return
        context = self._context(stack, record)
        plugin = plugin_type(context, properties)
        try:
            with acting(self._may_act):
                done = is_complete(plugin, pending.action, pending.cookie)
        except Exception as exc:
            self._unless_unavailable(exc)
            self._fail(
                stack, record, pending.action, failure_reason(exc), pending, current, context
            )
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
        names: frozenset[str] | tuple[()] = ()
        try:
            wanted = self.engine.definition(operations.stack_ref(stack), pending.template)
        except NotFound:
            if current:
                raise
            # A stale action's template may be gone (its namespace is being deleted): no
            # one reads what it would push, and the newest traversal, which this record
            # re-enters below, reads the attributes it needs itself.
        else:
            if record.name in wanted.resources:
                names = wanted.required_attributes(record.name)
        if ALL_ATTRIBUTES in names:
            names = frozenset(plugin.attribute_names())
        # A value revealed to the type in this step is stored as its reference again.
        attributes = self.revealed.hide(
            {name: plugin.get_attribute(name) for name in sorted(names)}
        )
        graph_node = self._graph_node(stack.graph, update_node(record.id), record)
        own = cleanup_node(record.id) if current else None
        if graph_node is None or own not in stack.graph.successors(graph_node):
            own = None
        completed = self.store.update_resource(
            replace(
                record,
                status=COMPLETE,
                status_reason="state changed",
                action=record.action if record.action != INIT else CREATE,
                lock=None,
                holder=None,
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
            ),
            # Its cleanup node hears of it in the same write (the one push it needs no
            # write for); _propagate then only checks whether that node may run.
            None
            if own is None or graph_node is None
            else sync_point.own_push(own, graph_node, self.traversal),
        )
        self.outcome = outcome
        if current:
            assert graph_node is not None
            written = frozenset({own}) if own is not None else frozenset()
            self._propagate(stack, graph_node, self._node_data(completed), written)
        else:
            self._reenter_newest(stack.name, completed)

    def _unless_unavailable(self, exc: Exception) -> None:
        """Raise `exc` again when it says only that the infrastructure could not answer.

        The step then ends with it and is tried again later, the record as it is
        (an action not started is started again, one started is checked again):
        an API server or etcd that is down for a moment fails no resource.
        """
        if self.engine.transient(exc):
            raise exc

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
                holder=None,
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

    @staticmethod
    def _node_data(record: ResourceRecord) -> NodeData:
        return NodeData(record.id, record.name, record.reference_id, dict(record.attributes))

    def _propagate(
        self,
        stack: StackRecord,
        graph_node: Node,
        data: NodeData | None,
        written: frozenset[Node] = frozenset(),
    ) -> None:
        """Push to every successor's sync point; trigger those now satisfied; tell the stack.

        `written` are successors whose entry the node's own record write carried:
        they are only checked, and triggered if satisfied.

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
                if successor in written:
                    entries = sync_point.read(self.store, successor)
                    if sync_point.is_satisfied(
                        entries, graph.predecessors(successor), self.traversal
                    ):
                        self._trigger(stack.name, successor)
                    self.pushed.append(str(successor))
                    continue
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


def is_complete(plugin: ResourceType, action: str, cookie: Any) -> bool:
    """The type's check_*_complete for `action`."""
    if action == CREATE:
        return plugin.check_create_complete(cookie)
    if action == UPDATE:
        return plugin.check_update_complete(cookie)
    return plugin.check_delete_complete(cookie)


def failure_reason(exc: Exception) -> str:
    if isinstance(exc, ResourceFailure):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
