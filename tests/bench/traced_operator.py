"""`convergence run` under tracemalloc, for `make bench MEMORY=1`: what holds the memory.

Peak RSS says how much, not what. Here Python's allocations are traced from
the start (with `FRAMES` frames each), a thread looks at the traced total every
`LOOK_INTERVAL` seconds, and each time it has grown by `GROWTH` over the last
snapshot kept, a new snapshot replaces it on disk: when the operator exits
(SIGTERM), the file holds the allocations near the highest point the run
reached (`bench_operator.print_snapshot` prints the top of it). When the file
HELD_REQUEST appears, a snapshot is written to HELD_FILE and the request
removed: what the operator holds at a moment the bench chooses (after a
create, with every record cached).
Tracing slows the operator down several times: its times mean nothing.

    python tests/bench/traced_operator.py SNAPSHOT_FILE HELD_REQUEST HELD_FILE run ...
"""

from __future__ import annotations

import os
import sys
import threading
import tracemalloc
from pathlib import Path

FRAMES = 8
LOOK_INTERVAL = 1.0
GROWTH = 1.25


def _dump(snapshot_file: Path) -> None:
    # Written aside and renamed, so that an exit mid-write leaves the last one whole.
    partial = snapshot_file.with_name(snapshot_file.name + ".partial")
    tracemalloc.take_snapshot().dump(str(partial))
    os.replace(partial, snapshot_file)


def main(argv: list[str]) -> int:
    snapshot_file, held_request, held_file = (Path(arg) for arg in argv[:3])
    cli_args = argv[3:]
    snapshot_file.parent.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(FRAMES)
    stop = threading.Event()
    kept = [0]

    def keep_the_highest() -> None:
        while not stop.wait(LOOK_INTERVAL):
            if held_request.exists():
                _dump(held_file)
                held_request.unlink()
            current = tracemalloc.get_traced_memory()[0]
            if current > kept[0] * GROWTH:
                _dump(snapshot_file)
                kept[0] = current

    threading.Thread(target=keep_the_highest, name="tracemalloc", daemon=True).start()
    from convergence.operator.cli import main as convergence

    try:
        return convergence(cli_args)
    finally:
        stop.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
