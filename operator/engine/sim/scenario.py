"""Scenarios: readable YAML stories of stack operations and checks on reality.

A scenario file names its templates and lists steps, for example:

    stack: foo
    templates:
      base: {heat_template_version: 2021-04-16, resources: {...}}
    steps:
      - create: base            # or {template: base, parameters: {}, disable_rollback: false}
      - run_until: {resource: C, phase: CREATE_IN_PROGRESS}
      - update: bigger
      - run: quiet                        # or a number of worker steps (simulator only)
      - expect: {phase: UPDATE_COMPLETE, ready: true, reality: bigger}

Operations: create, update (template by name, or inline as a mapping with
`heat_template_version`; with `files:` a files map, inline or by name from the
file's top-level `files:` sets, and `environment:` Heat's environment),
rollback, cancel ({rollback: bool}), delete.
Progress: `run: N` / `run: quiet` / `run_until: {...}` (conditions are
observable: stack phase, readiness, a resource's phase, counts of copies), so
files run unchanged on the Kubernetes operator, where step counts mean nothing.
Interference: pause / resume / crash the worker of a resource.
Checks (`expect`): phase, ready, reason (substring), reality (exactly one
physical copy per resource of a template, with the template's properties
resolved against the physical resources, and nothing else), copies,
resources (phase by name), outputs, `remember` a resource's physical id and
compare later with `same_physical` / `replaced`. Nested stacks: `nested: {RES:
{...}}` checks the child stack of resource RES (phase, ready, reason, outputs,
resources, copies, same_physical...), `remember_nested: {RES: label}` keeps
the child's name, `same_nested: {RES: label}` checks that RES still has it,
and `gone: [label]` that the child and all it had are gone.

A top-level `metadata` mapping says how the test suites treat the story (e.g. in FIFO
order only); the runner carries it and reads none of it.

The runner talks to a `Driver`; `SimulatorDriver` runs on the simulator.
`python -m convergence.operator.engine.sim.scenario FILE [--trace]` runs a file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from convergence.operator.engine.converger import StepReport
from convergence.operator.engine.definitions import DefinitionLoader, template_definitions
from convergence.operator.engine.hot.definition import ResourceData
from convergence.operator.engine.plugin import PhysicalRecord, StackRef, TypeRegistry
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.engine.store import COMPLETE, TemplateRevision


class ScenarioError(AssertionError):
    """A scenario's check failed or the scenario is malformed."""


@dataclass(frozen=True)
class Operation:
    """A user operation on the stack."""

    kind: str  # create | update | rollback | cancel | delete
    template: Mapping[str, Any] | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceView:
    """One resource record as a user sees it."""

    name: str
    phase: str
    reference_id: str | None
    replaced: bool
    converged: bool
    # The physical id (for a nested stack: the child stack's name).
    resource_id: str | None = None


@dataclass(frozen=True)
class Observation:
    """What can be seen of a stack at one moment."""

    phase: str | None
    ready: bool
    reason: str
    outputs: Mapping[str, Any]
    resources: Sequence[ResourceView]
    reality: Sequence[PhysicalRecord]

    def copies(self, name: str) -> list[PhysicalRecord]:
        """Physical copies of one logical resource."""
        return [r for r in self.reality if r.logical_name == name]

    def resource(self, name: str) -> ResourceView | None:
        """The record of `name` that is in service (else the newest one)."""
        views = [v for v in self.resources if v.name == name]
        in_service = [v for v in views if v.converged and not v.replaced]
        chosen = in_service or views
        return chosen[-1] if chosen else None


class Driver(Protocol):
    """How a scenario drives a stack: the simulator here, the Kubernetes operator later."""

    def apply(self, stack: str, operation: Operation) -> None:
        """Send one operation."""
        ...

    def step(self, count: int) -> None:
        """Run `count` worker steps (drivers without steps may raise NotImplementedError)."""
        ...

    def run_until(self, condition: Callable[[Observation], bool], stack: str) -> bool:
        """Let the workers run until the condition holds; False if it never will."""
        ...

    def run_until_quiet(self) -> None:
        """Let the workers run until none has anything left to do."""
        ...

    def observe(self, stack: str) -> Observation:
        """What the stack and reality look like now."""
        ...

    def pause(self, stack: str, resource: str) -> None:
        """Hold the worker of a resource."""
        ...

    def resume(self, stack: str, resource: str) -> None:
        """Release a held worker."""
        ...

    def crash(self, stack: str, resource: str) -> None:
        """Kill the worker of a resource at its next store write."""
        ...


