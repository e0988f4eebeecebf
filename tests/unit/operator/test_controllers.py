"""The controllers' decisions, on the simulator's engine instead of the API.

The Stack controller is given its namespace's engine by a stand-in for
`Namespaces` and reads parametersFrom sources from a dict; the StackResource
controller's summary and metrics are fed the simulator's step reports.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, cast

import pytest
import yaml

from convergence.operator.controllers import Rejected, Requeue
from convergence.operator.controllers.drift import drift_event
from convergence.operator.controllers.requests import (
    CANCEL,
    RETRY,
    ROLLBACK,
    RequestKind,
    handled,
    pending,
)
from convergence.operator.controllers.stack import (
    PARAMETERS_RETRY_DELAY,
    StackController,
    StackRequest,
)
from convergence.operator.controllers.stackresource import StepMetrics, summarize
from convergence.operator.engine.converger import StepReport
from convergence.operator.engine.drift import Drift
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.engine.wiring import Engine
from convergence.operator.metrics import Metrics
from convergence.operator.namespaces import Namespaces
from convergence.operator.spec import REVISION_HISTORY_LIMIT, StackSpec
from convergence.operator.status import Status
from convergence.operator.testing import hot

TEST_RESOURCE = "OS::Heat::TestResource"
TEMPLATE = hot.template(
    {"A": {"type": "OS::Heat::TestResource", "properties": {"value": "a"}}},
    parameters={"word": {"type": "string"}},
)

# -- the spec ------------------------------------------------------------------------------------


def test_the_spec_has_the_crds_defaults() -> None:
    spec = StackSpec.of({"spec": {"template": TEMPLATE}})
    assert spec.disable_rollback is True
    assert spec.repair_drift is True
    assert spec.revision_history_limit == REVISION_HISTORY_LIMIT
    assert spec.timeout is None
    assert spec.parameters_from is None
    assert spec.service_account_name is None


def test_the_spec_reads_camel_case_fields_and_one_timeout_unit() -> None:
    spec = StackSpec.of(
        {
            "spec": {
                "template": TEMPLATE,
                "disableRollback": False,
                "timeoutMinutes": 2,
                "parametersFrom": [{"kind": "Secret", "name": "x"}],
                "serviceAccountName": "deployer",
                "somethingNewer": True,
            }
        }
    )
    assert spec.disable_rollback is False
    assert spec.timeout == 120.0
    assert spec.parameters_from == [{"kind": "Secret", "name": "x"}]
    assert spec.service_account_name == "deployer"
    assert StackSpec.of({"spec": {"timeoutSeconds": 7}}).timeout == 7.0


# -- the Stack controller ------------------------------------------------------------------------


class SimulatedNamespaces:
    """What the Stack controller asks of Namespaces, answered by one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def engine(self, namespace: str) -> Engine:
        return self.sim.engine


class Controller(StackController):
    """The Stack controller with its two API reads answered from memory."""

    def __init__(self, sim: Simulator, sources: Mapping[str, Mapping[str, str]]) -> None:
        super().__init__(cast(Namespaces, SimulatedNamespaces(sim)), cast(Status, None))
        self.sources = sources
        # (annotation, value, status written first) of each request consumed.
        self.consumed: list[tuple[str, str, dict[str, Any]]] = []

    def fresh(self, request: StackRequest) -> StackRequest:
        return request

    def consume(
        self, request: StackRequest, status: Mapping[str, Any], kind: RequestKind, value: str
    ) -> None:
        self.consumed.append((kind.annotation, value, dict(status)))

    def observe_generation(self, request: StackRequest, patch: MutableMapping[str, Any]) -> None:
        """Left to kopf's patch, which the tests read (the conditional write is the API's)."""

    def read_source(
        self,
        namespace: str,
        service_account: str | None,
        kind: str,
        name: str,
        field: str = "parametersFrom",
    ) -> Mapping[str, str] | None:
        return self.sources.get(f"{kind}/{name}")


def request(
    spec: Mapping[str, Any],
    *,
    generation: int = 1,
    annotations: Mapping[str, str] | None = None,
    **status: Any,
) -> StackRequest:
    return StackRequest.of(
        {
            "metadata": {
                "name": "s",
                "namespace": "ns",
                "generation": generation,
                "annotations": dict(annotations or {}),
            },
            "spec": dict(spec),
            "status": status,
        }
    )


Notices = list[tuple[str, str, str]]


