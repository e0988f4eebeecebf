"""The operator process's own settings, made by `convergence run` before the operator starts."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
from collections.abc import Iterator

import pytest

from convergence.operator import cli


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_the_collector_runs_less_often_and_leaves_what_existed_at_start_alone() -> None:
    older = gc.get_threshold()[1:]
    gc.unfreeze()
    cli.tune_gc()
    assert gc.get_threshold() == (cli.GC_YOUNG_THRESHOLD, *older)
    assert gc.get_freeze_count() > 0, "the start-up objects are moved out of the collected heap"


ARENAS_USED = """
import ctypes, sys, tempfile, threading
from convergence.operator import cli
if sys.argv[1] == "limited":
    assert cli.limit_malloc_arenas()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
started = threading.Barrier(8)
def allocate() -> None:
    started.wait()  # all alive at once: each takes an arena of its own when it may
    libc.malloc(100_000)
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile() as info:
    stream = libc.fopen(info.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(info.read().decode().count("<heap nr="))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
@pytest.mark.parametrize(("mode", "most"), [("limited", cli.MALLOC_ARENAS), ("default", None)])
def test_threads_share_at_most_the_operators_malloc_arenas(mode: str, most: int | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    ran = subprocess.run(
        [sys.executable, "-c", ARENAS_USED, mode], env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    arenas = int(ran.stdout)
    if most is None:
        assert arenas > cli.MALLOC_ARENAS, "glibc's default: an arena per thread (the control)"
    else:
        assert arenas <= most


def test_the_environments_arena_limit_is_left_to_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not cli.limit_malloc_arenas()
