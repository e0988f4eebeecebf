"""HOT condition functions (`equals`, `not`, `and`, `or`) and `if`, which picks a branch by
a condition; and a snippet's outline, which follows the branches `if` keeps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from convergence.operator.engine.hot.errors import TemplateError, describe_value
from convergence.operator.engine.hot.functions.references import ResourceReference
from convergence.operator.engine.hot.functions.snippets import (
    REMOVED,
    BindingScope,
    Function,
    TemplateNames,
    bind_snippet,
    condition_value,
    did_you_mean,
    render_snippet,
    version_at_least,
)

if TYPE_CHECKING:
    from convergence.operator.engine.hot.functions.parser import SnippetParser


class Equals(Function):
    """`equals: [a, b]`: whether two values are equal (a condition function)."""

    since = "2016-10-14"

    def check_arguments(self) -> None:
        if not isinstance(self.args, list) or len(self.args) != 2:
            raise self.fail(
                f"expected [value_1, value_2], got {describe_value(render_snippet(self.args))}"
            )

    def evaluate(self, args: Any) -> Any:
        first, second = args
        return bool(first == second)


class Not(Function):
    """`not: condition`: the negation of a condition (a name, a boolean or a function)."""

    since = "2016-10-14"

    def check_arguments(self) -> None:
        if self.args is None:
            raise self.fail("expected a condition (a name, a boolean or a condition function)")

    def check_names(self, names: TemplateNames) -> None:
        _check_condition_name(self, self.args, names)

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        value, _ = bind_snippet(self.args, scope)
        return not condition_value(value, scope, self.where), False


class And(Function):
    """`and: [condition, condition, ...]`: true when every condition is (at least two)."""

    since = "2016-10-14"

    def check_arguments(self) -> None:
        if not isinstance(self.args, list) or len(self.args) < 2:
            raise self.fail(
                "expected a list of at least two conditions, got "
                + describe_value(render_snippet(self.args))
            )

    def check_names(self, names: TemplateNames) -> None:
        for item in self.args:
            _check_condition_name(self, item, names)

    def combine(self, values: Iterator[bool]) -> bool:
        """How the conditions combine."""
        return all(values)

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        values, _ = bind_snippet(self.args, scope)
        return self.combine(condition_value(value, scope, self.where) for value in values), False


class Or(And):
    """`or: [condition, condition, ...]`: true when any condition is (at least two)."""

    def combine(self, values: Iterator[bool]) -> bool:
        return any(values)


def _check_condition_name(function: Function, value: Any, names: TemplateNames) -> None:
    if isinstance(value, str) and value not in names.conditions:
        raise function.fail(f"unknown condition {value!r}" + did_you_mean(value, names.conditions))


class If(Function):
    """`if: [condition, value_if_true, value_if_false]`: the branch the condition selects;
    from 2021-04-16 the last argument may be left out, and a false condition then
    removes the enclosing list item, map entry or property."""

    since = "2016-10-14"

    # The outline (see SnippetParser.parse_outlined) of each branch.
    branch_outlines: tuple[Outline, ...] = ()

    @classmethod
    def from_snippet(
        cls, parser: SnippetParser, name: str, raw_args: Any, path: str, in_condition: bool
    ) -> Function:
        nullable = version_at_least(parser.version, "2021-04-16")
        if not isinstance(raw_args, list) or len(raw_args) not in ((2, 3) if nullable else (3,)):
            form = "[condition, value_if_true, value_if_false]"
            if nullable:
                form += " or [condition, value_if_true]"
            raise TemplateError(
                f"{path}: {name}", f"expected {form}, got {describe_value(raw_args)}"
            )
        condition = parser.parse_condition(raw_args[0], f"{path}.{name}[0]")
        branches = [
            parser.parse_outlined(branch, f"{path}.{name}[{index}]")
            for index, branch in enumerate(raw_args[1:], start=1)
        ]
        function = cls(name, [condition, *(parsed for parsed, _ in branches)], path, parser.version)
        function.branch_outlines = tuple(outline for _, outline in branches)
        function.check_names(parser.names)
        return function

    def check_names(self, names: TemplateNames) -> None:
        _check_condition_name(self, self.args[0], names)

    def chosen_branch(self, scope: BindingScope) -> int | None:
        """The index (1 or 2) of the argument the condition selects; None to remove."""
        condition, _ = bind_snippet(self.args[0], scope)
        if condition_value(condition, scope, self.where):
            return 1
        return 2 if len(self.args) == 3 else None

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        branch = self.chosen_branch(scope)
        if branch is None:
            return REMOVED, False
        return bind_snippet(self.args[branch], scope)


# A snippet's outline: its get_resource/get_attr calls and its `if` calls (whose branches
# have outlines of their own). Dependencies follow from the outline alone, without
# walking the snippet's data or evaluating its other functions.
Outline = tuple[ResourceReference | If, ...]


def outline_references(outline: Outline, scope: BindingScope) -> Iterator[ResourceReference]:
    """The references of a snippet under the stack's conditions, names bound."""
    for site in outline:
        if isinstance(site, If):
            branch = site.chosen_branch(scope)
            if branch is not None:
                yield from outline_references(site.branch_outlines[branch - 1], scope)
        else:
            yield site.bound_reference(scope)
