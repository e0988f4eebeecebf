"""The work queue runs each key once per wake-up, never twice at once, and polls later."""

from __future__ import annotations

import asyncio
import threading

from convergence.operator.workqueue import WorkQueue


async def _drain(queue: WorkQueue[str], process_log: list[str], seconds: float) -> None:
    async def process(key: str) -> float | None:
        process_log.append(key)
        await asyncio.sleep(0)
        return None

    runner = asyncio.create_task(queue.run(process, workers=3))
    await asyncio.sleep(seconds)
    runner.cancel()


def test_a_key_added_twice_before_it_runs_runs_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    log: list[str] = []
    queue.add("a")
    queue.add("a")
    queue.add("b")
    asyncio.run(_drain(queue, log, 0.05))
    assert sorted(log) == ["a", "b"], log


def test_a_key_is_never_run_by_two_workers_and_reruns_after_a_change() -> None:
    queue: WorkQueue[str] = WorkQueue()
    running: set[str] = set()
    overlaps: list[str] = []
    runs: list[str] = []

    async def process(key: str) -> float | None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        runs.append(key)
        if len(runs) == 1:
            queue.add("a")  # a change arrives while "a" runs
        await asyncio.sleep(0.01)
        running.discard(key)
        return None

    async def main() -> None:
        queue.add("a")
        runner = asyncio.create_task(queue.run(process, workers=4))
        await asyncio.sleep(0.1)
        runner.cancel()

    asyncio.run(main())
    assert overlaps == [], "a key ran on two workers at once"
    assert runs == ["a", "a"], f"a key re-added while running must run once more: {runs}"


def test_a_poll_runs_the_key_again_after_its_delay() -> None:
    queue: WorkQueue[str] = WorkQueue()
    runs: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def process(key: str) -> float | None:
            runs.append(loop.time() - start)
            return 0.05 if len(runs) < 3 else None

        queue.add("a")
        runner = asyncio.create_task(queue.run(process, workers=1))
        await asyncio.sleep(0.3)
        runner.cancel()

    asyncio.run(main())
    assert len(runs) == 3, runs
    assert runs[1] - runs[0] >= 0.045, f"the poll came too early: {runs}"


def test_a_key_another_thread_adds_before_the_workers_start_still_runs() -> None:
    # The StackResource watch starts listing (and adding) on its own thread as
    # soon as the operator starts, possibly before the queue's workers run.
    queue: WorkQueue[str] = WorkQueue()
    log: list[str] = []

    async def main() -> None:
        queue.attach(asyncio.get_running_loop())
        adder = threading.Thread(target=queue.add, args=("early",))
        adder.start()
        adder.join()
        await _drain(queue, log, 0.05)

    asyncio.run(main())
    assert log == ["early"], log