def reconcile(controller: StackController, stack: StackRequest) -> tuple[dict[str, Any], Notices]:
    patch: dict[str, Any] = {}
    notices: Notices = []
    controller.reconcile(stack, patch, lambda *notice: notices.append(notice))
    return patch, notices


def test_a_new_generation_starts_a_traversal_with_parameters_from_a_source() -> None:
    sim = Simulator()
    controller = Controller(sim, {"ConfigMap/words": {"word": "hello"}})
    spec = {
        "template": TEMPLATE,
        "parametersFrom": [{"kind": "ConfigMap", "name": "words"}],
    }
    patch, notices = reconcile(controller, request(spec, generation=4))
    assert patch == {"observedGeneration": 4}
    assert notices == [("Normal", "StackUpdate", "Converging to generation 4")]
    assert sim.stack("s").phase == "CREATE_IN_PROGRESS"
    assert sim.memory.get_template(sim.stack("s").template or "").parameters == {"word": "hello"}


def test_files_from_a_source_are_merged_under_spec_files_for_template_resources() -> None:
    sim = Simulator()
    server = yaml.safe_dump(hot.template(hot.resources("OS::Heat::None", box={})))
    controller = Controller(
        sim, {"ConfigMap/templates": {"server.yaml": server, "motd": "from the ConfigMap"}}
    )
    spec = {
        "template": hot.template({"web": {"type": "server.yaml"}}),
        "files": {"motd": "inline"},
        "filesFrom": [{"kind": "ConfigMap", "name": "templates"}],
    }
    patch, _ = reconcile(controller, request(spec, generation=2))
    assert patch == {"observedGeneration": 2}, patch
    revision = sim.memory.get_template(sim.stack("s").template or "")
    assert revision.files == {"server.yaml": server, "motd": "inline"}, "spec.files wins"
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_COMPLETE", sim.stack("s").status_reason


def test_one_key_of_a_files_source_becomes_the_file_it_names() -> None:
    sim = Simulator()
    server = yaml.safe_dump(hot.template(hot.resources("OS::Heat::None", box={})))
    controller = Controller(sim, {"Secret/private": {"t": server}})
    spec = {
        "template": hot.template({"web": {"type": "server.yaml"}}),
        "filesFrom": [{"kind": "Secret", "name": "private", "key": "t", "file": "server.yaml"}],
    }
    reconcile(controller, request(spec))
    revision = sim.memory.get_template(sim.stack("s").template or "")
    assert revision.files == {"server.yaml": server}


def test_a_missing_files_source_is_reported_as_files_not_found() -> None:
    sim = Simulator()
    spec = {
        "template": TEMPLATE,
        "filesFrom": [{"kind": "ConfigMap", "name": "templates", "key": "server.yaml"}],
    }
    patch: dict[str, Any] = {}
    notices: Notices = []
    with pytest.raises(Requeue):
        Controller(sim, {"ConfigMap/templates": {"other.yaml": "x"}}).reconcile(
            request(spec), patch, lambda *notice: notices.append(notice)
        )
    assert patch["statusReason"] == (
        "filesFrom: not found: key 'server.yaml' of ConfigMap templates"
    )
    assert [n[:2] for n in notices] == [("Warning", "FilesNotFound")]
    assert sim.memory.get_stack("s") is None, "nothing starts"


def test_a_converged_generation_starts_nothing() -> None:
    sim = Simulator()
    patch, notices = reconcile(
        Controller(sim, {}), request({"template": TEMPLATE}, observedGeneration=1)
    )
    assert (patch, notices) == ({}, [])
    assert sim.memory.get_stack("s") is None


def test_a_missing_source_is_reported_once_and_retried() -> None:
    sim = Simulator()
    controller = Controller(sim, {})
    spec = {"template": TEMPLATE, "parametersFrom": [{"kind": "Secret", "name": "gone"}]}
    patch: dict[str, Any] = {}
    notices: Notices = []
    with pytest.raises(Requeue) as raised:
        controller.reconcile(request(spec), patch, lambda *notice: notices.append(notice))
    assert raised.value.delay == PARAMETERS_RETRY_DELAY
    assert patch["statusReason"] == "parametersFrom: not found: Secret gone"
    assert [n[:2] for n in notices] == [("Warning", "ParametersNotFound")]
    assert sim.memory.get_stack("s") is None, "nothing starts"
    notices.clear()
    with pytest.raises(Requeue):
        controller.reconcile(
            request(spec, statusReason=patch["statusReason"]),
            {},
            lambda *notice: notices.append(notice),
        )
    assert notices == [], "the same reason is not posted again"


