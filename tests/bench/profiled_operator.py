"""`convergence run` with every thread under cProfile, for `make bench PROFILE=1`.

`python -m cProfile` sees only the main thread, which in the operator is the
asyncio loop: the work queue's steps (`asyncio.to_thread`) and kopf's sync
handlers run in executor threads and would be missing. Here each thread gets
its own profiler from the moment it runs, and on exit (SIGTERM ends kopf
gracefully) all of them are merged into one pstats file.

The clock is `wall` (where each thread's time goes, waiting on the API server
included; idle workers show as time in `SimpleQueue.get`) or `cpu` (each
thread's own CPU time: the Python work that competes for the cores).

    python tests/bench/profiled_operator.py STATS_FILE wall|cpu run --all-namespaces ...
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

# None: cProfile's own wall clock (the cheapest to read).
CLOCKS: dict[str, Callable[[], float] | None] = {"wall": None, "cpu": time.thread_time}


class ThreadProfile(cProfile.Profile):
    """A profiler whose figures can be read from another thread while it still runs."""

    def create_stats(self) -> None:
        # pstats calls this to read the figures; the base class disables first, which
        # from another thread would unhook the wrong thread. Reading alone is safe.
        self.snapshot_stats()


def main(argv: list[str]) -> int:
    stats_file, clock, cli_args = Path(argv[0]), CLOCKS[argv[1]], argv[2:]
    profiles: list[ThreadProfile] = []
    unprofiled_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = ThreadProfile(clock)
        profiles.append(profile)
        profile.enable()
        try:
            unprofiled_run(self)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    # Imported after the patch, so no thread starts unprofiled.
    from convergence.operator.cli import main as convergence

    loop_profile = ThreadProfile(clock)
    loop_profile.enable()
    try:
        return convergence(cli_args)
    finally:
        loop_profile.disable()
        merged = pstats.Stats()
        for profile in [loop_profile, *profiles]:  # (a copy: threads may still start)
            profile.create_stats()
            if profile.stats:  # pstats refuses a thread that never ran Python code
                merged.add(profile)
        stats_file.parent.mkdir(parents=True, exist_ok=True)
        merged.dump_stats(stats_file)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
