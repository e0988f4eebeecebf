"""Every scenario file runs on the simulator, in FIFO order and in shuffled interleavings."""

from __future__ import annotations

from pathlib import Path

import pytest

from convergence.operator.engine.sim.scenario import (
    Runner,
    Scenario,
    ScenarioError,
    SimulatorDriver,
    reality_errors,
)
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot

SCENARIOS = sorted((Path(__file__).parents[2] / "scenarios").glob("*.yaml"))
# Scenarios that stop workers at exact step counts are only meaningful in FIFO order.
STEP_COUNTED = {
    "create_early_delete",
    "create_rollback",
    "multiple_update",
    "update_add_rollback_early",
    "update_remove_rollback",
    "delete_while_creating",
    "update_while_in_progress",
}


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    Runner(Scenario.load(path), SimulatorDriver()).run()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "path",
    [p for p in SCENARIOS if p.stem not in STEP_COUNTED],
    ids=[p.stem for p in SCENARIOS if p.stem not in STEP_COUNTED],
)
def test_scenario_in_shuffled_order(path: Path, seed: int) -> None:
    Runner(Scenario.load(path), SimulatorDriver(Simulator(seed=seed))).run()


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 25, [p.stem for p in SCENARIOS]


def test_reality_check_reports_a_wrong_template() -> None:
    scenario = Scenario.load(SCENARIOS[0])
    driver = SimulatorDriver()
    Runner(scenario, driver).run()
    observation = driver.observe(scenario.stack)
    other = hot.template(
        hot.resources("OS::Heat::TestResource", A={"properties": {"value": "zzz"}})
    )
    errors = reality_errors(observation, other, {}, scenario.stack, driver.simulator.engine.types)
    assert any("A: properties" in e for e in errors), errors
    assert any("unexpected physical resource" in e for e in errors), errors


def test_a_failing_expectation_raises_with_the_step_named() -> None:
    scenario = Scenario.load(SCENARIOS[0])
    scenario.steps.append({"expect": {"phase": "DELETE_COMPLETE"}})
    with pytest.raises(ScenarioError, match=r"step \d+ \(expect\): stack phase CREATE_COMPLETE"):
        Runner(scenario, SimulatorDriver()).run()