def test_an_invalid_template_is_rejected_with_the_generation_observed() -> None:
    sim = Simulator()
    patch: dict[str, Any] = {}
    notices: Notices = []
    bad = {"template": hot.template({"A": {"type": "X"}})}
    with pytest.raises(Rejected, match="invalid template"):
        Controller(sim, {}).reconcile(
            request(bad, generation=2), patch, lambda *n: notices.append(n)
        )
    assert patch["observedGeneration"] == 2
    assert {c["type"]: c["reason"] for c in patch["conditions"]}["Failed"] == "InvalidTemplate"
    assert [n[:2] for n in notices] == [("Warning", "InvalidTemplate")]


def test_a_request_is_carried_out_recorded_and_then_consumed() -> None:
    sim = Simulator()
    controller = Controller(sim, {})
    spec = {"template": TEMPLATE, "parameters": {"word": "w"}}
    reconcile(controller, request(spec))
    patch, notices = reconcile(
        controller,
        request(spec, observedGeneration=1, annotations={CANCEL.annotation: "sometimes"}),
    )
    traversal = sim.stack("s").traversal
    assert patch["handledCancel"] == "sometimes"
    assert patch["handledCancelTraversal"] == traversal
    assert patch["statusReason"].startswith("Operation refused: ")
    assert [n[:2] for n in notices] == [("Warning", "OperationRefused")]
    # The status, record and outcome, is written before the annotation goes.
    assert controller.consumed == [(CANCEL.annotation, "sometimes", patch)]


def test_the_same_cancel_in_a_later_update_is_carried_out_again() -> None:
    sim = Simulator()
    controller = Controller(sim, {})

    def slow(value: str) -> dict[str, Any]:
        properties = {"value": value, "wait_secs": 5}
        return {
            "template": hot.template(hot.resources(TEST_RESOURCE, A={"properties": properties}))
        }

    reconcile(controller, request(slow("a")))
    sim.run_until_quiet()
    cancels: list[str] = []
    status: dict[str, Any] = {}
    for generation, value in ((2, "b"), (3, "c")):
        update = slow(value)
        reconcile(controller, request(update, generation=generation, **status))
        sim.step()  # the update of A starts
        assert sim.stack("s").phase == "UPDATE_IN_PROGRESS"
        patch, _ = reconcile(
            controller,
            request(
                update,
                generation=generation,
                observedGeneration=generation,
                annotations={CANCEL.annotation: "no-rollback"},
                **status,
            ),
        )
        assert sim.stack("s").phase == "UPDATE_FAILED", f"cancel in generation {generation}"
        cancels.append(patch["handledCancelTraversal"])
        status = {k: v for k, v in patch.items() if k.startswith("handled")}
        sim.run_until_quiet()
    assert len(set(cancels)) == 2, "each cancel is recorded at its own traversal"


def test_a_request_handled_at_the_current_traversal_is_only_consumed() -> None:
    # The annotation of a request carried out just before the operator stopped.
    sim = Simulator()
    controller = Controller(sim, {})
    spec = {"template": TEMPLATE, "parameters": {"word": "w"}}
    reconcile(controller, request(spec))
    traversal = sim.stack("s").traversal
    marker: dict[str, Any] = ROLLBACK.marker("1", traversal)
    patch, notices = reconcile(
        controller,
        request(spec, observedGeneration=1, annotations={ROLLBACK.annotation: "1"}, **marker),
    )
    assert notices == []
    assert sim.stack("s").traversal == traversal, "nothing started"
    assert [c[:2] for c in controller.consumed] == [(ROLLBACK.annotation, "1")]
    assert patch == ROLLBACK.marker("1", traversal)


def test_a_value_an_older_operator_handled_is_consumed_without_acting() -> None:
    sim = Simulator()
    controller = Controller(sim, {})
    spec = {"template": TEMPLATE, "parameters": {"word": "w"}}
    reconcile(controller, request(spec))
    traversal = sim.stack("s").traversal
    _, notices = reconcile(
        controller,
        request(
            spec,
            observedGeneration=1,
            annotations={CANCEL.annotation: "rollback"},
            handledCancel="rollback",
        ),
    )
    assert notices == []
    assert sim.stack("s").traversal == traversal
    (consumed,) = controller.consumed
    assert consumed[2]["handledCancelTraversal"] == traversal, "recorded in the new form"


def test_a_rollback_of_a_stack_never_created_is_refused() -> None:
    patch, notices = reconcile(
        Controller(Simulator(), {}),
        request(
            {"template": TEMPLATE}, observedGeneration=1, annotations={ROLLBACK.annotation: "1"}
        ),
    )
    assert patch["handledRollback"] == "1"
    assert patch["statusReason"] == "Operation refused: Stack s has not been created"
    assert [n[:2] for n in notices] == [("Warning", "OperationRefused")]