class SimulatorDriver:
    """The scenario driver on the deterministic simulator."""

    def __init__(
        self, simulator: Simulator | None = None, *, trace: Callable[[str], None] | None = None
    ):
        self.simulator = simulator or Simulator()
        self._trace = trace
        if trace is not None:
            self.simulator.observers.append(self._print)

    def _print(self, report: StepReport) -> None:
        if self._trace is not None:
            self._trace(f"    step {len(self.simulator.trace)}: {self._named(report)}")

    def _named(self, report: StepReport) -> str:
        text = str(report)
        for record_id, name in self._names().items():
            text = text.replace(record_id, name)
        return text

    def _names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for stack in self.simulator.memory._stacks:
            for record in self.simulator.resources(stack):
                names[record.id] = f"{record.name}({record.id[-4:]})"
        return names

    def apply(self, stack: str, operation: Operation) -> None:
        sim = self.simulator
        if operation.kind == "create":
            assert operation.template is not None
            sim.create(stack, operation.template, operation.parameters, **operation.options)
        elif operation.kind == "update":
            assert operation.template is not None
            sim.update(stack, operation.template, operation.parameters, **operation.options)
        elif operation.kind == "rollback":
            sim.rollback(stack)
        elif operation.kind == "cancel":
            sim.cancel(stack, rollback=bool(operation.options.get("rollback", False)))
        elif operation.kind == "delete":
            sim.delete(stack)
        else:
            raise ScenarioError(f"unknown operation {operation.kind!r}")

    def step(self, count: int) -> None:
        self.simulator.run(count)

    def run_until(self, condition: Callable[[Observation], bool], stack: str) -> bool:
        return self.simulator.run_until(lambda: condition(self.observe(stack)))

    def run_until_quiet(self) -> None:
        self.simulator.run_until_quiet()

    def observe(self, stack: str) -> Observation:
        sim = self.simulator
        record = sim.memory.get_stack(stack)
        views = [
            ResourceView(
                name=r.name,
                phase=r.phase,
                reference_id=r.reference_id,
                replaced=r.replaced_by is not None,
                converged=r.status == COMPLETE and r.action != "INIT",
                resource_id=r.resource_id,
            )
            for r in sorted(sim.resources(stack), key=lambda r: (r.created_at, r.id))
        ]
        return Observation(
            phase=None if record is None else record.phase,
            ready=False if record is None else record.ready,
            reason="" if record is None else record.status_reason,
            outputs={} if record is None else dict(record.outputs),
            resources=views,
            reality=sim.reality.of_stack(stack),
        )

    def pause(self, stack: str, resource: str) -> None:
        self.simulator.pause(resource)

    def resume(self, stack: str, resource: str) -> None:
        self.simulator.resume(resource)

    def crash(self, stack: str, resource: str) -> None:
        self.simulator.crash_worker_of(resource)


# -- checking reality ----------------------------------------------------------------------------


def reality_errors(
    observation: Observation,
    template: Mapping[str, Any] | None,
    parameters: Mapping[str, Any],
    stack: str,
    types: TypeRegistry,
    definitions: DefinitionLoader = template_definitions,
) -> list[str]:
    """Differences between reality and what `template` (None: empty) asks for.

    Every resource of a type with a physical resource has exactly one copy,
    whose properties are the template's with get_resource / get_attr resolved
    against the physical copies; nothing else of the stack exists.
    """
    revision = None if template is None else TemplateRevision("check", stack, template, parameters)
    definition = definitions(revision, StackRef(stack, stack), types, None)
    errors: list[str] = []
    data: dict[str, ResourceData] = {}
    physical: dict[str, PhysicalRecord] = {}
    for name, resource in definition.resources.items():
        copies = observation.copies(name)
        if types.get(resource.type).has_physical_resource:
            if len(copies) != 1:
                errors.append(f"{name}: expected 1 physical copy, found {len(copies)}")
            if copies:
                physical[name] = copies[0]
                data[name] = ResourceData(copies[0].name, dict(copies[0].attributes))
        else:
            if copies:
                errors.append(f"{name}: expected no physical copy, found {len(copies)}")
            view = observation.resource(name)
            data[name] = ResourceData(view.reference_id if view else None, {})
    for name, copy in physical.items():
        expected = definition.resolve_properties(name, data)
        if dict(copy.properties) != expected:
            errors.append(f"{name}: properties {dict(copy.properties)} != template's {expected}")
    for record in observation.reality:
        if record.logical_name not in definition.resources:
            errors.append(f"unexpected physical resource {record.name} ({record.logical_name})")
    return errors


# -- the runner ----------------------------------------------------------------------------------


