"""Requests to the operator by annotation, as `cancel`, `rollback` and `retry` write them.

The operator reads `convergence.dev/cancel`, `/rollback` and `/retry` on a
Stack and carries out each new value once, keeping the value it handled last
in `status.handledCancel` / `handledRollback` / `handledRetry`
(`controllers.stack`). These commands write exactly those annotations; with
`--wait` they wait until the operator has handled the value and print what
the stack's phase and reason then are (a refused request shows there).
"""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any

from kubernetes.client import CustomObjectsApi

from convergence.operator.kube.api import MERGE_PATCH
from convergence.operator.kube.names import GROUP, STACKS, VERSION
from convergence.operator.kube.records import status_of
from convergence.operator.kubectl import output, snapshot
from convergence.operator.kubectl.client import PluginError, target

# Where the operator keeps the value of each annotation it handled last.
HANDLED = {"cancel": "handledCancel", "rollback": "handledRollback", "retry": "handledRetry"}
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


def request(args: argparse.Namespace, request: str, annotation: str, value: str) -> int:
    """Annotate the Stack `args.stack` with `annotation=value`; with --wait, await its handling."""
    where = target(args)
    # A clear "not found" before any write; and a value handled already would be ignored.
    handled = status_of(snapshot.read_stack_body(where, args.stack)).get(HANDLED[request])
    if handled == value:
        raise PluginError(
            f"the operator has handled {annotation}={value} already, and it acts on each "
            "value once: this request would be ignored"
        )
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
        status = status_of(snapshot.read_stack_body(where, args.stack))
        if status.get(HANDLED[request]) == value:
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