def test_an_annotation_value_is_a_request_until_handled_at_the_current_traversal() -> None:
    def at(current: str) -> Any:
        return lambda traversal: traversal == current

    assert pending(RETRY, {RETRY.annotation: "1"}, {}, at("t1")) == "1"
    assert pending(RETRY, {}, {}, at("t1")) is None
    handled_at_t1 = RETRY.marker("1", "t1")
    assert pending(RETRY, {RETRY.annotation: "1"}, handled_at_t1, at("t1")) is None
    assert pending(RETRY, {RETRY.annotation: "1"}, handled_at_t1, at("t2")) == "1"
    assert pending(RETRY, {RETRY.annotation: "2"}, handled_at_t1, at("t1")) == "2"
    # An older operator's record: the value alone, acted on once.
    assert pending(RETRY, {RETRY.annotation: "1"}, {"handledRetry": "1"}, at("t2")) is None


def test_a_request_is_handled_once_recorded_and_its_annotation_gone() -> None:
    def body(annotations: dict[str, str], **status: str) -> dict[str, Any]:
        return {"metadata": {"annotations": annotations}, "status": status}

    recorded = {"handledCancel": "rollback"}
    assert handled(CANCEL, body({}, **recorded), "rollback")
    assert not handled(CANCEL, body({CANCEL.annotation: "rollback"}, **recorded), "rollback")
    assert not handled(CANCEL, body({}), "rollback")


# -- the StackResource controller ----------------------------------------------------------------


def two_resources(sim: Simulator) -> None:
    sim.create(
        "s",
        hot.template(
            hot.resources(
                "OS::Heat::TestResource",
                A={"properties": {"wait_secs": 2}},
                B={"depends_on": ["A"]},
            )
        ),
    )


def test_a_wake_up_is_summed_up_as_a_poll_what_is_awaited_and_a_deletion() -> None:
    sim = Simulator()
    two_resources(sim)
    records = {r.name: r for r in sim.resources("s")}
    started = sim.step()
    assert started is not None
    assert started.resource == "A"
    # As a watch event does: B's record is woken while A is still being created.
    sim.wake("s", records["B"].id)
    waiting_b = [r for r in sim.run(2) if r.resource == "B"]
    summary = summarize([started, *waiting_b])
    assert summary.poll_after == 1.0
    assert summary.waiting_for == [f"update:{records['A'].id}"]
    assert not summary.deleted
    sim.run_until_quiet()
    sim.delete("s")
    deleted = [r for r in sim.run(50) if r.resource == "A"]
    assert summarize(deleted).deleted


def test_step_metrics_count_actions_and_waits_on_sync_points() -> None:
    sim = Simulator()
    two_resources(sim)
    recorder = Metrics()
    counter = StepMetrics(recorder)

    def count(report: StepReport | None, clock: float) -> None:
        assert report is not None
        record = next((r for r in sim.resources("s") if r.name == report.resource), None)
        counter.count(report, record, clock)

    count(sim.step(), 0.0)  # A's create starts
    # As a watch event does: B's record is woken while A is still being created.
    sim.wake("s", next(r.id for r in sim.resources("s") if r.name == "B"))
    for clock, report in enumerate(sim, start=1):
        count(report, float(clock))
    value = recorder.registry.get_sample_value
    labels = {"type": "OS::Heat::TestResource", "action": "CREATE"}
    assert value("convergence_resource_actions_total", {**labels, "result": "started"}) == 2
    assert value("convergence_resource_actions_total", {**labels, "result": "success"}) == 2
    assert value("convergence_resource_action_duration_seconds_count", labels) == 2
    assert value("convergence_dependency_wait_seconds_count") == 1, "B waited for A once"
    assert value("convergence_nodes_waiting") == 0


# -- the drift check -----------------------------------------------------------------------------


def test_a_drift_is_a_warning_saying_what_was_put_back_or_not() -> None:
    repaired = Drift("web", "r1", "Kubernetes::Object", "ConfigMap ns/web recreated")
    failed = Drift("web", "r1", "Kubernetes::Object", "repair failed: boom", repaired=False)
    assert drift_event(repaired) == (
        "Warning",
        "DriftRepaired",
        "web (Kubernetes::Object): ConfigMap ns/web recreated",
    )
    assert drift_event(failed)[1] == "DriftRepairFailed"
