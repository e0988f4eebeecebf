"""core/v1 Events the operator posts itself, outside kopf's handlers.

kopf posts Events only for the object a handler was called for; the work
queue's steps and reports run outside any handler, so the operator builds and
posts these itself, under the same reporting component as kopf's. An Event is
a report, never a reason to fail a step: a failure to post one is logged, and
a namespace being deleted takes no Events, which is no news.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from typing import Any

import kubernetes

from convergence.operator.kube.api import is_namespace_terminating
from convergence.operator.kube.names import GROUP, VERSION

COMPONENT = "convergence"
# The API keeps at most this many characters of an Event's message.
MESSAGE_LIMIT = 1024

logger = logging.getLogger("convergence.operator")


def object_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The involvedObject of an Event about `body`."""
    metadata = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion", f"{GROUP}/{VERSION}"),
        "kind": body.get("kind"),
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "uid": metadata.get("uid"),
    }


def event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> Any:
    """A core/v1 Event about `body`, stamped now."""
    now = datetime.datetime.now(datetime.UTC)
    return kubernetes.client.CoreV1Event(
        metadata=kubernetes.client.V1ObjectMeta(generate_name=f"{COMPONENT}-"),
        involved_object=kubernetes.client.V1ObjectReference(**object_reference(body)),
        type=type_,
        reason=reason,
        message=message[:MESSAGE_LIMIT],
        first_timestamp=now,
        last_timestamp=now,
        count=1,
        source=kubernetes.client.V1EventSource(component=COMPONENT),
        reporting_component=COMPONENT,
        reporting_instance=os.environ.get("HOSTNAME", COMPONENT),
    )


class EventPoster:
    """Posts Events with the operator's client, and logs each one."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.api = api

    def post(
        self, namespace: str, body: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Post an Event about `body`; it is logged too.

        Events mark an action's start, completion or failure (never a poll),
        which is what the log should tell as well.
        """
        ref = object_reference(body)
        logger.log(
            logging.WARNING if type_ == "Warning" else logging.INFO,
            "%s %s/%s: %s",
            reason,
            ref["kind"],
            ref["name"],
            message,
        )
        try:
            kubernetes.client.CoreV1Api(self.api).create_namespaced_event(
                namespace, event(body, type_, reason, message)
            )
        except kubernetes.client.ApiException as exc:
            if is_namespace_terminating(exc):
                return
            logger.warning(
                "could not post event %s on %s %s: %s", reason, ref["kind"], ref["name"], exc.reason
            )
