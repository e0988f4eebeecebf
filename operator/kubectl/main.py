"""`kubectl-convergence`: the kubectl plugin's command line (`kubectl convergence ...`).

Global options as kubectl spells them (`-n/--namespace`, `--kubeconfig`,
`--context`), then a command. Each command is a module of this package
listed in `COMMANDS`: its `register(subparsers)` adds its sub-parser with
`func=run`, and `run(args) -> int` does the work, finding its cluster
connection with `client.target(args)`. A command raises `PluginError` for
what the user can fix; it is printed as `error: ...` with exit status 1, as
is a refusal of the API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from convergence.operator.kube.api import api_error
from convergence.operator.kubectl import (
    cancel,
    events,
    graph,
    preview,
    resources,
    retry,
    rollback,
    trace,
)
from convergence.operator.kubectl.client import PluginError, connect

PROG = "kubectl convergence"


class Command(Protocol):
    """A command module."""

    def register(self, subparsers: Any) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# In the order `--help` lists them.
COMMANDS: tuple[Command, ...] = (
    preview,
    resources,
    events,
    trace,
    graph,
    cancel,
    rollback,
    retry,
)


def parser() -> argparse.ArgumentParser:
    """The whole command line."""
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Stacks of the Convergence operator, seen and steered from kubectl.",
    )
    add_global_options(top, None)
    subparsers = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    # Where kubectl users put them too: after the command (`resources web -n prod`). Given
    # there, they win; not given, they leave the value given before the command alone.
    for command_parser in subparsers.choices.values():
        add_global_options(command_parser, argparse.SUPPRESS)
    return top


def add_global_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    """-n/--namespace, --kubeconfig and --context, as kubectl spells them."""
    parser.add_argument(
        "-n", "--namespace", default=default, help="the Stack's namespace (default: the context's)"
    )
    parser.add_argument(
        "--kubeconfig",
        default=default,
        help="the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument(
        "--context", default=default, help="the kubeconfig context (default: the current one)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.target = connect(args.kubeconfig, args.context, args.namespace)
        return int(args.func(args))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ApiException as exc:
        print(f"error: {api_error(exc)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
