"""Consistent reads that callers asking at about the same time share.

A step that is about to act reads its traversal's fence from the API (never
from a cache): the answer must come from a read sent after the step decided.
At 1000 resources most steps decide within a few milliseconds of others, and
each sent its own read. Here a caller waits for the next read that starts
after it asked, and every caller waiting for that read takes its answer:
at most one read per key is in flight, and the one after it answers everyone
who came meanwhile. Reads of one key are sent one after another, so the
newest answer is never older than a read the caller could have sent itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Key(Generic[V]):
    """The reads of one key: how many were started and ended, and the last one's answer."""

    started: int = 0
    ended: int = 0
    sending: bool = False
    answer: V | None = None
    error: BaseException | None = None
    waiting: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)


class JoinedReads(Generic[K, V]):
    """`read(key)` answered by a call of `send(key)` that started after it was asked."""

    def __init__(self, send: Callable[[K], V]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._keys: dict[K, _Key[V]] = {}
        # Reads sent, and callers answered (what the sharing saved: for the tests).
        self.sent = 0
        self.answered = 0

    def read(self, key: K) -> V:
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                state = self._keys[key] = _Key()
            state.waiting += 1
        try:
            return self._read(key, state)
        finally:
            with self._lock:
                state.waiting -= 1
                if state.waiting == 0:  # (no caller inside: none is sending)
                    self._keys.pop(key, None)

    def _read(self, key: K, state: _Key[V]) -> V:
        with state.changed:
            # A read in flight may have started before this call: wait for the next.
            needed = state.started + 1
            while state.ended < needed:
                if state.sending:
                    state.changed.wait()
                    continue
                state.sending = True
                state.started += 1
                number = state.started
                state.changed.release()
                answered = False
                try:
                    try:
                        answer, error = self._send(key), None
                    except Exception as exc:
                        answer, error = None, exc
                    answered = True
                finally:
                    # (Also when the thread is told to stop: a waiter then sends anew.)
                    state.changed.acquire()
                    state.sending = False
                    if answered:
                        state.ended = number
                        state.answer, state.error = answer, error
                    state.changed.notify_all()
                with self._lock:
                    self.sent += 1
            with self._lock:
                self.answered += 1
            if state.error is not None:
                raise state.error
            return cast(V, state.answer)
