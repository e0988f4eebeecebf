"""One vocabulary for the Kubernetes API: its refusals, and the writes our objects share.

Refusals. Every answer of the API with an error status is one `ApiError`, of
the subclass its status means: `ApiNotFound` (404), `ApiConflict` (409: the
name is taken, or a precondition failed), `ApiInvalid` (422: a value the
schema refuses, or a failed JSON patch `test`), `ApiForbidden` (403) and,
among those, `NamespaceTerminating` (nothing new can be made in a namespace
being deleted). `api_error()` is the one place that maps the client's
`ApiException` to them, and `request()` (a call the generated client has no
method for) raises them directly. The family subclasses `ApiException`, so
code that catches the client's exception catches ours too. Code that catches
an `ApiException` asks `is_not_found()`, `is_conflict()`, `is_invalid()` or
`is_namespace_terminating()`, never a status code; `if_present()` and
`unless_absent()` are the two common cases of "absent is no error".

Writes. `NamespacedApi` makes the API calls that the store, the traversal
graphs and the template revisions share in one namespace, and counts them by
kind (`writes`), as the in-memory store counts its writes, so benchmarks can
relate API writes to resources and edges:

- Compare-and-set: `status.version` is the engine's version (Heat's
  atomic_key). An engine write is one JSON patch of the status subresource
  whose first op tests `/status/version` and whose other ops `add` (i.e. set)
  each engine field and the next version. The API server applies a patch to
  the newest stored object and retries internally when another write lands in
  between, so the test and the writes are atomic; a failed test is a 422, read
  as `Conflict`. The patch touches only the engine's own fields: conditions
  written by the handlers and sync point entries pushed meanwhile are left as
  they are.
- First write: "not written yet" cannot be tested inside a JSON patch, so the
  first status of an object tests the resourceVersion it was read at.
- Pushes: one JSON patch op `add /status/syncPoints/<node>/<sender>` replaces
  exactly that sender's entry, applied to the newest object like every patch,
  so concurrent pushes of different senders never lose each other, and it
  leaves `status.version` alone, so a push never fails a worker's
  compare-and-set. (A JSON *merge* patch of the same key would merge into the
  sender's previous entry instead of replacing it: attributes that a newer
  push no longer carries, or keys of a map-valued attribute, would survive
  from an older traversal.)

Reads: given an `ObjectCache` (the operator gives one, fed by its watch
events), reads of single objects come from it when it knows the object, and
every response to a write goes into it; a refused write drops the entry, so
the retry reads from the API (`cache` says why this is safe). Without a cache
every read is a GET.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ParamSpec, TypeVar, cast

import urllib3
import urllib3.connection
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    CoreV1Api,
    CustomObjectsApi,
    V1OwnerReference,
)
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.plugin import Unavailable, check_write
from convergence.operator.engine.store import Conflict, NotFound, StoreError, SyncEntry
from convergence.operator.kube.cache import ObjectCache
from convergence.operator.kube.names import (
    API_VERSION,
    GROUP,
    STACK_KIND,
    STACKS,
    VERSION,
    is_object_name,
    json_pointer_token,
)
from convergence.operator.kube.records import (
    engine_version,
    status_of,
    sync_entry_to_status,
    sync_point_from_status,
)

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
# Server-side applies are made under this field manager.
FIELD_MANAGER = "convergence"

# Write kinds counted in NamespacedApi.writes.
STACK_WRITE = "stack"  # initialising or compare-and-set of a Stack's status
STACK_PUSH = "stack_push"
TEMPLATE_WRITE = "template"
RESOURCE_WRITE = "resource"  # create, compare-and-set or delete of a StackResource
RESOURCE_RELEASE = "resource_release"  # removing a StackResource's finalizer before its delete
PUSH = "push"
GRAPH_WRITE = "graph"


# -- refusals ------------------------------------------------------------------------------------


class ApiError(ApiException):
    """The API refused a request: its HTTP `status`, `reason` (a word such as
    NotFound) and `message` (the API's own sentence)."""

    def __init__(self, status: int, reason: str, message: str, body: str | None = None) -> None:
        super().__init__(status=status, reason=reason, body=body)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ApiNotFound(ApiError):
    """The object (or its namespace, or its kind) does not exist."""


class ApiConflict(ApiError):
    """The name is taken, or a precondition (resourceVersion, uid) failed."""


class ApiInvalid(ApiError):
    """The API refused a value, or a `test` op of a JSON patch failed."""


class ApiForbidden(ApiError):
    """The identity making the request may not make it (or the API refuses for a policy)."""


class NamespaceTerminating(ApiForbidden):
    """Nothing new can be made in the namespace: it is being deleted."""


_BY_STATUS: dict[int, type[ApiError]] = {
    403: ApiForbidden,
    404: ApiNotFound,
    409: ApiConflict,
    422: ApiInvalid,
}


def error_from_answer(status: int, reason: str, body: str) -> ApiError:
    """The refusal an answer with an error `status` means (`body` is a meta/v1 Status, mostly)."""
    try:
        decoded: Any = json.loads(body) if body else {}
    except ValueError:
        decoded = {}  # e.g. a plain-text "404 page not found"
    if not isinstance(decoded, dict):
        decoded = {}
    reason = str(decoded.get("reason") or reason or "")
    message = str(decoded.get("message") or body)
    kind = _BY_STATUS.get(status, ApiError)
    causes = (decoded.get("details") or {}).get("causes") or []
    if kind is ApiForbidden and any(c.get("reason") == "NamespaceTerminating" for c in causes):
        kind = NamespaceTerminating
    return kind(status, reason, message, body)


def api_error(exc: ApiException) -> ApiError:
    """The client's exception as one of ours (itself if it is one already)."""
    if isinstance(exc, ApiError):
        return exc
    return error_from_answer(int(exc.status or 0), str(exc.reason or ""), str(exc.body or ""))


def is_not_found(exc: BaseException) -> bool:
    """Whether the API answered that the object does not exist."""
    return isinstance(exc, ApiException) and isinstance(api_error(exc), ApiNotFound)


def is_conflict(exc: BaseException) -> bool:
    """Whether the API answered that the name is taken or a precondition failed."""
    return isinstance(exc, ApiException) and isinstance(api_error(exc), ApiConflict)


def is_invalid(exc: BaseException) -> bool:
    """Whether the API refused a value or a JSON patch `test`."""
    return isinstance(exc, ApiException) and isinstance(api_error(exc), ApiInvalid)


def is_namespace_terminating(exc: BaseException) -> bool:
    """Whether the API refused to make an object because its namespace is being deleted."""
    return isinstance(exc, ApiException) and isinstance(api_error(exc), NamespaceTerminating)


# Answers that say the API could not answer now, not that it refused: too many
# requests, an internal error (etcd unreachable), a bad gateway, unavailable, a timeout.
UNAVAILABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_unavailable(exc: BaseException) -> bool:
    """Whether the API could not be reached or could not answer now (try again later)."""
    if isinstance(exc, Unavailable):
        return True
    if isinstance(exc, ApiException):
        return int(exc.status or 0) in UNAVAILABLE_STATUSES
    # The connection itself: refused, reset, timed out (urllib3 wraps these).
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def _refusal(exc: ApiException) -> str:
    """A refusal as a line of text for a StoreError (status, reason, the API's answer)."""
    return f"{exc.status} {exc.reason}: {exc.body}"


_P = ParamSpec("_P")
_T = TypeVar("_T")


def if_present(call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
    """The answer to a call about one object; None when that object is absent."""
    try:
        return call(*args, **kwargs)
    except ApiException as exc:
        if is_not_found(exc):
            return None
        raise


def unless_absent(call: Callable[_P, Any], *args: _P.args, **kwargs: _P.kwargs) -> bool:
    """Make a write (a delete, a patch) that has nothing to do when its object is gone;
    whether the object was there."""
    try:
        call(*args, **kwargs)
    except ApiException as exc:
        if is_not_found(exc):
            return False
        raise
    return True


def as_object(value: object) -> dict[str, Any]:
    """An answer of the API that must be one object."""
    if not isinstance(value, dict):
        raise TypeError(f"the API returned {type(value).__name__}, expected an object")
    return value


def request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, Any]] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    accept: str = "application/json",
) -> dict[str, Any]:
    """One request through `api` (its credentials and default headers); the decoded answer."""
    serialized = api.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params={"Accept": accept, "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*serialized)
    data = cast(bytes, response.read())  # type: ignore[no-untyped-call]
    if not 200 <= response.status <= 299:
        raise error_from_answer(
            response.status, str(response.reason or ""), data.decode(errors="replace")
        )
    try:
        decoded: Any = json.loads(data) if data else {}
    except ValueError:
        decoded = {}
    return cast(dict[str, Any], decoded)


# Objects per page of a LIST. A StackResource is about 16 KiB of JSON; a whole
# stack's records in one answer parse into a peak of small objects that the
# allocator keeps after they are freed (a 3000-record LIST is ~50 MB of JSON).
LIST_PAGE = 250


def list_pages(
    api: ApiClient, path: str, *, query: Iterable[tuple[str, str]] = (), limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """One LIST of `path`, as the decoded pages of at most `limit` (`LIST_PAGE`) objects.

    Each page continues the first one's snapshot (the API's `continue` token
    keeps its resourceVersion), so the pages together are one consistent list
    and every page carries that list's resourceVersion; only one page is ever
    held decoded. A snapshot too old to continue (410) is an `ApiError`.
    """
    params = [*query, ("limit", str(limit or LIST_PAGE))]
    token = ""
    while True:
        page = request(api, "GET", path, query=params + ([("continue", token)] if token else []))
        yield page
        token = str(page.get("metadata", {}).get("continue") or "")
        if not token:
            return


# Requests that change nothing: never refused by a step's fence.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _FencedRequests:
    """A connection whose writes ask the step's fence right before they are sent."""

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        if method.upper() not in READ_METHODS and "dryRun=" not in url:
            check_write()
        super().request(method, url, *args, **kwargs)  # type: ignore[misc]


class _FencedHTTPConnection(_FencedRequests, urllib3.connection.HTTPConnection):
    pass


class _FencedHTTPSConnection(_FencedRequests, urllib3.connection.HTTPSConnection):
    pass


class _FencedHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _FencedHTTPConnection


class _FencedHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _FencedHTTPSConnection


class FencedApiClient(ApiClient):
    """The client the operator acts through: a write sent inside a step's `acting` block
    is refused when the step's engine is fenced off (engine/plugin/fencing.py); a dry
    run changes nothing and always goes.

    The check is made on the connection, at the last moment before the request
    is written to it: after the connection is taken from the pool, or opened
    (a TLS handshake on a loaded machine takes long enough for a process to be
    frozen in it), and again on each retry.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rest_client.pool_manager.pool_classes_by_scheme = {
            "http": _FencedHTTPConnectionPool,
            "https": _FencedHTTPSConnectionPool,
        }


# -- our objects in one namespace ----------------------------------------------------------------


class NamespacedApi:
    """The API calls on Stacks, StackResources and what they own in one namespace.

    Thread-safe; counts every write by kind in `writes`.
    """

    def __init__(
        self, api_client: ApiClient, namespace: str, cache: ObjectCache | None = None
    ) -> None:
        self.client = api_client
        self.namespace = namespace
        self.cache = cache
        self.objects = CustomObjectsApi(api_client)
        self.apps = AppsV1Api(api_client)
        self.core = CoreV1Api(api_client)
        self._count_lock = threading.Lock()
        self.writes: Counter[str] = Counter()

    def count(self, kind: str) -> None:
        """One more API write of `kind`."""
        with self._count_lock:
            self.writes[kind] += 1

    # -- reads ---------------------------------------------------------------------------------

    def read(self, plural: str, name: str, fresh: bool = False) -> Mapping[str, Any] | None:
        """The object's body: from the cache unless `fresh` or unknown there; None if absent."""
        if not is_object_name(name):
            return None
        if self.cache is not None and not fresh:
            cached = self.cache.get(plural, name)
            if cached is not None:
                return cached
            if self.cache.known_absent(plural, name):
                return None
        body = if_present(
            self.objects.get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            plural,
            name,
        )
        if body is None:
            return None
        body = as_object(body)
        self.remember(plural, body)
        return body

    def remember(self, plural: str, body: Mapping[str, Any]) -> None:
        """Keep a body the API answered with (a write's response) for later reads."""
        if self.cache is not None:
            self.cache.observe(plural, body)

    def forget(self, plural: str, name: str) -> None:
        """Read the object from the API next time (what is known of it is out of date)."""
        if self.cache is not None:
            self.cache.invalidate(plural, name)

    def deleted(self, plural: str, name: str, uid: str) -> None:
        """The object `uid` is gone (this process deleted it): read as absent, without a GET."""
        if self.cache is not None:
            self.cache.deleted(plural, name, uid)

    def stack_owner(self, stack: str) -> V1OwnerReference:
        """The owner reference to the Stack `stack` for what it owns; NotFound without one."""
        # A Stack deleted and made again under the same name has another uid, and
        # an owner reference to the old uid would have the garbage collector delete
        # the new child. The cache drops a Stack on its DELETED event and takes the
        # new one from its ADDED event, which kopf handles before the new Stack's
        # create handler can start anything, so the uid read here is the current one.
        body = self.read(STACKS, stack)
        if body is None:
            raise NotFound(f"stack {stack!r}")
        return V1OwnerReference(
            api_version=API_VERSION,
            kind=STACK_KIND,
            name=stack,
            uid=str(body["metadata"]["uid"]),
            controller=True,
            block_owner_deletion=True,
        )

    # -- status writes -------------------------------------------------------------------------

    def patch_status(
        self,
        plural: str,
        name: str,
        patch: list[dict[str, Any]] | dict[str, Any],
        content_type: str,
    ) -> dict[str, Any]:
        """Patch the status subresource; the object after it (kept in the cache).

        NotFound when the object is gone; any other refusal is raised as an
        `ApiError` (an `ApiInvalid` for a failed `test` op or a refused value).
        """
        # The client would send a list as a merge patch unless told otherwise.
        try:
            body = as_object(
                self.objects.patch_namespaced_custom_object_status(
                    GROUP, VERSION, self.namespace, plural, name, patch, _content_type=content_type
                )
            )
        except ApiException as exc:
            # Refused because what was known is out of date (or gone): read anew next time.
            self.forget(plural, name)
            if is_not_found(exc):
                raise NotFound(f"{plural} {name!r}") from None
            raise api_error(exc) from None
        self.remember(plural, body)
        return body

    def compare_and_set(
        self,
        plural: str,
        name: str,
        expected: int,
        fields: Mapping[str, Any],
        extra_ops: Iterable[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Set the engine's status fields if status.version is still `expected`."""
        ops = [{"op": "test", "path": "/status/version", "value": expected}]
        ops += [{"op": "add", "path": f"/status/{k}", "value": v} for k, v in fields.items()]
        ops += extra_ops
        try:
            return self.patch_status(plural, name, ops, JSON_PATCH)
        except ApiInvalid as exc:
            # A failed test and an invalid value are both 422: the version tells them apart.
            current = self.read(plural, name, fresh=True)
            # A Stack the engine never wrote has no record; a StackResource has one at 0.
            if current is None or (plural == STACKS and engine_version(current) == 0):
                raise NotFound(f"{plural} {name!r}") from None
            if engine_version(current) != expected:
                raise Conflict(f"{plural} {name!r} changed") from None
            raise StoreError(f"{plural} {name!r}: write refused: {_refusal(exc)}") from exc

    def first_write(
        self,
        plural: str,
        name: str,
        fields: Mapping[str, Any],
        sync_points: Iterable[str],
        taken: StoreError,
        extra_ops: Iterable[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Write the engine's first status of an object (version 0 -> 1); raise `taken` if written.

        It tests the resourceVersion of the object that was read without a
        version, and reads again when anything else wrote it meanwhile (pushes
        come before the first status: the node waited for them). The sync point
        maps not made by a push yet are made empty, so that later pushes are one
        `add` of one key.
        """
        sync_points = list(sync_points)
        extra_ops = list(extra_ops)
        refused_at: str | None = None
        refusal: ApiInvalid | None = None
        while True:
            body = self.read(plural, name, fresh=refused_at is not None)
            if body is None:
                raise NotFound(f"{plural} {name!r}")
            if engine_version(body) != 0:
                raise taken
            resource_version = str(body["metadata"]["resourceVersion"])
            if resource_version == refused_at:
                assert refusal is not None
                raise StoreError(f"{plural} {name!r}: write refused: {_refusal(refusal)}")
            status = status_of(body)
            ops: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}
            ]
            if not isinstance(body.get("status"), Mapping):
                ops.append({"op": "add", "path": "/status", "value": {}})
            present = status.get("syncPoints")
            if not isinstance(present, Mapping):
                empty_maps: dict[str, Any] = {key: {} for key in sync_points}
                ops.append({"op": "add", "path": "/status/syncPoints", "value": empty_maps})
            else:
                ops += [
                    {"op": "add", "path": f"/status/syncPoints/{key}", "value": {}}
                    for key in sync_points
                    if not isinstance(present.get(key), Mapping)
                ]
            ops += [{"op": "add", "path": f"/status/{k}", "value": v} for k, v in fields.items()]
            ops += extra_ops
            try:
                return self.patch_status(plural, name, ops, JSON_PATCH)
            except ApiInvalid as exc:
                # Written meanwhile (the test failed), or refused: the next read tells.
                refused_at, refusal = resource_version, exc

    # -- sync points ---------------------------------------------------------------------------

    def push(
        self, plural: str, name: str, sync_point: str, sender: str, entry: SyncEntry
    ) -> dict[str, SyncEntry]:
        """Put `sender`'s entry in the object's sync point `sync_point`; the sync point after.

        One write either way: an `add` of the one key into the map, or, when the
        map is not there yet (a record is created without status), a merge patch
        of the entry alone, which makes the map or adds the key to one a
        concurrent push just made (a missing map holds no entry of this sender).
        """
        if not is_object_name(name):
            raise NotFound(f"{plural} {name!r}")
        value = sync_entry_to_status(entry)
        known = self.read(plural, name)
        missing = known is not None and not isinstance(
            status_of(known).get("syncPoints", {}).get(sync_point), Mapping
        )
        try:
            if not missing:
                path = f"/status/syncPoints/{sync_point}/{json_pointer_token(sender)}"
                add = [{"op": "add", "path": path, "value": value}]
                try:
                    body = self.patch_status(plural, name, add, JSON_PATCH)
                except ApiInvalid:
                    missing = True  # made since the cache saw the object, or refused
            if missing:
                make = {"status": {"syncPoints": {sync_point: {sender: value}}}}
                body = self.patch_status(plural, name, make, MERGE_PATCH)
        except ApiInvalid as exc:
            raise StoreError(f"{plural} {name!r}: push refused: {_refusal(exc)}") from exc
        self.count(STACK_PUSH if plural == STACKS else PUSH)
        return sync_point_from_status(status_of(body).get("syncPoints", {}).get(sync_point))

    def sync_point(self, plural: str, name: str, sync_point: str) -> dict[str, SyncEntry]:
        """The object's sync point `sync_point` ({} if the object is absent)."""
        body = self.read(plural, name)
        if body is None:
            return {}
        return sync_point_from_status(status_of(body).get("syncPoints", {}).get(sync_point))
