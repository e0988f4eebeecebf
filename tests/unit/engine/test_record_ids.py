"""Record ids: `<stack>-<logical name>-<short id>`, readable, unique, and names for Kubernetes."""

from __future__ import annotations

import base64
import re
import uuid

from hypothesis import given
from hypothesis import strategies as st

from convergence.operator.engine.plugin import ResourceContext, StackRef
from convergence.operator.engine.record_ids import (
    RECORD_ID_MAX,
    is_uuid_id,
    readable_part,
    record_id,
    replacement_id,
    short_id,
    short_id_of,
)
from convergence.operator.engine.sim.simulator import InMemoryReality, Simulator, VirtualClock
from convergence.operator.testing import hot

TYPE = "OS::Heat::TestResource"
UNIQUE = "0b1e4a8e-6f0a-4c43-9a43-56e7d8a0f1c2"
# A DNS-1123 label: what a label value, an object name and (after "update_") a ConfigMap
# key all accept.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CONFIG_MAP_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def assert_kubernetes_name(record: str) -> None:
    assert len(record) <= RECORD_ID_MAX, f"{record!r} is {len(record)} characters long"
    assert DNS_LABEL.match(record), f"{record!r} is not a DNS-1123 label"
    for kind in ("update", "cleanup"):
        assert CONFIG_MAP_KEY.match(f"{kind}_{record}"), f"{record!r} cannot key a sync map"


def test_a_record_id_reads_as_stack_resource_and_short_id() -> None:
    record = record_id("web", "db", UNIQUE)
    assert record == f"web-db-{short_id_of(UNIQUE)}"
    assert re.fullmatch(r"web-db-[a-z2-7]{8}", record), record


def test_upper_case_underscores_and_dots_become_lowercase_and_dashes() -> None:
    record = record_id("my.stack", "My_DB.v2__Primary", UNIQUE)
    assert record.startswith("my-stack-my-db-v2-primary-"), record
    assert_kubernetes_name(record)


def test_a_200_character_logical_name_is_cut_and_the_stack_kept_whole() -> None:
    name = "Resource_" + "x" * 191
    record = record_id("web", name, UNIQUE)
    assert_kubernetes_name(record)
    assert record.startswith("web-resource-xxx"), record
    assert record.endswith(f"-{short_id_of(UNIQUE)}"), record


def test_two_long_names_share_the_room_half_and_half() -> None:
    part = readable_part("s" * 100, "n" * 100)
    stack, name = part.split("-")
    assert (len(stack), len(name)) == (26, 27), part
    # A long stack beside a short name gives the name all it needs.
    assert readable_part("s" * 100, "db").endswith("-db")


def test_a_name_with_nothing_readable_leaves_the_stack_and_the_short_id() -> None:
    record = record_id("web", "___", UNIQUE)
    assert record == f"web-{short_id_of(UNIQUE)}"
    assert_kubernetes_name(record_id("web", "日本語", UNIQUE))


def test_names_that_read_the_same_still_get_distinct_ids() -> None:
    # Case, punctuation and cutting can make the readable parts equal; the short id differs.
    ids = {
        record_id("web", "DB", str(uuid.uuid4())),
        record_id("web", "db", str(uuid.uuid4())),
        record_id("web", "d_b", str(uuid.uuid4())),
        record_id("web-d", "b", str(uuid.uuid4())),
        record_id("web", "x" * 100 + "1", str(uuid.uuid4())),
        record_id("web", "x" * 100 + "2", str(uuid.uuid4())),
    }
    assert len(ids) == 6, ids


def test_ids_sort_by_stack_then_resource() -> None:
    ids = [record_id(s, n, str(uuid.uuid4())) for s, n in [("b", "a"), ("a", "z"), ("a", "b")]]
    assert [i.rsplit("-", 1)[0] for i in sorted(ids)] == ["a-b", "a-z", "b-a"]


