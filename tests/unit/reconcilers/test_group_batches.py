"""The batch arithmetic of ResourceGroup's update policies, against Heat's functional tests'
figures (heat_integrationtests/functional/test_resource_group.py, ResourceGroupUpdatePolicyTest)."""

from __future__ import annotations

import pytest

from convergence.reconcilers.group_batches import batch_members, batches
from convergence.reconcilers.resource_group import member_names


def test_batch_create_grows_the_group_a_batch_at_a_time() -> None:
    assert batches(5, 0, 2) == [(2, 2), (4, 2), (5, 1)]
    assert batches(3, 0, 10) == [(3, 3)]


def test_a_rolling_update_with_room_changes_a_batch_at_a_time_without_growing() -> None:
    assert batches(10, 10, 3, 1) == [(10, 3), (10, 3), (10, 3), (10, 1)]


def test_min_in_service_above_what_a_batch_leaves_grows_the_group_for_a_while() -> None:
    plan = batches(10, 10, 4, 8)
    assert plan[0] == (12, 4), plan
    assert max(size for size, _ in plan) == 12
    assert plan[-1][0] == 10, plan


def roll(
    count: int, target: int, batch_size: int, min_in_service: int
) -> tuple[dict[str, str], list[int]]:
    """Roll a group of `count` members at definition "old" to `target` members at "new";
    return the members at the end and the group's size during each batch."""
    members = {str(i): "old" for i in range(count)}
    sizes = []
    for size, changes in batches(target, count, batch_size, min_in_service):
        members = batch_members(members, member_names(size, set()), target, "new", changes)
        sizes.append(len(members))
    return members, sizes


@pytest.mark.parametrize(
    ("target", "batch_size", "min_in_service", "kept", "created", "deleted"),
    [
        (10, 3, 1, 10, 0, 0),  # test_resource_group_update
        (6, 3, 1, 6, 0, 4),  # ..._scaledown
        (12, 3, 1, 10, 2, 0),  # ..._scaleup
        (6, 4, 8, 6, 0, 4),  # ..._adjusted
        (10, 4, 8, 10, 0, 0),  # ..._with_adjusted_capacity
        (10, 20, 0, 10, 0, 0),  # ..._huge_batch_size
        (10, 1, 20, 10, 0, 0),  # ..._huge_min_in_service
    ],
)
def test_a_rolling_update_keeps_creates_and_deletes_what_heat_does(
    target: int, batch_size: int, min_in_service: int, kept: int, created: int, deleted: int
) -> None:
    before = {str(i) for i in range(10)}
    members, sizes = roll(10, target, batch_size, min_in_service)
    assert set(members.values()) == {"new"}, members
    assert len(members) == target
    assert sizes[-1] == target, sizes
    assert len(set(members) & before) == kept
    assert len(set(members) - before) == created
    assert len(before - set(members)) == deleted


def test_the_highest_indexes_get_the_new_definition_first() -> None:
    members = {str(i): "old" for i in range(4)}
    first = batch_members(members, member_names(4, set()), 4, "new", 2)
    assert first == {"0": "old", "1": "old", "2": "new", "3": "new"}


def test_a_removed_member_leaves_in_the_first_batch_and_its_name_is_not_taken() -> None:
    members = {str(i): "old" for i in range(3)}
    names = member_names(3, {"1"})
    first = batch_members({k: v for k, v in members.items() if k != "1"}, names, 3, "new", 1)
    assert "1" not in first
    assert first["3"] == "new"
    assert len(first) == 3
