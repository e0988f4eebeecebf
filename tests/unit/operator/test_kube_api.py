"""The Kubernetes API's vocabulary without a server: refusals, sync map keys, revision JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from convergence.operator.kube.api import (
    ApiConflict,
    ApiError,
    ApiInvalid,
    ApiNotFound,
    NamespaceTerminating,
    api_error,
    error_from_answer,
    if_present,
    is_conflict,
    is_invalid,
    is_namespace_terminating,
    is_not_found,
    unless_absent,
)
from convergence.operator.kube.graphs import sender_of_sync_map_key, sync_map_key
from convergence.operator.kube.revisions import yaml_safe_json


def refused(
    status: int, reason: str = "", causes: list[dict[str, str]] | None = None
) -> ApiException:
    """What the client raises for a refusal with a meta/v1 Status body."""
    body: dict[str, Any] = {
        "kind": "Status",
        "status": "Failure",
        "reason": reason,
        "message": f"said {status}",
    }
    if causes is not None:
        body["details"] = {"causes": causes}
    return ApiException(status=status, reason=reason, body=json.dumps(body))


def test_each_refusal_maps_to_the_error_its_status_means() -> None:
    assert isinstance(api_error(refused(404, "NotFound")), ApiNotFound)
    assert isinstance(api_error(refused(409, "AlreadyExists")), ApiConflict)
    assert isinstance(api_error(refused(422, "Invalid")), ApiInvalid)
    other = api_error(refused(500, "InternalError"))
    assert type(other) is ApiError, "a status without a meaning of its own is the base error"
    assert (other.status, other.reason, other.message) == (500, "InternalError", "said 500")


def test_the_errors_are_the_clients_exceptions_too() -> None:
    error = api_error(refused(404))
    assert isinstance(error, ApiException), "code catching ApiException must still catch ours"
    assert api_error(error) is error


def test_predicates_answer_for_the_clients_exception_and_ours() -> None:
    for exc in (refused(404), api_error(refused(404))):
        assert is_not_found(exc)
        assert not is_conflict(exc)
    assert is_conflict(refused(409))
    assert is_invalid(refused(422))
    assert not is_not_found(ValueError("not from the API"))


def test_a_namespace_being_deleted_is_told_from_other_refusals() -> None:
    terminating = refused(403, "Forbidden", [{"reason": "NamespaceTerminating"}])
    assert is_namespace_terminating(terminating)
    assert isinstance(api_error(terminating), NamespaceTerminating)
    assert not is_namespace_terminating(refused(403, "Forbidden"))
    assert not is_namespace_terminating(ApiException(status=403, body="not JSON"))


def test_a_plain_text_answer_keeps_its_text_as_the_message() -> None:
    error = error_from_answer(404, "Not Found", "404 page not found")
    assert isinstance(error, ApiNotFound)
    assert str(error) == "404 page not found"


def test_if_present_and_unless_absent_take_only_not_found_as_absent() -> None:
    def gone() -> None:
        raise refused(404)

    def conflicting() -> None:
        raise refused(409)

    assert if_present(lambda: "body") == "body"
    assert if_present(gone) is None
    assert unless_absent(lambda: None) is True
    assert unless_absent(gone) is False
    with pytest.raises(ApiException):
        if_present(conflicting)
    with pytest.raises(ApiException):
        unless_absent(conflicting)


def test_sync_map_keys_spell_node_keys_a_configmap_can_hold() -> None:
    sender = "update:4f3c-aa.b"
    key = sync_map_key(sender)
    assert key == "update_4f3c-aa.b"
    assert sender_of_sync_map_key(key) == sender
    assert sync_map_key("update:no/slash") is None
    assert sync_map_key("other:a") is None
    assert sender_of_sync_map_key("traversal") is None


def test_revision_json_reads_the_same_as_yaml() -> None:
    data = {"text": "a \u00e9 \U0001f600 \\ end", "n": 1}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert yaml.safe_load(yaml_safe_json(text)) == data
