"""The operator's own kinds and state objects, which no stack may name (kube/reserved.py)."""

from __future__ import annotations

from typing import Any

import pytest

from convergence.operator.kube.reserved import operator_state, reserved_kind


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("convergence.dev/v1alpha1", "StackResource"),
        ("convergence.dev/v1alpha1", "Stack"),
        ("convergence.dev/v1", "AnyFutureKind"),
        ("apps/v1", "ControllerRevision"),
    ],
)
def test_the_operators_kinds_are_reserved(api_version: str, kind: str) -> None:
    refusal = reserved_kind(api_version, kind)
    assert refusal is not None
    assert kind in refusal, refusal


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("apps/v1", "Deployment"),
        ("example.convergence.dev/v1", "Stack"),  # another group that merely ends alike
    ],
)
def test_other_kinds_are_not(api_version: str, kind: str) -> None:
    assert reserved_kind(api_version, kind) is None


def _owned_by(kind: str, api_version: str = "convergence.dev/v1alpha1") -> dict[str, Any]:
    owner = {"apiVersion": api_version, "kind": kind, "name": "victim", "uid": "u"}
    return {"metadata": {"name": "x", "ownerReferences": [owner]}}


def test_revisions_and_traversal_maps_are_operator_state() -> None:
    state = operator_state(_owned_by("Stack"))
    assert state is not None
    assert "'victim'" in state, state


def test_private_resource_data_is_operator_state() -> None:
    body = {
        "metadata": {
            "name": "victim-pw-abc",
            "labels": {"convergence.dev/stack": "victim"},
            "annotations": {"convergence.dev/physical-name": "victim-pw-abc"},
        }
    }
    state = operator_state(body)
    assert state is not None
    assert "'victim'" in state, state


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": {"name": "plain"}},
        _owned_by("StackResource"),  # a stack's Kubernetes::Object: its product, not state
        _owned_by("Stack", "example.com/v1"),
    ],
)
def test_objects_a_stack_made_or_anyone_else_are_not(body: dict[str, Any]) -> None:
    assert operator_state(body) is None