@dataclass
class Scenario:
    """A parsed scenario file."""

    name: str
    stack: str
    templates: dict[str, Mapping[str, Any]]
    steps: list[Mapping[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)
    # Named files maps (Heat's `files`), for operations' `files: NAME`.
    files: dict[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Scenario:
        """Read a scenario file."""
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict) or "steps" not in raw:
            raise ScenarioError(f"{path}: a scenario is a mapping with `steps`")
        return cls(
            name=path.stem,
            stack=str(raw.get("stack", "foo")),
            templates=dict(raw.get("templates") or {}),
            steps=list(raw["steps"]),
            metadata=dict(raw.get("metadata") or {}),
            files=dict(raw.get("files") or {}),
        )


class Runner:
    """Runs a scenario's steps on a driver, checking as it goes."""

    def __init__(
        self,
        scenario: Scenario,
        driver: Driver,
        types: TypeRegistry | None = None,
        *,
        definitions: DefinitionLoader = template_definitions,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.driver = driver
        self.types = types if types is not None else TypeRegistry.from_entry_points()
        self.definitions = definitions
        self.log = log or (lambda _text: None)
        self.remembered: dict[str, str] = {}
        # Parameters last used with each template name, for `reality: NAME`.
        self.parameters: dict[str, Mapping[str, Any]] = {}

    def run(self) -> None:
        """Run every step; raise ScenarioError at the first failed check."""
        for number, step in enumerate(self.scenario.steps, 1):
            if not isinstance(step, dict) or len(step) != 1:
                raise ScenarioError(f"step {number}: one key per step, got {step!r}")
            ((kind, argument),) = step.items()
            self.log(f"{number}. {kind}: {argument}")
            try:
                self._run_step(kind, argument)
            except ScenarioError as exc:
                raise ScenarioError(f"{self.scenario.name} step {number} ({kind}): {exc}") from None

    def _template(self, ref: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        if isinstance(ref, str):
            ref = {"template": ref}
        if not isinstance(ref, dict):
            raise ScenarioError(f"expected a template name or mapping, got {ref!r}")
        if "heat_template_version" in ref:
            return ref, {}
        name = ref.get("template")
        if isinstance(name, dict):
            return name, dict(ref.get("parameters") or {})
        if name not in self.scenario.templates:
            raise ScenarioError(f"no template {name!r}")
        parameters = dict(ref.get("parameters") or {})
        self.parameters[name] = parameters
        return self.scenario.templates[name], parameters

    def _files(self, ref: Any) -> dict[str, str]:
        if isinstance(ref, dict):
            return dict(ref)
        if ref not in self.scenario.files:
            raise ScenarioError(f"no files {ref!r}")
        return dict(self.scenario.files[ref])

    def _run_step(self, kind: str, argument: Any) -> None:
        stack = self.scenario.stack
        if kind in ("create", "update"):
            template, parameters = self._template(argument)
            options = {}
            if isinstance(argument, dict):
                options = {
                    k: argument[k]
                    for k in ("disable_rollback", "timeout", "environment")
                    if k in argument
                }
                if "files" in argument:
                    options["files"] = self._files(argument["files"])
            self.driver.apply(stack, Operation(kind, template, parameters, options))
        elif kind in ("rollback", "delete"):
            self.driver.apply(stack, Operation(kind))
        elif kind == "cancel":
            options = argument if isinstance(argument, dict) else {}
            self.driver.apply(stack, Operation("cancel", options=options))
        elif kind == "run":
            if argument == "quiet":
                self.driver.run_until_quiet()
            else:
                self.driver.step(int(argument))
        elif kind == "run_until":
            condition = self._condition(argument)
            if not self.driver.run_until(condition, stack):
                raise ScenarioError(f"never reached {argument}; now {self._describe()}")
        elif kind == "pause":
            self.driver.pause(stack, str(argument))
        elif kind == "resume":
            self.driver.resume(stack, str(argument))
        elif kind == "crash":
            self.driver.crash(stack, str(argument))
        elif kind == "remember":
            observation = self.driver.observe(stack)
            for resource, label in dict(argument).items():
                copies = observation.copies(resource)
                if len(copies) != 1:
                    raise ScenarioError(f"remember {resource}: {len(copies)} copies")
                self.remembered[str(label)] = copies[0].name
        elif kind == "remember_nested":
            observation = self.driver.observe(stack)
            for resource, label in dict(argument).items():
                view = observation.resource(str(resource))
                if view is None or not view.resource_id:
                    raise ScenarioError(f"remember_nested {resource}: no child stack")
                self.remembered[str(label)] = view.resource_id
        elif kind == "expect":
            errors = self._check(dict(argument))
            if errors:
                raise ScenarioError("; ".join(errors))
        else:
            raise ScenarioError(f"unknown step {kind!r}")

    def _describe(self) -> str:
        observation = self.driver.observe(self.scenario.stack)
        resources = ", ".join(f"{v.name}={v.phase}" for v in observation.resources)
        return f"stack {observation.phase} (ready={observation.ready}); {resources}"

    def _condition(self, argument: Any) -> Callable[[Observation], bool]:
        if not isinstance(argument, dict):
            raise ScenarioError(f"run_until takes a mapping, got {argument!r}")
        expected = dict(argument)

        def holds(observation: Observation) -> bool:
            stack_phase = expected.get("phase") if "resource" not in expected else None
            if stack_phase is not None and observation.phase != stack_phase:
                return False
            if "resource" in expected:
                name = str(expected["resource"])
                phases = {v.phase for v in observation.resources if v.name == name}
                if expected.get("phase") not in phases:
                    return False
            if "ready" in expected and observation.ready != expected["ready"]:
                return False
            copies = dict(expected.get("copies") or {})
            return all(len(observation.copies(n)) == c for n, c in copies.items())

        return holds

    def _check(self, expected: dict[str, Any]) -> list[str]:
        observation = self.driver.observe(self.scenario.stack)
        errors = self._check_observation(observation, expected)
        for resource, nested in dict(expected.get("nested") or {}).items():
            view = observation.resource(str(resource))
            if view is None or not view.resource_id:
                errors.append(f"nested {resource}: no resource with a child stack")
                continue
            child = self.driver.observe(view.resource_id)
            errors += [f"nested {resource}: {e}" for e in self._check_observation(child, nested)]
        for resource, label in dict(expected.get("same_nested") or {}).items():
            view = observation.resource(str(resource))
            found = None if view is None else view.resource_id
            if found != self.remembered[str(label)]:
                errors.append(f"nested {resource}: child {found} is not the remembered {label}")
        for label in expected.get("gone") or ():
            child = self.driver.observe(self.remembered[str(label)])
            if child.phase not in (None, "DELETE_COMPLETE") or child.resources or child.reality:
                errors.append(
                    f"stack {label} is not gone: {child.phase}, {len(child.resources)} "
                    f"resources, {len(child.reality)} physical"
                )
        if "reality" in expected:
            ref = expected["reality"]
            template: Mapping[str, Any] | None
            parameters: Mapping[str, Any]
            if ref == "empty":
                template, parameters = None, {}
            elif isinstance(ref, str) and ref in self.scenario.templates:
                template, parameters = self.scenario.templates[ref], self.parameters.get(ref, {})
            else:
                template, parameters = self._template(ref)
            errors += reality_errors(
                observation, template, parameters, self.scenario.stack, self.types, self.definitions
            )
        return errors

    def _check_observation(self, observation: Observation, expected: dict[str, Any]) -> list[str]:
        """The checks of `expect` that read one stack's observation."""
        errors: list[str] = []
        if "phase" in expected and observation.phase != expected["phase"]:
            errors.append(
                f"stack phase {observation.phase} != {expected['phase']} ({observation.reason})"
            )
        if "ready" in expected and observation.ready != expected["ready"]:
            errors.append(f"stack ready {observation.ready} != {expected['ready']}")
        if "reason" in expected and str(expected["reason"]) not in observation.reason:
            errors.append(f"stack reason {observation.reason!r} lacks {expected['reason']!r}")
        for name, count in dict(expected.get("copies") or {}).items():
            found = len(observation.copies(name))
            if found != count:
                errors.append(f"{name}: {found} physical copies, expected {count}")
        for name, phase in dict(expected.get("resources") or {}).items():
            view = observation.resource(name)
            if view is None or view.phase != phase:
                errors.append(
                    f"resource {name} is {view.phase if view else 'missing'}, expected {phase}"
                )
        for name, value in dict(expected.get("outputs") or {}).items():
            if observation.outputs.get(name) != value:
                errors.append(
                    f"output {name} = {observation.outputs.get(name)!r}, expected {value!r}"
                )
        for name, label in dict(expected.get("same_physical") or {}).items():
            copies = [c.name for c in observation.copies(name)]
            if copies != [self.remembered[label]]:
                errors.append(f"{name}: physical {copies} is not the remembered {label}")
        for name, label in dict(expected.get("replaced") or {}).items():
            copies = [c.name for c in observation.copies(name)]
            if self.remembered[label] in copies or len(copies) != 1:
                errors.append(f"{name}: physical {copies} should be one new copy, not {label}")
        return errors


def run_file(path: Path, *, trace: bool = False, out: Callable[[str], None] = print) -> None:
    """Run one scenario file on the simulator, printing steps (and worker steps with trace)."""
    scenario = Scenario.load(path)
    driver = SimulatorDriver(trace=out if trace else None)
    Runner(scenario, driver, log=out).run()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run scenario files on the simulator."""
    parser = argparse.ArgumentParser(prog="python -m convergence.operator.engine.sim.scenario")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--trace", action="store_true", help="print every worker step")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        print(f"== {path}")
        try:
            run_file(path, trace=args.trace)
        except ScenarioError as exc:
            failed += 1
            print(f"FAILED: {exc}")
        else:
            print("ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
