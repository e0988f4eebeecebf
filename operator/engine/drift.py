"""Heat's "observe reality" between traversals: put back what others changed.

`repair_drift` is not a traversal step: the operator calls it periodically on
a stack at rest, and each resource type that can tell (`repair_drift` of the
plugin API) compares its physical resource with what it applied.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

from convergence.operator.engine.actions import ResourceActions, failure_reason
from convergence.operator.engine.graph import update_node
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.plugin import Fenced, acting
from convergence.operator.engine.store import (
    COMPLETE,
    CREATE,
    UPDATE,
    Conflict,
    NotFound,
)
from convergence.operator.engine.wiring import Engine


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
    anyway), and so does a break in this engine's fence (a peer may be acting on
    these records: see actions.ResourceActions._fenced). Data a repair changes
    (e.g. the uid of a recreated object) is recorded. Returns what drifted, for
    Events and conditions.
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
        step = ResourceActions(engine, NodeMessage(stack_name, traversal, update_node(record.id)))
        if step._fenced():
            break  # a peer may be acting on these records: the next round looks again
        context = step._context(stack, record)
        try:
            plugin_type = engine.types.get(record.type)
            plugin = plugin_type(
                context, step._validated(plugin_type, record.properties or {}, stack_name)
            )
            with acting(step._may_act):
                message = plugin.repair_drift()
        except Fenced:
            break
        except Exception as exc:
            drifts.append(
                Drift(
                    record.name,
                    record.id,
                    record.type,
                    f"repair failed: {failure_reason(exc)}",
                    False,
                )
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
