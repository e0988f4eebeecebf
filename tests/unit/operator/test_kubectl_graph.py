"""The picture `kubectl convergence graph` draws, from a snapshot built by hand (no cluster)."""

from __future__ import annotations

import uuid

from convergence.operator.engine.graph import Graph, cleanup_node, update_node
from convergence.operator.engine.store import ResourceRecord
from convergence.operator.kubectl.graph import FILL, Drawing, record_id_of
from convergence.operator.kubectl.snapshot import Snapshot


def record(name: str, phase: str, replaces: str | None = None) -> ResourceRecord:
    action, _, status = phase.partition("_")
    return ResourceRecord(
        id=str(uuid.uuid4()),
        stack="s",
        name=name,
        type="OS::Heat::TestResource",
        action=action,
        status=status,
        replaces=replaces,
    )


def snapshot(graph: Graph, *records: ResourceRecord) -> Snapshot:
    body = {"metadata": {"name": "s"}, "status": {"phase": "UPDATE_IN_PROGRESS"}}
    return Snapshot(
        namespace="ns",
        name="s",
        body=body,
        stack=None,
        records={r.id: r for r in records},
        bodies={r.id: {} for r in records},
        graph=graph,
    )


def test_an_older_replacement_is_joined_to_what_it_replaced_without_moving_it() -> None:
    old = record("db", "UPDATE_FAILED")
    new = record("db", "UPDATE_IN_PROGRESS", replaces=old.id)
    app = record("app", "CREATE_COMPLETE")
    graph = Graph(
        {
            update_node(new.id): set(),
            update_node(app.id): {update_node(new.id)},
            cleanup_node(old.id): {cleanup_node(new.id)},
            cleanup_node(new.id): {update_node(new.id)},
        }
    )
    dot = Drawing(snapshot(graph, old, new, app)).draw().source

    lines = dot.splitlines()
    # A node per record, each in the colour of its phase (the old one only has a cleanup node).
    assert {record_id_of(line.split('"')[1]) for line in lines if "[label=" in line} == {
        old.id,
        new.id,
        app.id,
    }, dot
    [new_update] = [line for line in lines if line.startswith(f'\t"update_{new.id}" [')]
    assert FILL["IN_PROGRESS"] in new_update
    [old_cleanup] = [line for line in lines if line.startswith(f'\t"cleanup_{old.id}" [')]
    assert FILL["FAILED"] in old_cleanup
    assert "ellipse" in old_cleanup, "a cleanup node is an ellipse"
    # Both records are in the graph: the "replaced by" arrow must not change the layout.
    [replaced] = [line for line in lines if "replaced by" in line]
    assert replaced.startswith(f'\t"cleanup_{old.id}" -> "update_{new.id}"'), replaced
    assert "constraint=false" in replaced
    # Edges run from what is required to what waits for it.
    assert f'\t"update_{new.id}" -> "update_{app.id}"' in lines


def test_a_node_whose_record_is_gone_is_named_by_its_replacement() -> None:
    gone_id = str(uuid.uuid4())
    new = record("db", "CREATE_COMPLETE", replaces=gone_id)
    graph = Graph({update_node(gone_id): set(), cleanup_node(gone_id): {update_node(gone_id)}})
    dot = Drawing(snapshot(graph, new)).draw().source

    [gone] = [line for line in dot.splitlines() if line.startswith(f'\t"update_{gone_id}" [')]
    assert 'label="db\\nupdate' in gone, gone
    assert "cleaned up" in gone
    assert "fillcolor=none" in gone
    # The replacement is outside the graph: drawn beside it, and placed after it.
    [replaced] = [line for line in dot.splitlines() if "replaced by" in line]
    assert replaced.startswith(f'\t"update_{gone_id}" -> "record_{new.id}"'), replaced
    assert "constraint=true" in replaced
