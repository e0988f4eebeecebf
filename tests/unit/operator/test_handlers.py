"""kopf's record of the last Stack handled: a digest of its essence, made without copying
the whole Stack."""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import kopf

from convergence.operator.handlers import KOPF_PREFIX, DigestDiffBaseStorage


class NotToBeCopied:
    """A status value that fails the test if kopf deep-copies it."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        raise AssertionError("the status was deep-copied")


def stack(status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "convergence.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {
            "name": "s",
            "uid": "u",
            "resourceVersion": "7",
            "labels": {"team": "a"},
            "annotations": {
                "convergence.dev/rollback": "now",
                f"{KOPF_PREFIX}/last-handled-configuration": "{}",
            },
        },
        "spec": {"template": {"resources": {f"r{i}": {"type": "T"} for i in range(50)}}},
        "status": status,
    }


def test_the_digest_is_that_of_kopfs_own_essence_of_the_whole_stack() -> None:
    storage = DigestDiffBaseStorage(prefix=KOPF_PREFIX, key="last-handled-configuration")
    body = kopf.Body(cast(kopf.RawBody, stack({"phase": "CREATE_COMPLETE"})))
    whole = kopf.AnnotationsDiffBaseStorage.build(storage, body=body)
    encoded = json.dumps(whole, sort_keys=True, separators=(",", ":")).encode()
    assert dict(storage.build(body=body)) == {"sha256": hashlib.sha256(encoded).hexdigest()}
    # The user's annotations and the spec count; kopf's own and the status do not.
    assert "convergence.dev/rollback" in whole["metadata"]["annotations"]
    assert "status" not in whole
    assert "spec" in whole


def test_the_status_is_not_copied_and_a_change_of_the_spec_changes_the_digest() -> None:
    storage = DigestDiffBaseStorage(prefix=KOPF_PREFIX, key="last-handled-configuration")
    body = stack({"graph": NotToBeCopied()})
    before = storage.build(body=kopf.Body(cast(kopf.RawBody, body)))
    body["status"] = {"graph": NotToBeCopied(), "phase": "UPDATE_COMPLETE"}
    assert storage.build(body=kopf.Body(cast(kopf.RawBody, body))) == before
    body["spec"]["template"]["resources"]["r0"]["type"] = "U"
    assert storage.build(body=kopf.Body(cast(kopf.RawBody, body))) != before
