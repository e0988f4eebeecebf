"""What engine code needs from its surroundings, gathered in one `Engine` value.

The engine is pure: it decides, and the things on `Engine` carry it out. The
store holds state, the type registry gives plugins, Reality is the physical
world plugins act on, the clock says the time, the dispatcher delivers node
messages (see `messages`), and `definitions` turns a stored template revision
into the definition a traversal resolves against (cached per revision; see
`definitions`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from convergence.operator.engine.definitions import (
    Definition,
    DefinitionLoader,
    template_definitions,
)
from convergence.operator.engine.messages import Dispatcher
from convergence.operator.engine.plugin import (
    Clock,
    NestedStackClients,
    ObjectClients,
    Reality,
    SecretStore,
    StackRef,
    TypeRegistry,
    Unavailable,
)
from convergence.operator.engine.store import Store


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class Confirmations:
    """The records an engine read back as stored (by a write conditional on their version)
    in its current fence period; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._period: object | None = None
        self._ids: set[str] = set()

    def known(self, period: object, record_id: str) -> bool:
        """Whether `record_id` was confirmed in `period`."""
        with self._lock:
            return period == self._period and record_id in self._ids

    def add(self, period: object, record_id: str) -> None:
        """Note `record_id` confirmed in `period` (a new period forgets the others)."""
        with self._lock:
            if period != self._period:
                self._period, self._ids = period, set()
            self._ids.add(record_id)


@dataclass
class Engine:
    """Everything a worker step or a stack operation uses."""

    store: Store
    types: TypeRegistry
    reality: Reality
    dispatcher: Dispatcher
    clock: Clock = field(default_factory=SystemClock)
    definitions: DefinitionLoader = template_definitions
    # Seconds between polls of an action in flight.
    poll_interval: float = 1.0
    # Kubernetes objects per stack (Kubernetes::Object); None in the simulator.
    objects: ObjectClients | None = None
    # Where types keep secret values (OS::Heat::RandomString); None: nowhere.
    secrets: SecretStore | None = None
    # Child stacks per parent stack (OS::Heat::Stack); None: nesting is not wired.
    stacks: NestedStackClients | None = None
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    # This engine's identity (an operator replica's), written as the holder of the
    # actions it starts, and whether the engine of an identity is alive now (the
    # operator follows each replica's Lease; one engine alone: every holder is alive).
    engine_id: str = "engine"
    alive: Callable[[str], bool] = field(default=lambda engine_id: True)
    # A token of the period in which this engine has been alive to its peers without a
    # break; None while it may not be (a replica whose Lease went unrenewed: the API
    # away, or the process frozen and resumed), as its actions may have been taken over.
    # A step acts on reality only while the token is the one it began in.
    fence: Callable[[], object | None] = field(default=lambda: 0)
    # Whether this engine had a break since it started (see fence): its cached reads may
    # then be older than what its peers did meanwhile (actions.ResourceActions._as_stored).
    resumed: Callable[[], bool] = field(default=lambda: False)
    confirmed: Confirmations = field(default_factory=Confirmations)
    # Seconds between looks at a record whose action another engine holds.
    held_poll_interval: float = 5.0
    # Whether an exception of a type's action says only that the infrastructure could
    # not answer now (the step is retried; the resource does not fail). The operator
    # adds the Kubernetes client's unavailable answers and lost connections.
    transient: Callable[[BaseException], bool] = field(
        default=lambda exc: isinstance(exc, Unavailable)
    )
    # Seconds a revision's definition is kept after its last use: a stack at rest needs
    # none, and every revision ever converged was kept for the process's life.
    definition_idle_seconds: float = 300.0
    _cache: dict[str | None, Definition] = field(default_factory=dict, repr=False)
    _used: dict[str | None, float] = field(default_factory=dict, init=False, repr=False)
    _swept: float = field(default=0.0, init=False, repr=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _serial: dict[str, threading.RLock] = field(default_factory=dict, repr=False)
    _serial_guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def one_at_a_time(self, key: str) -> threading.RLock:
        """A lock of this engine's own for `key`: work that many of its workers may reach at
        once, and that the first one done makes moot for the rest (they find it done)."""
        with self._serial_guard:
            return self._serial.setdefault(key, threading.RLock())

    def definition(self, stack: StackRef, revision_id: str | None) -> Definition:
        """The definition of a stored revision (None: the empty template), cached while used."""
        with self._cache_lock:
            known = self._cache.get(revision_id)
            if known is not None:
                self._used[revision_id] = self._sweep()
                return known
        revision = None if revision_id is None else self.store.get_template(revision_id)
        built = self.definitions(revision, stack, self.types, None)
        self.remember(revision_id, built)
        return built

    def remember(self, revision_id: str | None, definition: Definition) -> None:
        """Cache a definition (built while starting a traversal, or read)."""
        with self._cache_lock:
            self._cache[revision_id] = definition
            self._used[revision_id] = self._sweep()

    def _sweep(self) -> float:
        """Forget the definitions unused for `definition_idle_seconds` (built again if asked
        for), at most a few times per that period; the time now. Under `_cache_lock`."""
        now = self.clock.now()
        if now - self._swept >= self.definition_idle_seconds / 4:
            self._swept = now
            limit = now - self.definition_idle_seconds
            for idle in [r for r, used in self._used.items() if used < limit]:
                self._cache.pop(idle, None)
                del self._used[idle]
        return now
