"""A deterministic simulator of the engine: one process, one worker step at a time.

It owns an in-memory store, an in-memory Reality and SecretStore, a virtual
clock and a message queue of node messages. Delivery is at least once, as in
the real operator: a message leaves the queue only after its step finished, and
a step that crashed wakes its record again, which runs the messages the record
needs now (`converger.messages_for_record`, as the operator's work queue does
for a key whose step failed). Between steps it can:
- pause the worker of a resource (its messages wait, mid-action if one runs);
- crash a worker at a chosen store write (the write and the rest of the step
  never happen), either the k-th write of all steps or the next write of a
  given resource's worker;
- pick the next message in FIFO order, or at random from a seed, to
  interleave several traversals differently.
Time only moves when nothing is due: the clock jumps to the next poll.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from convergence.operator.engine import operations
from convergence.operator.engine.converger import (
    StepReport,
    check_resource,
    messages_for_record,
)
from convergence.operator.engine.definitions import DefinitionLoader, template_definitions
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.outcome import Outcome, StepOutcome
from convergence.operator.engine.plugin import PhysicalRecord, StoredSecret, TypeRegistry
from convergence.operator.engine.sim.nested import SimulatedStacks
from convergence.operator.engine.store import (
    InMemoryStore,
    OwnPush,
    ResourceRecord,
    StackRecord,
    SyncEntry,
    TemplateRevision,
    create_if_new,
)
from convergence.operator.engine.wiring import Engine


class VirtualClock:
    """Time that moves only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, when: float) -> None:
        """Move forward to `when` (never backwards)."""
        self._now = max(self._now, when)


class InMemoryReality:
    """Physical records in a dict: what plugins create, and what scenarios check."""

    def __init__(self) -> None:
        self.records: dict[str, PhysicalRecord] = {}
        self.operations: list[tuple[str, str]] = []

    def create(self, record: PhysicalRecord) -> None:
        self.operations.append(("create", record.name))
        self.records[record.name] = record

    def get(self, name: str) -> PhysicalRecord | None:
        return self.records.get(name)

    def update(self, record: PhysicalRecord) -> None:
        self.operations.append(("update", record.name))
        self.records[record.name] = record

    def delete(self, name: str) -> None:
        self.operations.append(("delete", name))
        self.records.pop(name, None)

    def of_stack(self, stack: str) -> list[PhysicalRecord]:
        """Every record labelled with this stack."""
        return [r for r in self.records.values() if r.stack == stack]


class InMemorySecretStore:
    """SecretStore entries in a dict: what RandomString keeps, and what tests check."""

    def __init__(self) -> None:
        self.entries: dict[str, StoredSecret] = {}
        # Entry name -> record id it was written for (Kubernetes: the owner reference).
        self.owners: dict[str, str] = {}
        self.released: set[str] = set()

    def write(
        self,
        name: str,
        data: Mapping[str, str],
        *,
        stack: str,
        logical_name: str,
        record_id: str,
    ) -> None:
        self.entries[name] = StoredSecret(name, stack, logical_name, dict(data))
        self.owners[name] = record_id

    def read(self, name: str) -> StoredSecret | None:
        return None if name in self.released else self.entries.get(name)

    def delete(self, name: str) -> None:
        self.entries.pop(name, None)
        self.owners.pop(name, None)
        self.released.discard(name)

    def release(self, name: str) -> None:
        if name in self.entries:
            self.released.add(name)
            self.owners.pop(name, None)

    def locate(self, name: str) -> str:
        return name

    def of_stack(self, stack: str) -> list[StoredSecret]:
        """Every entry written for this stack (released ones included)."""
        return [entry for entry in self.entries.values() if entry.stack == stack]


class WorkerCrash(BaseException):
    """The simulated death of a worker (BaseException: no engine code may swallow it)."""


