"""How a ResourceGroup's members change in batches: Heat's `batch_create` and `rolling_update`.

A group with an update policy does not give its child stack the whole new
template at once. It applies a sequence of child templates, one per batch,
each once the child has converged to the one before (and `pause_time`
seconds have passed): the child stack's template grows batch by batch on a
`batch_create`, and on a `rolling_update` at most `max_batch_size` members
get the new definition per batch while at least `min_in_service` members
stay (the group may grow for a while, with extra members that go again in
the last batch). This module is the arithmetic, pure: which capacities the
batches have (`batches`) and which members of one batch have which
definition (`batch_members`); resource_group.py applies them.

The same arithmetic as Heat's `heat.scaling.rolling_update` and
`scaling.template.member_definitions`, in other words: members leave first
when they are not wanted at the batch's size, then the members that stay
are given the new definition from the highest index down, and new members
take the lowest names free.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field


class BatchCreate(BaseModel):
    """`update_policy.batch_create`: members created `max_batch_size` at a time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int = Field(1, ge=1, description="The most members created at once.")
    pause_time: float = Field(0, ge=0, description="Seconds to wait between batches.")


class RollingUpdate(BaseModel):
    """`update_policy.rolling_update`: a new resource_def given `max_batch_size` at a time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_in_service: int = Field(0, ge=0, description="Members kept in service meanwhile.")
    max_batch_size: int = Field(1, ge=1, description="The most members changed at once.")
    pause_time: float = Field(0, ge=0, description="Seconds to wait between batches.")


class GroupUpdatePolicy(BaseModel):
    """A ResourceGroup's `update_policy` (both parts optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_create: BatchCreate | None = None
    rolling_update: RollingUpdate | None = None


def batches(
    target: int, current: int, batch_size: int, min_in_service: int = 0
) -> list[tuple[int, int]]:
    """The batches that take a group of `current` members (none with the new definition)
    to `target` members all with it: for each, the group's size during that batch and how
    many members have the new definition by then (new members included)."""
    planned: list[tuple[int, int]] = []
    size, done = current, 0
    while not (done >= size and size == target):
        keep = min(min_in_service, target, size)
        step = min(batch_size, max(target - done, 0))
        new_size = step + max(min(size, target - step), keep)
        planned.append((new_size, step))
        # Members beyond both sizes were extra members added to keep others in service.
        done += step - max(new_size - max(size, target), 0)
        size = new_size
    return planned


def batch_members(
    current: Mapping[str, str],
    names: Sequence[str],
    target: int,
    new_definition: str,
    changes: int,
) -> dict[str, str]:
    """The members of one batch and their definitions (by digest), by name.

    `current` maps the child's members to their definitions now; `names` are
    the names wanted at this batch's size (its length), in order; `target` the
    group's final size; at most `changes` members (new ones included) get
    `new_definition` in this batch.
    """
    size = len(names)
    position = {name: index for index, name in enumerate(names)}

    def leaves_first(name: str) -> int:
        index = position.get(name)
        if index is None:
            return 0  # not wanted at this size: goes at once
        if index < target:
            return target - index  # stays: the highest index changes first
        return size + 1  # an extra member kept for now: changed last

    staying = sorted(current, key=leaves_first)
    staying = staying[max(len(staying) - size, 0) :] if size else []
    free = _free(names, set(current))
    to_change = changes - (size - len(staying))
    members: dict[str, str] = {}
    for name in staying:
        if current[name] != new_definition and to_change > 0:
            to_change -= 1
            members[name] = new_definition
        else:
            members[name] = current[name]
    for _ in range(size - len(staying)):
        members[next(free)] = new_definition
    return dict(sorted(members.items(), key=lambda item: _index(item[0])))


def _free(names: Sequence[str], taken: set[str]) -> Iterator[str]:
    return (name for name in names if name not in taken)


def _index(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (-1, name)
