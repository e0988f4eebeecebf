"""What one worker step did, as a value: the seam between the engine and the operator.

A step (`converger.check_resource`) ends in one `Outcome`, with the fields
that outcome carries: the predecessors a waiting node still awaits, the
traversal whose action a busy node waits behind, the resource action the step
started, polled, finished or saw fail, the replacement it made. The operator
reads these fields (its metrics, a StackResource's DependenciesReady condition
and Events); the sentence `str(outcome)` is for logs and traces only, and
nothing reads it back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from convergence.operator.engine.graph import Node


class Outcome(enum.Enum):
    """What a step did with its node."""

    # The message no longer applies: nothing was done.
    STACK_GONE = "stack gone"
    STALE_TRAVERSAL = "stale traversal, dropped"
    NOT_IN_GRAPH = "not in this traversal's graph, dropped"
    RECORD_GONE = "record gone, dropped"
    TIMED_OUT = "stack timed out"
    # The node cannot run yet.
    BUSY = "busy"  # an action of another traversal holds the record
    # Another engine, alive, carries out the record's action; or this one may not act
    # (not alive to its peers throughout the step: actions.ResourceActions._fenced).
    HELD = "held"
    WAITING = "waiting"  # its sync point still lacks predecessors
    # The node is done, without a resource action.
    ALREADY_DELETED = "already deleted"
    DONE_ALREADY = "done already"
    REPLACED_ALREADY = "replaced already"
    UNCHANGED = "unchanged"
    KEPT = "kept"
    RECORD_DELETED = "deleted record"
    # An older traversal deleted the record this one chose for the node: the
    # operation was started again (a new traversal) on the records there are now.
    RECORD_LOST = "record deleted by an older traversal; operation started again"
    REPLACEMENT_CREATED = "needs replacement"
    # A resource action started, was polled, ended or failed (see `StepOutcome.action`).
    ACTION = "action"
    # The step did not finish: it is run again.
    CONFLICT = "write conflict, retrying"
    UNAVAILABLE = "what the step asked could not be answered now, retrying"
    WORKER_CRASHED = "worker crashed"

    @property
    def dropped(self) -> bool:
        """Whether the message was dropped as not applying to the record (any more)."""
        return self in (Outcome.STALE_TRAVERSAL, Outcome.NOT_IN_GRAPH, Outcome.RECORD_GONE)


class ActionResult(enum.Enum):
    """Where a resource action stands after the step."""

    STARTED = "started"
    IN_PROGRESS = "in progress"
    COMPLETE = "complete"
    FAILED = "FAILED"


@dataclass(frozen=True)
class ResourceAction:
    """A resource action (CREATE, UPDATE or DELETE) and what the step saw of it."""

    name: str
    result: ActionResult
    # Why it failed (secret values scrubbed out).
    reason: str = ""
    # Started again by a step that found the lock taken by a worker that died before starting.
    again: bool = False

    def __str__(self) -> str:
        if self.result is ActionResult.FAILED:
            return f"{self.name} FAILED: {self.reason}"
        return f"{self.name} {self.result.value}" + (" again" if self.again else "")


@dataclass(frozen=True)
class StepOutcome:
    """The outcome of one step and what it carries; `str()` is its sentence for logs."""

    kind: Outcome
    # WAITING: the predecessors that have not pushed in this traversal yet.
    waiting_for: tuple[Node, ...] = ()
    # BUSY: the traversal whose action holds the record; HELD: the engine carrying it out.
    busy_with: str | None = None
    # ACTION: the resource action and its result.
    action: ResourceAction | None = None
    # REPLACEMENT_CREATED: the id of the record made to replace this one.
    replacement: str | None = None
    # RECORD_DELETED: the physical resource was kept (deletion policy Retain).
    retained: bool = False
    # The stack's traversal timed out in this step (an action in flight still went on).
    timed_out: bool = False
    # WORKER_CRASHED: what killed the worker.
    reason: str = ""

    @property
    def waiting(self) -> bool:
        """Whether the node's sync point still waits for predecessors."""
        return self.kind is Outcome.WAITING

    def __str__(self) -> str:
        sentence = self._sentence()
        if self.timed_out and self.kind is not Outcome.TIMED_OUT:
            return f"{Outcome.TIMED_OUT.value}; {sentence}"
        return sentence

    def _sentence(self) -> str:
        kind = self.kind
        if kind is Outcome.ACTION and self.action is not None:
            return str(self.action)
        if kind is Outcome.WAITING:
            return "waiting for " + ", ".join(map(str, self.waiting_for))
        if kind is Outcome.BUSY:
            return f"busy with traversal {(self.busy_with or '')[:8]}, waiting"
        if kind is Outcome.HELD:
            return f"action carried out by engine {self.busy_with}, waiting"
        if kind is Outcome.REPLACEMENT_CREATED:
            return f"needs replacement: created {self.replacement or ''}"
        if kind is Outcome.RECORD_DELETED and self.retained:
            return "deleted record (retained physical resource)"
        if kind is Outcome.WORKER_CRASHED:
            return f"worker crashed: {self.reason}"
        return str(kind.value)


def acted(name: str, result: ActionResult, reason: str = "") -> StepOutcome:
    """The outcome of a step that started, polled, finished or failed resource action `name`."""
    return StepOutcome(Outcome.ACTION, action=ResourceAction(name, result, reason))
