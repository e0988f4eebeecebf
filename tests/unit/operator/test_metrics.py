"""The pure parts of the operator's metrics: labels from engine outcomes, a private registry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from convergence.operator import metrics
from convergence.operator.engine.graph import update_node
from convergence.operator.engine.outcome import (
    ActionResult,
    Outcome,
    ResourceAction,
    StepOutcome,
    acted,
)
from convergence.operator.parameters_from import (
    ParametersNotFound,
    merged_parameters,
    secret_strings,
)

STARTED = ActionResult.STARTED


@pytest.mark.parametrize(
    ("error", "requeue_after", "expected"),
    [
        (False, None, "success"),
        (False, 0.0, "requeue"),
        (False, 1.0, "requeue_after"),
        (True, 2.0, "error"),
    ],
)
def test_reconcile_result_follows_controller_runtime(
    error: bool, requeue_after: float | None, expected: str
) -> None:
    assert metrics.reconcile_result(error=error, requeue_after=requeue_after) == expected


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (acted("CREATE", STARTED), ("CREATE", "started")),
        (acted("UPDATE", ActionResult.COMPLETE), ("UPDATE", "success")),
        (acted("DELETE", ActionResult.COMPLETE), ("DELETE", "success")),
        (acted("CREATE", ActionResult.FAILED, "Went wrong"), ("CREATE", "failure")),
        (replace(acted("UPDATE", ActionResult.IN_PROGRESS), timed_out=True), None),
        (replace(acted("UPDATE", ActionResult.COMPLETE), timed_out=True), ("UPDATE", "success")),
        (StepOutcome(Outcome.ACTION, action=ResourceAction("CREATE", STARTED, again=True)), None),
        (StepOutcome(Outcome.WAITING, waiting_for=(update_node("a"), update_node("b"))), None),
        (StepOutcome(Outcome.UNCHANGED), None),
        (StepOutcome(Outcome.STALE_TRAVERSAL), None),
    ],
    ids=str,
)
def test_resource_action_is_read_from_step_outcomes(
    outcome: StepOutcome, expected: tuple[str, str] | None
) -> None:
    assert metrics.resource_action(outcome) == expected


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("CREATE_IN_PROGRESS", ("CREATE", "started")),
        ("ROLLBACK_COMPLETE", ("ROLLBACK", "success")),
        ("UPDATE_FAILED", ("UPDATE", "failure")),
        ("INIT_COMPLETE", None),
        ("", None),
    ],
)
def test_traversal_counter_from_stack_phase(phase: str, expected: tuple[str, str] | None) -> None:
    assert metrics.traversal_counter(phase) == expected


def test_metrics_live_in_their_own_registry() -> None:
    first, second = metrics.Metrics(), metrics.Metrics()
    first.observe_reconcile("stack", "error", 0.5)
    first.observe_traversal("CREATE_IN_PROGRESS")
    first.observe_traversal("CREATE_COMPLETE")
    first.observe_traversal("INIT_COMPLETE")
    value = first.registry.get_sample_value
    assert value("convergence_reconcile_total", {"controller": "stack", "result": "error"}) == 1
    assert value("convergence_reconcile_errors_total", {"controller": "stack"}) == 1
    assert value("convergence_reconcile_time_seconds_count", {"controller": "stack"}) == 1
    assert value("convergence_traversals_started_total", {"action": "CREATE"}) == 1
    assert value("convergence_traversals_completed_total", {"action": "CREATE"}) == 1
    assert (
        second.registry.get_sample_value(
            "convergence_reconcile_total", {"controller": "stack", "result": "error"}
        )
        is None
    ), "a second Metrics must not share the first one's registry"


def test_queue_depth_is_read_at_scrape_time() -> None:
    recorder = metrics.Metrics()
    depth = [3]
    recorder.watch_queue_depth("stackresource", lambda: depth[0])
    depth[0] = 5
    assert (
        recorder.registry.get_sample_value("convergence_workqueue_depth", {"name": "stackresource"})
        == 5
    )


def _sources(kind: str, name: str) -> dict[str, str] | None:
    return {
        ("ConfigMap", "settings"): {"size": "3", "colour": "blue"},
        ("Secret", "creds"): {"password": "s3cret"},
    }.get((kind, name))


def test_parameters_from_merge_under_explicit_parameters() -> None:
    merged = merged_parameters(
        {"size": "7"},
        [
            {"kind": "ConfigMap", "name": "settings"},
            {"kind": "Secret", "name": "creds", "key": "password", "parameter": "db_password"},
        ],
        _sources,
    )
    assert merged == {"size": "7", "colour": "blue", "db_password": "s3cret"}


def test_missing_parameter_sources_are_named_without_values() -> None:
    with pytest.raises(ParametersNotFound) as raised:
        merged_parameters(
            None,
            [
                {"kind": "ConfigMap", "name": "absent"},
                {"kind": "Secret", "name": "creds", "key": "token"},
            ],
            _sources,
        )
    message = str(raised.value)
    assert "ConfigMap absent" in message
    assert "'token' of Secret creds" in message
    assert "s3cret" not in message, "a missing key must not reveal other values"


def test_secret_data_is_decoded() -> None:
    assert secret_strings({"a": "aGk=", "bad": "%%%"}) == {"a": "hi"}