def test_the_short_id_is_the_end_of_a_readable_id_and_heats_of_a_uuid() -> None:
    assert short_id(record_id("web", "db", UNIQUE)) == short_id_of(UNIQUE)
    # A record of an older operator: the short id its physical names were made with.
    legacy = base64.b32encode(uuid.UUID(UNIQUE).bytes[:5]).decode().lower()
    assert short_id(UNIQUE) == legacy
    assert is_uuid_id(UNIQUE)
    assert not is_uuid_id(record_id("web", "db", UNIQUE))


def test_short_id_refuses_what_is_no_record_id() -> None:
    for junk in ("web", "Web-db-abcdefgh", "web-db-abcdefg1", ""):
        try:
            short_id(junk)
        except ValueError:
            continue
        raise AssertionError(f"short_id accepted {junk!r}")


def test_a_hex_looking_readable_id_is_not_taken_for_a_uuid() -> None:
    # 32 hex digits once the dashes are gone: uuid.UUID() would parse it.
    record = "deadbeef-deadbeef-deadbeef-abcdef23"
    assert not is_uuid_id(record)
    assert short_id(record) == "abcdef23"


def test_a_replacement_keeps_the_readable_part_with_a_short_id_of_its_own() -> None:
    old = record_id("web", "db", UNIQUE)
    new = replacement_id(old, "traversal-1")
    assert new.rsplit("-", 1)[0] == old.rsplit("-", 1)[0]
    assert new != old
    assert_kubernetes_name(new)
    assert replacement_id(old, "traversal-1") == new, "a retry must make the same replacement"
    assert replacement_id(old, "traversal-2") != new
    assert replacement_id(new, "traversal-2") not in (old, new)


def test_a_uuid_record_is_replaced_as_older_operators_did() -> None:
    # So a replacement an older operator marked in a traversal is the one found now.
    expected = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{UNIQUE}/t1"))
    assert replacement_id(UNIQUE, "t1") == expected


def test_the_physical_name_ends_with_the_records_short_id() -> None:
    for record in (record_id("web", "db", UNIQUE), UNIQUE):
        context = ResourceContext(
            stack=StackRef("web", "uid"),
            name="db",
            record_id=record,
            clock=VirtualClock(),
            reality=InMemoryReality(),
        )
        assert context.physical_name() == f"web-db-{short_id(record)}"
    # A new record's physical name and its StackResource's name are the same string.
    assert record_id("web", "db", UNIQUE) == f"web-db-{short_id_of(UNIQUE)}"


@given(
    stack=st.from_regex(r"[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?", fullmatch=True),
    name=st.text(min_size=1, max_size=300),
    unique=st.uuids().map(str),
    traversal=st.uuids().map(str),
)
def test_any_names_give_ids_kubernetes_accepts(
    stack: str, name: str, unique: str, traversal: str
) -> None:
    record = record_id(stack, name, unique)
    assert_kubernetes_name(record)
    assert short_id(record) == short_id_of(unique)
    replacement = replacement_id(record, traversal)
    assert_kubernetes_name(replacement)
    assert replacement != record


def test_the_simulator_names_records_the_same_on_every_run() -> None:
    template = hot.template(
        hot.resources(TYPE, WebServer={"properties": {"value": "a"}}, db_password={})
    )

    def ids() -> list[str]:
        sim = Simulator(seed=3)
        sim.create("my-stack", template)
        sim.run_until_quiet()
        return sorted(r.id for r in sim.resources("my-stack"))

    first = ids()
    assert first == ids()
    assert [i.rsplit("-", 1)[0] for i in first] == ["my-stack-db-password", "my-stack-webserver"]


def test_a_replacement_in_the_simulator_reads_as_the_resource_it_replaces() -> None:
    sim = Simulator()
    props = {"value": "a", "update_replace": True}
    sim.create("s", hot.template(hot.resources(TYPE, Web={"properties": props})))
    sim.run_until_quiet()
    (old,) = sim.resources("s")
    sim.update("s", hot.template(hot.resources(TYPE, Web={"properties": {**props, "value": "b"}})))
    sim.run_until_quiet()
    (new,) = sim.resources("s")
    assert new.replaces == old.id
    assert new.id != old.id
    assert [old.id[:-9], new.id[:-9]] == ["s-web", "s-web"], (old.id, new.id)
