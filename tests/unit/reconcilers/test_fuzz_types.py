"""Random property values for every registered type, on the simulator: the engine never
crashes, and every stack ends either complete or FAILED with a reason that says which
resource failed and, for a property error, which property.

Each example creates a stack whose one resource has random properties (near-valid
ones: the type's own property names with random values, now and then an unknown
name), updates it to other random properties (in place or by replacement), then
deletes it, which must always complete and leave nothing physical behind. A type
may refuse a definition before anything starts (a ResourceGroup's count below 0):
the error then names the resource and a property, and nothing is left behind.
Kubernetes::Object has no Kubernetes API on the simulator, so it must fail clearly
there; its manifests are fuzzed on the real operator in
tests/integration/test_fuzz_kubernetes_object.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.hot.template_resources import TEMPLATE_RESOURCE_TYPE
from convergence.operator.engine.plugin import TypeRegistry
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot

# Every type a template may name, registered by entry point, and the property names each one
# knows (the type that runs template resources is named by no template: its file is).
TYPES = TypeRegistry.from_entry_points()
PROPERTY_NAMES: dict[str, list[str]] = {
    name: sorted(TYPES.get(name).Properties.model_fields)
    for name in TYPES.names()
    if name != TEMPLATE_RESOURCE_TYPE
}
# What a property name in a failure reason may look like for the fields above.
ALIASES = {"class_": "class"}
# A bound on steps per operation: virtual time jumps, so only a livelock could reach it.
STEP_LIMIT = 5_000
# Virtual seconds before an operation times out (a resource may be told to wait forever).
TIMEOUT = 60

FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "0", "1", "true", "a,b", '{"k": 1}', "digits", "letters", "json"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["class", "min", "sequence", "k", "x"]), inner, max_size=3),
    ),
    max_leaves=8,
)


short_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
some_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20
)
classes = st.sampled_from(
    ["lettersdigits", "letters", "lowercase", "uppercase", "digits", "hexdigits", "octdigits", "x"]
)
seconds = st.one_of(st.floats(0, 3), st.integers(0, 2))
# Child templates of OS::Heat::Stack: one that takes a parameter, one that fails, JSON
# text, an empty one, one that is no template and text that is not YAML.
CHILD_TEMPLATES = [
    "heat_template_version: 2021-04-16\n"
    "parameters: {word: {type: string, default: w}}\n"
    "resources: {t: {type: OS::Heat::TestResource, properties: {value: {get_param: word}}}}\n"
    "outputs: {said: {value: {get_attr: [t, output]}}}\n",
    "heat_template_version: 2021-04-16\n"
    "resources: {t: {type: OS::Heat::TestResource, properties: {fail: true}}}\n",
    '{"heat_template_version": "2021-04-16", "resources": {}}',
    "heat_template_version: 2021-04-16\n",
    "resources: [1, 2]\n",
    "{unclosed: [\n",
]
# Values of the right shape (often valid, at the edges of their ranges) per type and
# property; any other property gets `values`.
SHAPED: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "OS::Heat::RandomString": {
        "length": st.integers(0, 520),
        "sequence": classes,
        "character_classes": st.lists(
            st.fixed_dictionaries({"class": classes}, optional={"min": st.integers(0, 40)}),
            max_size=3,
        ),
        "character_sequences": st.lists(
            st.fixed_dictionaries({"sequence": some_text}, optional={"min": st.integers(0, 40)}),
            max_size=3,
        ),
        "salt": short_text,
    },
    "OS::Heat::Value": {
        "type": st.sampled_from(["string", "number", "comma_delimited_list", "json", "boolean"]),
    },
    "OS::Heat::TestResource": {
        "value": short_text,
        "update_replace": st.booleans(),
        "update_replace_value": short_text,
        "fail": st.sampled_from([False, False, False, True]),
        "wait_secs": seconds,
        "action_wait_secs": st.fixed_dictionaries(
            {}, optional={"create": seconds, "update": seconds, "delete": seconds}
        ),
        "attr_wait_secs": seconds,
        "constraint_prop_secs": seconds,
        "client_name": short_text,
        "entity_name": short_text,
    },
    "OS::Heat::Stack": {
        "template": st.sampled_from(CHILD_TEMPLATES),
        "parameters": st.fixed_dictionaries({}, optional={"word": short_text, "other": values}),
        "timeout": st.integers(-1, 3),
    },
    "OS::Heat::ResourceGroup": {
        "count": st.integers(-1, 4),
        "resource_def": st.fixed_dictionaries(
            {"type": st.sampled_from(["OS::Heat::TestResource", "OS::Heat::Value", "No::Such"])},
            optional={"properties": values, "metadata": values},
        ),
        "index_var": st.sampled_from(["%index%", "%i%", ""]),
        "removal_policies": st.lists(
            st.fixed_dictionaries({"resource_list": st.lists(st.sampled_from(["0", "1", "x"]))}),
            max_size=2,
        ),
    },
    "Kubernetes::Object": {
        "manifest": st.fixed_dictionaries(
            {"apiVersion": st.sampled_from(["v1", "apps/v1", ""]), "kind": short_text},
            optional={"metadata": values, "data": values},
        ),
        "timeout": st.integers(-1, 700),
    },
}


@st.composite
def properties_of(draw: st.DrawFn, type_name: str) -> dict[str, Any]:
    """Most of the type's properties, mostly with values of the right shape, sometimes
    with anything, and now and then an unknown property."""
    shaped = SHAPED.get(type_name, {})
    properties = {}
    for name in PROPERTY_NAMES[type_name] or ["anything"]:
        if draw(st.integers(0, 3)) == 3:
            continue
        anything = name not in shaped or draw(st.integers(0, 9)) == 9
        properties[name] = draw(values if anything else shaped[name])
    if draw(st.integers(0, 9)) == 9:
        properties["not_a_property"] = draw(values)
    return properties


def waits_forever(properties: dict[str, Any]) -> bool:
    """TestResource's negative wait means "never finish" (on purpose, for tests): the stack
    times out, but the action goes on being polled and holds the resource, so a later
    delete would wait for ever too. Not a property error, so not fuzzed."""
    waits = [properties.get("wait_secs")]
    if isinstance(properties.get("action_wait_secs"), dict):
        waits.extend(properties["action_wait_secs"].values())
    return any(isinstance(w, int | float) and not isinstance(w, bool) and w < 0 for w in waits)


def template(type_name: str, properties: dict[str, Any]) -> dict[str, Any]:
    # A consumer of its attributes and reference: data from a fuzzed resource flows on.
    consumer = {
        "type": "OS::Heat::Value",
        "properties": {"value": {"list_join": [",", [{"get_resource": "r"}]]}},
    }
    return hot.template({"r": {"type": type_name, "properties": properties}, "c": consumer})


def check_outcome(sim: Simulator, action: str, properties: dict[str, Any]) -> None:
    """The stack ended complete, or FAILED with a reason that names the resource and,
    for a property error, one of the properties (or `properties` as a whole)."""
    stack = sim.stack("s")
    assert stack.phase in (f"{action}_COMPLETE", f"{action}_FAILED"), (
        f"{action} ended {stack.phase}: {stack.status_reason!r}"
    )
    if stack.status != "FAILED":
        return
    reason = stack.status_reason
    assert reason, f"{stack.phase} without a reason"
    failed = [r for r in sim.resources("s") if r.status == "FAILED"]
    assert failed, f"{stack.phase} ({reason!r}) but no resource FAILED"
    for record in failed:
        assert record.status_reason, f"{record.name} is {record.phase} without a reason"
        # A child stack's error is about the child's resources (fuzzed as their own types).
        nested = record.status_reason.startswith("nested stack ")
        if "Property error" in record.status_reason and not nested:
            known = {*properties, *PROPERTY_NAMES[record.type], "properties", *ALIASES.values()}
            assert any(name in record.status_reason for name in known), (
                f"the reason names no property: {record.status_reason!r}"
            )


def check_refusal(exc: TemplateError, type_name: str, properties: dict[str, Any]) -> None:
    """A type refused the definition before anything started (engine/type_checks.py): the
    error names the resource and one of its properties or its update_policy."""
    assert exc.where == "resources.r", str(exc)
    known = {*properties, *PROPERTY_NAMES[type_name], "update_policy", *ALIASES.values()}
    assert any(name in exc.message for name in known), f"the error names no property: {exc}"


def run(sim: Simulator) -> None:
    steps = sim.run_until_quiet(limit=STEP_LIMIT)
    assert steps < STEP_LIMIT


@pytest.mark.parametrize("type_name", sorted(PROPERTY_NAMES))
def test_random_properties_end_complete_or_clearly_failed(type_name: str) -> None:
    @FUZZ
    @given(first=properties_of(type_name), second=properties_of(type_name))
    def lifecycle(first: dict[str, Any], second: dict[str, Any]) -> None:
        assume(not waits_forever(first) and not waits_forever(second))
        sim = Simulator()
        try:
            sim.create("s", template(type_name, first), timeout=TIMEOUT)
        except TemplateError as exc:
            check_refusal(exc, type_name, first)
            assert sim.memory.stack_names() == [], "a refused template left a stack behind"
            return
        run(sim)
        check_outcome(sim, "CREATE", first)
        try:
            sim.update("s", template(type_name, second), timeout=TIMEOUT)
        except TemplateError as exc:
            check_refusal(exc, type_name, second)
        else:
            run(sim)
            check_outcome(sim, "UPDATE", second)
        sim.delete("s")
        run(sim)
        assert sim.stack("s").phase == "DELETE_COMPLETE", sim.stack("s").status_reason
        assert sim.reality.records == {}, "physical records left behind"
        assert sim.memory.stack_names() == ["s"], "child stacks left behind"
        assert sim.secrets.of_stack("s") == [], "secrets left behind"

    lifecycle()


def test_every_registered_type_is_fuzzed() -> None:
    assert set(PROPERTY_NAMES) >= {
        "OS::Heat::RandomString",
        "OS::Heat::Value",
        "OS::Heat::None",
        "OS::Heat::TestResource",
        "Kubernetes::Object",
        "OS::Heat::Stack",
        "OS::Heat::ResourceGroup",
    }
