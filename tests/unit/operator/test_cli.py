"""The operator process's own settings, made by `convergence run` before the operator starts."""

from __future__ import annotations

import gc
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
