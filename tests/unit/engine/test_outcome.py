"""A step's outcome is a value; its sentence is derived from the fields, for logs only."""

from __future__ import annotations

import pytest

from convergence.operator.engine.graph import cleanup_node, update_node
from convergence.operator.engine.outcome import (
    ActionResult,
    Outcome,
    ResourceAction,
    StepOutcome,
    acted,
)


@pytest.mark.parametrize(
    ("outcome", "sentence"),
    [
        (acted("CREATE", ActionResult.STARTED), "CREATE started"),
        (
            StepOutcome(
                Outcome.ACTION, action=ResourceAction("CREATE", ActionResult.STARTED, again=True)
            ),
            "CREATE started again",
        ),
        (acted("UPDATE", ActionResult.IN_PROGRESS), "UPDATE in progress"),
        (acted("DELETE", ActionResult.FAILED, "boom"), "DELETE FAILED: boom"),
        (
            StepOutcome(
                Outcome.ACTION,
                action=ResourceAction("UPDATE", ActionResult.COMPLETE),
                timed_out=True,
            ),
            "stack timed out; UPDATE complete",
        ),
        (StepOutcome(Outcome.TIMED_OUT, timed_out=True), "stack timed out"),
        (
            StepOutcome(Outcome.WAITING, waiting_for=(update_node("a"), cleanup_node("b"))),
            "waiting for update:a, cleanup:b",
        ),
        (
            StepOutcome(Outcome.BUSY, busy_with="0123456789"),
            "busy with traversal 01234567, waiting",
        ),
        (
            StepOutcome(Outcome.REPLACEMENT_CREATED, replacement="web-db-abcdefgh"),
            "needs replacement: created web-db-abcdefgh",
        ),
        (StepOutcome(Outcome.RECORD_DELETED), "deleted record"),
        (
            StepOutcome(Outcome.RECORD_DELETED, retained=True),
            "deleted record (retained physical resource)",
        ),
        (StepOutcome(Outcome.STALE_TRAVERSAL), "stale traversal, dropped"),
        (StepOutcome(Outcome.WORKER_CRASHED, reason="died"), "worker crashed: died"),
    ],
    ids=str,
)
def test_the_log_sentence_is_derived_from_the_fields(outcome: StepOutcome, sentence: str) -> None:
    assert str(outcome) == sentence


def test_only_messages_that_no_longer_apply_are_dropped() -> None:
    dropped = {kind for kind in Outcome if kind.dropped}
    assert dropped == {Outcome.STALE_TRAVERSAL, Outcome.NOT_IN_GRAPH, Outcome.RECORD_GONE}
    assert StepOutcome(Outcome.WAITING).waiting
    assert not acted("CREATE", ActionResult.STARTED).waiting
