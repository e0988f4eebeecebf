"""A keyed work queue: the operator's engine workers take node wake-ups from it.

kopf delivers watch events; the engine needs "run the nodes of this record
now, or again in N seconds". The queue gives controller-runtime's guarantees:
a key waiting twice is run once (deduplication), a key is never run by two
workers at once (a key that is re-added while running is run again after),
and delayed adds (polls of actions in flight) wait without holding a worker.
Keys may be added from any thread (engine steps run in worker threads): an
add off the event loop's thread is handed to the loop, since asyncio's queue
wakes its waiters only from there. Nothing in it is memory the engine relies
on: after a restart the initial listing of every object adds every key again,
and the steps read their state from the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    """Deduplicating, per-key serialised queue with delayed adds."""

    def __init__(self) -> None:
        self._ready: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        # Keys re-added while running: queued again when their run ends.
        self._dirty: set[Key] = set()
        self._delayed: list[tuple[float, int, Key]] = []
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def running(self) -> int:
        return len(self._running)

    def _off_loop(self) -> asyncio.AbstractEventLoop | None:
        """The queue's loop when called from another thread, else None."""
        loop = self._loop
        if loop is None:
            return None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        return None if running is loop else loop

    def add(self, key: Key) -> None:
        """Run `key` soon (once, however often it is added before it runs)."""
        loop = self._off_loop()
        if loop is not None:
            loop.call_soon_threadsafe(self.add, key)
            return
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Run `key` after `delay` seconds."""
        if delay <= 0:
            self.add(key)
            return
        loop = self._off_loop()
        if loop is not None:
            loop.call_soon_threadsafe(self.add_after, key, delay)
            return
        heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._counter), key))
        self._wakeup.set()

    async def _promote_delayed(self) -> None:
        """Move delayed keys whose time has come onto the ready queue."""
        while True:
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, key = heapq.heappop(self._delayed)
                self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _worker(self, process: Callable[[Key], Awaitable[float | None]]) -> None:
        while True:
            key = await self._ready.get()
            self._queued.discard(key)
            self._running.add(key)
            try:
                again = await process(key)
            finally:
                self._running.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif again is not None:
                self.add_after(key, again)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve adds from other threads through `loop` from now on, before `run` starts.

        A thread that adds before the loop is known would touch the asyncio queue
        from the wrong thread, and no worker would ever be woken for that key.
        """
        self._loop = loop

    async def run(self, process: Callable[[Key], Awaitable[float | None]], workers: int) -> None:
        """Process keys with `workers` concurrent workers until cancelled.

        `process` returns None when done with the key, or seconds after which
        to run it again (an action in flight is polled).
        """
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(self._promote_delayed())]
        tasks += [asyncio.create_task(self._worker(process)) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
