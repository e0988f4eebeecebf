"""`kubectl convergence graph STACK -o dot|svg|png`: a picture of the current traversal's graph.

Drawn from the graph ConfigMap the Stack's `status.graphRef` names and from
the StackResources, with Graphviz: the DOT is built by the `graphviz`
package (so `-o dot` needs nothing else), svg and png are rendered by
Graphviz's `dot` program.

- a box is an update node, an ellipse a cleanup node, labelled with the
  logical name, the record and its phase; an arrow goes from a node to the
  nodes that wait for it (the order the traversal runs them in);
- the fill is the phase of the node's record: green COMPLETE, yellow
  IN_PROGRESS, red FAILED, grey INIT; an unfilled dashed node's record is gone
  (cleaned up in this traversal);
- a replacement made in this traversal stands in for the update node of the
  record it replaces (DESIGN.md): it is drawn beside it, joined by a blue
  dashed "replaced by" arrow, as is a record that replaced another in an
  earlier traversal and is still there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import graphviz

from convergence.operator.engine.graph import Node, cleanup_node, update_node
from convergence.operator.engine.store import COMPLETE, FAILED, IN_PROGRESS, INIT, ResourceRecord
from convergence.operator.kubectl import snapshot
from convergence.operator.kubectl.client import PluginError, target

DOT = "dot"
FORMATS = (DOT, "svg", "png")
FILL = {COMPLETE: "#c6efce", IN_PROGRESS: "#ffeb9c", FAILED: "#ffc7ce"}
FILL_INIT = "#e7e6e6"
REPLACED_COLOUR = "#1f4e9e"
FONT = "Helvetica"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "graph",
        help="draw the dependency graph of a stack's current traversal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stack", help="the Stack's name")
    parser.add_argument(
        "-o", "--format", choices=FORMATS, default=DOT, help="picture format (default: dot)"
    )
    parser.add_argument(
        "--output", metavar="FILE", help="write the picture to FILE (default: standard output)"
    )
    parser.set_defaults(func=run)


def node_id(node: Node) -> str:
    """A graph node's DOT id (no ':', which DOT reads as a port)."""
    return f"{node.kind}_{node.record_id}"


def record_id_of(dot_id: str) -> str:
    """The record id in a node's DOT id (tests and readers of the picture use it)."""
    return dot_id.partition("_")[2]


def _fill(record: ResourceRecord) -> str:
    return FILL.get(record.status, FILL_INIT) if record.action != INIT else FILL_INIT


def _label(name: str, kind: str, record_id: str, phase: str) -> str:
    # "\\n" is DOT's own line break (a centred line).
    return f"{name}\\n{kind} · {snapshot.short(record_id)}\\n{phase}"


class Drawing:
    """The DOT of one snapshot's graph."""

    def __init__(self, found: snapshot.Snapshot) -> None:
        self.found = found
        status = found.status
        traversal = str(status.get("traversal") or "")
        title = (
            f"Stack {found.namespace}/{found.name} · {status.get('phase') or 'no phase'}"
            f" · traversal {snapshot.short(traversal) if traversal else 'none'}\\n"
            f"boxes: update nodes · ellipses: cleanup nodes · colour: the record's phase"
        )
        self.dot = graphviz.Digraph(
            name=found.name,
            graph_attr={
                "rankdir": "LR",
                "label": title,
                "labelloc": "t",
                "fontname": FONT,
                "fontsize": "14",
                "nodesep": "0.3",
            },
            node_attr={"fontname": FONT, "fontsize": "10", "style": "filled"},
            edge_attr={"color": "#595959", "arrowsize": "0.7"},
        )
        # Record id -> the DOT id of the node standing for it (its update node first).
        self.drawn: dict[str, str] = {}
        # A record that is gone is named by the record that replaced it, if one is left.
        self.gone_names = {r.replaces: r.name for r in found.records.values() if r.replaces}

    def draw(self) -> graphviz.Digraph:
        graph = self.found.graph
        for node in sorted(graph, key=lambda n: (not n.is_update, n.record_id)):
            self._graph_node(node)
            if node.is_update or node.record_id not in self.drawn:
                self.drawn.setdefault(node.record_id, node_id(node))
        for node in graph:
            for required in sorted(graph.predecessors(node)):
                self.dot.edge(node_id(required), node_id(node))
        for record in self.found.ordered():
            if record.id not in self.drawn:
                self._extra_record(record)
        for record in self.found.ordered():
            self._replacement(record)
        return self.dot

    def _graph_node(self, node: Node) -> None:
        record = self.found.records.get(node.record_id)
        shape = "box" if node.is_update else "ellipse"
        style = "rounded,filled" if node.is_update else "filled"
        if record is None:
            name = self.gone_names.get(node.record_id, "(gone)")
            label = _label(name, node.kind, node.record_id, "cleaned up")
            self.dot.node(
                node_id(node), label, shape=shape, style="dashed", fillcolor="none",
                tooltip=f"{node.key()}: its StackResource is gone",
            )  # fmt: skip
            return
        self.dot.node(
            node_id(node),
            _label(record.name, node.kind, record.id, record.phase),
            shape=shape,
            style=style,
            fillcolor=_fill(record),
            tooltip=f"{node.key()} {record.type}: {record.status_reason}",
        )

    def _extra_record(self, record: ResourceRecord) -> None:
        """A record the graph does not name: a replacement made in this traversal (or newer)."""
        dot_id = f"record_{record.id}"
        self.dot.node(
            dot_id,
            _label(record.name, "replacement" if record.replaces else "record", record.id,
                   record.phase),
            shape="box", style="rounded,filled,bold", fillcolor=_fill(record),
            tooltip=f"{record.id} {record.type}: {record.status_reason}",
        )  # fmt: skip
        self.drawn[record.id] = dot_id

    def _replacement(self, record: ResourceRecord) -> None:
        """The arrow from the record `record` replaces to it, when both are drawn."""
        if record.replaces is None or record.replaces not in self.drawn:
            return
        graph = self.found.graph
        in_graph = update_node(record.id) in graph or cleanup_node(record.id) in graph
        self.dot.edge(
            self.drawn[record.replaces],
            self.drawn[record.id],
            label="replaced by",
            style="dashed",
            color=REPLACED_COLOUR,
            fontcolor=REPLACED_COLOUR,
            fontname=FONT,
            fontsize="9",
            # A replacement outside the graph is placed after what it replaces.
            constraint="false" if in_graph else "true",
        )


def picture(found: snapshot.Snapshot, fmt: str) -> bytes:
    """The graph of `found` in `fmt`; PluginError when Graphviz cannot render it."""
    dot = Drawing(found).draw()
    if fmt == DOT:
        return str(dot.source).encode("utf-8")
    try:
        return bytes(dot.pipe(format=fmt))
    except graphviz.ExecutableNotFound as exc:
        raise PluginError(
            f"-o {fmt} needs Graphviz's `dot` program (Debian: apt-get install graphviz; "
            "`make graphviz-bin` in the repository); -o dot needs nothing"
        ) from exc


def run(args: argparse.Namespace) -> int:
    found = snapshot.read(target(args), args.stack, graph=True)
    if len(found.graph) == 0 and not found.records:
        raise PluginError(f"stack {found.name} has no traversal graph yet")
    drawn = picture(found, args.format)
    if args.output:
        Path(args.output).write_bytes(drawn)
    else:
        sys.stdout.buffer.write(drawn)
        sys.stdout.flush()
    return 0
