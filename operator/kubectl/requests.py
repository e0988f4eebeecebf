"""Requests to the operator by annotation, as `cancel`, `rollback` and `retry` write them.

The operator reads `convergence.dev/cancel`, `/rollback` and `/retry` on a
Stack, carries out each request, records the value it handled in
`status.handledCancel` / `handledRollback` / `handledRetry` and then takes the
annotation off (`controllers.requests`), so the same request can be made again
later. These commands write exactly those annotations; with `--wait` they wait
until the operator has handled the request and print what the stack's phase
and reason then are (a refused request shows there).
"""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any

from kubernetes.client import CustomObjectsApi

from convergence.operator.controllers.requests import RequestKind, handled
from convergence.operator.kube.api import MERGE_PATCH
from convergence.operator.kube.names import GROUP, STACKS, VERSION
from convergence.operator.kube.records import status_of
from convergence.operator.kubectl import output, snapshot
from convergence.operator.kubectl.client import PluginError, target

POLL_SECONDS = 0.5


def new_value() -> str:
    """A value no earlier request had: the time now, to the microsecond."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def add_wait(parser: argparse.ArgumentParser) -> None:
    """The `--wait` and `--timeout` options of a request."""
    parser.add_argument(
        "--wait", action="store_true", help="wait until the operator has handled the request"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds --wait waits (default: 60)"
    )


def request(args: argparse.Namespace, request: str, kind: RequestKind, value: str) -> int:
    """Annotate the Stack `args.stack` with `kind.annotation=value`; with --wait, await its
    handling. A request of the same value still waiting for the operator is waited for."""
    where = target(args)
    snapshot.read_stack_body(where, args.stack)  # a clear "not found" before any write
    annotation = kind.annotation
    CustomObjectsApi(where.api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        where.namespace,
        STACKS,
        args.stack,
        {"metadata": {"annotations": {annotation: value}}},
        _content_type=MERGE_PATCH,
    )
    output.emit(f"stack.{GROUP}/{args.stack} {request} requested ({annotation}={value})\n")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while True:
        body = snapshot.read_stack_body(where, args.stack)
        if handled(kind, body, value):
            status = status_of(body)
            reason = status.get("statusReason") or ""
            output.emit(f"handled: {status.get('phase')}{f' ({reason})' if reason else ''}\n")
            return 0
        if time.monotonic() > deadline:
            raise PluginError(
                f"the operator did not handle the {request} request in {args.timeout:g}s "
                f"(is it running and watching namespace {where.namespace}?)"
            )
        time.sleep(POLL_SECONDS)


def add_request(subparsers: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """The sub-parser of one request command."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stack", help="the Stack's name")
    add_wait(parser)
    return parser
