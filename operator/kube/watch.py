"""StackResource events without kopf: one list, then a watch, on a thread of its own.

A StackResource's only handler wakes its record's nodes in the work queue, and
there is one event per status write (every push, every step): most of what
the operator hears. kopf gives each event its full treatment (a diff base and
progress records built over deep copies of the object), which a profile of a
300-resource create put at about 45% of the operator's CPU time on that work
alone. So StackResources are watched here instead and handed to `observe`:

- first a list, every object observed as kopf's initial listing did (this is
  how a restarted operator wakes every record again);
- then a watch from the list's resourceVersion, with bookmarks, resumed from
  the last version seen when the server ends it;
- a 410 Gone (the version is too old to resume from) lists again; any other
  failure waits `RETRY_DELAY` and lists again, so nothing is missed for long.

One watcher serves every namespace (`namespaces` empty) or one namespace.
Objects come as the API's JSON, never as client models: nothing is copied
or converted on the way.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes.client import ApiClient

from convergence.operator.kube.api import ApiError, list_pages
from convergence.operator.kube.names import GROUP, STACK_RESOURCES, VERSION

logger = logging.getLogger("convergence.operator")

# What to do with one object: observe(namespace, body, deleted).
Observe = Callable[[str, Mapping[str, Any], bool], None]
# Seconds the server keeps one watch open; it then ends it and we resume.
WATCH_TIMEOUT = 300
# Seconds before listing again after a failure other than 410 Gone.
RETRY_DELAY = 1.0
HTTP_GONE = 410


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class RecordWatch:
    """Lists and watches the StackResources of one namespace (or all) for `observe`."""

    def __init__(self, api: ApiClient, namespace: str | None, observe: Observe) -> None:
        self.api = api
        self.namespace = namespace
        self.observe = observe

    @property
    def path(self) -> str:
        scope = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"/apis/{GROUP}/{VERSION}{scope}/{STACK_RESOURCES}"

    def start(self) -> None:
        """Watch on a daemon thread for as long as the process lives."""
        threading.Thread(
            target=self.run, name=f"watch-{self.namespace or 'all'}", daemon=True
        ).start()

    def run(self) -> None:
        """List, then watch, for ever."""
        while True:
            try:
                version = self.observe_all()
                while True:
                    version = self.watch(version)
            except Gone:
                logger.info("StackResource watch of %s expired; listing again", self.path)
            except Exception:
                logger.exception("StackResource watch of %s failed; listing again", self.path)
                time.sleep(RETRY_DELAY)

    def observe_all(self) -> str:
        """Observe every object; the list's resourceVersion."""
        version = ""
        for page in list_pages(self.api, self.path):
            for item in page.get("items", []):
                # A list's items carry no kind; the watch's objects do.
                self._observe(item, deleted=False)
            version = str(page.get("metadata", {}).get("resourceVersion", ""))
        return version

    def watch(self, version: str) -> str:
        """Observe events from `version` until the server ends the watch; the last version."""
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_TIMEOUT)),
        ]
        for event in self._events(query):
            kind = event.get("type")
            body = event.get("object") or {}
            if kind == "ERROR":
                if body.get("code") == HTTP_GONE:
                    raise Gone(body.get("message", ""))
                raise ApiError(int(body.get("code") or 0), str(body.get("reason", "")), str(body))
            version = str(body.get("metadata", {}).get("resourceVersion") or version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self._observe(body, deleted=kind == "DELETED")
        return version

    def _events(self, query: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        serialized = self.api.param_serialize(
            "GET",
            self.path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized, _request_timeout=WATCH_TIMEOUT + 30)
        raw = response.response  # the urllib3 response, read as the server streams it
        try:
            if response.status == HTTP_GONE:
                raise Gone("resourceVersion too old")
            if not 200 <= response.status <= 299:
                raise ApiError(response.status, str(response.reason or ""), raw.read().decode())
            pending = b""
            for chunk in raw.stream(amt=None, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            raw.release_conn()

    def _observe(self, body: Mapping[str, Any], *, deleted: bool) -> None:
        namespace = body.get("metadata", {}).get("namespace")
        if namespace:
            try:
                self.observe(str(namespace), body, deleted)
            except Exception:
                logger.exception("observing StackResource %s failed", body["metadata"].get("name"))