class FaultyStore:
    """An InMemoryStore whose writes can kill the worker making them.

    Writes made while `armed` (during worker steps) are numbered from 1; the
    write numbered `crash_at`, or the next one when `crash_next` is set, raises
    WorkerCrash instead of happening.
    """

    def __init__(self, inner: InMemoryStore) -> None:
        self.inner = inner
        self.armed = False
        self.step_writes = 0
        self.crash_at: int | None = None
        self.crash_next = False

    def _write(self) -> None:
        if not self.armed:
            return
        self.step_writes += 1
        if self.crash_next or self.step_writes == self.crash_at:
            self.crash_next = False
            if self.step_writes == self.crash_at:
                self.crash_at = None
            raise WorkerCrash(f"worker died before store write #{self.step_writes}")

    def create_stack(self, stack: StackRecord) -> StackRecord:
        self._write()
        return self.inner.create_stack(stack)

    def get_stack(self, name: str) -> StackRecord | None:
        return self.inner.get_stack(name)

    def is_current(self, name: str, traversal: str) -> bool:
        return self.inner.is_current(name, traversal)

    def update_stack(self, stack: StackRecord) -> StackRecord:
        self._write()
        return self.inner.update_stack(stack)

    def stack_sync_point(self, name: str) -> Mapping[str, SyncEntry]:
        return self.inner.stack_sync_point(name)

    def push_stack_sync_point(
        self, name: str, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        self._write()
        return self.inner.push_stack_sync_point(name, sender, entry)

    def put_template(self, revision: TemplateRevision) -> None:
        self._write()
        self.inner.put_template(revision)

    def get_template(self, revision_id: str) -> TemplateRevision:
        return self.inner.get_template(revision_id)

    def create_resource(self, record: ResourceRecord) -> ResourceRecord:
        self._write()
        return self.inner.create_resource(record)

    def create_resources(
        self, records: Sequence[ResourceRecord], *, exist_ok: bool = False
    ) -> list[ResourceRecord]:
        # One write each, so that a worker can die between any two.
        return [create_if_new(self, record, exist_ok) for record in records]

    def get_resource(self, record_id: str) -> ResourceRecord | None:
        return self.inner.get_resource(record_id)

    def list_resources(self, stack: str) -> list[ResourceRecord]:
        return self.inner.list_resources(stack)

    def update_resource(
        self, record: ResourceRecord, own_push: OwnPush | None = None
    ) -> ResourceRecord:
        self._write()
        return self.inner.update_resource(record, own_push)

    def delete_resource(self, record: ResourceRecord) -> None:
        self._write()
        self.inner.delete_resource(record)

    def sync_point(self, record_id: str, is_update: bool) -> Mapping[str, SyncEntry]:
        return self.inner.sync_point(record_id, is_update)

    def push(
        self, record_id: str, is_update: bool, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        self._write()
        return self.inner.push(record_id, is_update, sender, entry)


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    message: NodeMessage = field(compare=False)
    # Entries are invalidated rather than removed from the heap (lazy deletion).
    valid: bool = field(default=True, compare=False)


def deterministic_ids(seed: int = 0) -> Callable[[], str]:
    """A generator of UUID strings that is the same on every run (with the same seed)."""
    counter = 0

    def new_id() -> str:
        nonlocal counter
        counter += 1
        digest = hashlib.sha256(f"{seed}:{counter}".encode()).digest()[:16]
        return str(uuid.UUID(bytes=digest, version=4))

    return new_id


class Simulator:
    """The engine on an in-memory store, run one worker step at a time."""

    def __init__(
        self,
        types: TypeRegistry | None = None,
        *,
        definitions: DefinitionLoader = template_definitions,
        seed: int | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self.clock = VirtualClock()
        self.reality = InMemoryReality()
        self.secrets = InMemorySecretStore()
        self.memory = InMemoryStore()
        self.store = FaultyStore(self.memory)
        self.engine = Engine(
            store=self.store,
            types=types if types is not None else TypeRegistry.from_entry_points(),
            reality=self.reality,
            secrets=self.secrets,
            dispatcher=self,
            clock=self.clock,
            definitions=definitions,
            poll_interval=poll_interval,
            new_id=deterministic_ids(seed or 0),
        )
        # Child stacks (OS::Heat::Stack) live in the same store and queue.
        self.stacks = SimulatedStacks(self.engine, self.memory)
        self.engine.stacks = self.stacks
        self._random = random.Random(seed) if seed is not None else None
        self._queue: list[_Queued] = []
        self._queued: dict[NodeMessage, _Queued] = {}
        self._seq = 0
        self._running: _Queued | None = None
        self.paused: set[str] = set()
        self._crash_resources: set[str] = set()
        self.trace: list[StepReport] = []
        self.crashes = 0
        # Called after every step (tests use it to check invariants as they go).
        self.observers: list[Callable[[StepReport], None]] = []

    # -- the message queue ---------------------------------------------------------------------

    def trigger(self, message: NodeMessage) -> None:
        """Queue a message now (a message already queued is delivered once, at the earlier time)."""
        self._enqueue(message, self.clock.now())

    def _enqueue(self, message: NodeMessage, due: float) -> None:
        queued = self._queued.get(message)
        if queued is not None and queued is not self._running:
            if queued.due <= due:
                return
            queued.valid = False
        self._seq += 1
        entry = _Queued(due, self._seq, message)
        self._queued[message] = entry
        heapq.heappush(self._queue, entry)

    def wake(self, stack: str, record_id: str) -> None:
        """Queue the messages a wake-up of one record runs (as the operator's work queue does)."""
        record = self.memory.get_resource(record_id)
        for message in messages_for_record(self.memory.get_stack(stack), record_id, record):
            self.trigger(message)

    def _resource_name(self, message: NodeMessage) -> str | None:
        record = self.memory.get_resource(message.node.record_id)
        return None if record is None else record.name

    def _valid(self) -> list[_Queued]:
        return [q for q in self._queue if q.valid]

    def pending(self) -> list[NodeMessage]:
        """Messages waiting (paused ones included)."""
        return [q.message for q in sorted(self._valid())]

    def _next(self) -> _Queued | None:
        while self._queue and not self._queue[0].valid:
            heapq.heappop(self._queue)
        if not self.paused and self._random is None:
            if not self._queue:
                return None
            self.clock.advance_to(self._queue[0].due)
            return self._queue[0]
        candidates = [q for q in self._valid() if self._resource_name(q.message) not in self.paused]
        if not candidates:
            return None
        earliest = min(candidates)
        self.clock.advance_to(earliest.due)
        if self._random is None:
            return earliest
        return self._random.choice(sorted(q for q in candidates if q.due <= self.clock.now()))

    # -- running -------------------------------------------------------------------------------

    def step(self) -> StepReport | None:
        """Deliver one message and run its step; None when nothing can be delivered."""
        queued = self._next()
        if queued is None:
            return None
        message = queued.message
        if self._resource_name(message) in self._crash_resources:
            self._crash_resources.discard(self._resource_name(message) or "")
            self.store.crash_next = True
        self.store.armed = True
        self._running = queued
        try:
            report = check_resource(self.engine, message)
        except WorkerCrash as crash:
            # As the operator retries the key of a step that died: the record is
            # woken again, and its messages are derived from what is stored now.
            self.crashes += 1
            self.store.crash_next = False
            self._remove(queued)
            self.wake(message.stack, message.node.record_id)
            crashed = StepOutcome(Outcome.WORKER_CRASHED, reason=str(crash))
            report = StepReport(message, crashed, self._resource_name(message))
        except Exception as exc:
            if not self.engine.transient(exc):
                raise
            # As the operator retries a step the infrastructure could not answer.
            self._remove(queued)
            self._enqueue(message, self.clock.now() + self.engine.poll_interval)
            unavailable = StepOutcome(Outcome.UNAVAILABLE, reason=str(exc))
            report = StepReport(message, unavailable, self._resource_name(message))
        else:
            self._remove(queued)
            if report.poll_after is not None:
                self._enqueue(message, self.clock.now() + report.poll_after)
        finally:
            self.store.armed = False
            self._running = None
        self.trace.append(report)
        for observer in self.observers:
            observer(report)
        return report

    def _remove(self, queued: _Queued) -> None:
        queued.valid = False
        if self._queued.get(queued.message) is queued:
            del self._queued[queued.message]

    def run(self, steps: int) -> list[StepReport]:
        """Run up to `steps` steps."""
        reports = []
        for _ in range(steps):
            report = self.step()
            if report is None:
                break
            reports.append(report)
        return reports

    def run_until_quiet(self, limit: int = 1_000_000) -> int:
        """Run until nothing can be delivered; return the number of steps run."""
        for count in range(limit):
            if self.step() is None:
                return count
        raise RuntimeError(f"still busy after {limit} steps")

    def run_until(self, condition: Callable[[], bool], limit: int = 100_000) -> bool:
        """Run until `condition()` holds (checked before each step); False if it never did."""
        for _ in range(limit):
            if condition():
                return True
            if self.step() is None:
                return condition()
        return condition()

    # -- interference --------------------------------------------------------------------------

    def pause(self, resource: str) -> None:
        """Hold every message of the named resource's nodes."""
        self.paused.add(resource)

    def resume(self, resource: str) -> None:
        """Deliver the named resource's messages again."""
        self.paused.discard(resource)

    def crash_worker_of(self, resource: str) -> None:
        """Kill the next worker of the named resource at its first store write."""
        self._crash_resources.add(resource)

    def restart(self, stack: str) -> None:
        """The operator restarted: messages in flight are lost, and the initial listing of
        the stack's records (and every other stack's: its children) wakes each of them once."""
        for queued in self._queue:
            queued.valid = False
        self._queue.clear()
        self._queued.clear()
        for name in [stack, *(n for n in self.memory.stack_names() if n != stack)]:
            for record in self.memory.list_resources(name):
                self.wake(name, record.id)

    def crash_at_write(self, number: int) -> None:
        """Kill the worker making the `number`-th store write of all steps (from now on)."""
        self.store.crash_at = self.store.step_writes + number

    # -- stack operations (what the API server would receive) ----------------------------------

    def create(
        self,
        name: str,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> StackRecord:
        """Create a stack."""
        return operations.create_stack(self.engine, name, template, parameters, **options)

    def update(
        self,
        name: str,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> StackRecord:
        """Update a stack."""
        return operations.update_stack(self.engine, name, template, parameters, **options)

    def rollback(self, name: str) -> StackRecord:
        """Roll a stack back to its last completed template."""
        return operations.rollback_stack(self.engine, name)

    def cancel(self, name: str, *, rollback: bool = False) -> StackRecord:
        """Cancel the operation in progress."""
        return operations.cancel_update(self.engine, name, rollback=rollback)

    def delete(self, name: str) -> StackRecord:
        """Delete a stack."""
        return operations.delete_stack(self.engine, name)

    # -- looking -------------------------------------------------------------------------------

    def stack(self, name: str) -> StackRecord:
        """The stack record."""
        stack = self.memory.get_stack(name)
        assert stack is not None, f"no stack {name!r}"
        return stack

    def resources(self, name: str) -> list[ResourceRecord]:
        """Every resource record of a stack."""
        return self.memory.list_resources(name)

    def copies(self, stack: str, resource: str) -> list[PhysicalRecord]:
        """The physical copies of one logical resource."""
        return [r for r in self.reality.of_stack(stack) if r.logical_name == resource]

    def __iter__(self) -> Iterator[StepReport]:
        while (report := self.step()) is not None:
            yield report
