"""Every scenario file runs unchanged on the real operator, reality checked through the API.

One operator subprocess serves the module; each scenario gets its own
namespace. A scenario with a simulator-only step (holding or crashing one
worker) is skipped with its reason;
`KubernetesDriver` documents how `run: N` and `run: quiet` are read here.
A scenario's own `metadata` may skip it here (`kubernetes_skip`: its checks
depend on the simulator's exact interleaving and mean nothing through the
API) or mark it a strict xfail (`kubernetes_xfail`: what the operator gets
wrong today, with the evidence), each with its reason. None does today:
scenarios that watch a moment in progress give the resource concerned a wait
time, so that the moment lasts long enough to be seen through the API.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from convergence.operator.engine.sim.scenario import Runner, Scenario, ScenarioError
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import REPO_ROOT
from convergence.operator.testing.kube_driver import (
    KubernetesDriver,
    NotSupportedOnKubernetes,
    unsupported_reason,
)
from convergence.operator.testing.operator_process import OperatorProcess

pytestmark = pytest.mark.controlplane

SCENARIOS = sorted((REPO_ROOT / "tests" / "scenarios").glob("*.yaml"))


def _log_of(operator: OperatorProcess, namespace: str, lines: int = 60) -> str:
    """The operator log lines about `namespace` (the whole tail if none name it)."""
    text = operator.log.read_text(errors="replace").splitlines()
    mine = [line for line in text if namespace in line]
    return "\n".join((mine or text)[-lines:])


def _params() -> list[object]:
    params: list[object] = []
    for path in SCENARIOS:
        marks: list[pytest.MarkDecorator] = []
        known_failure = Scenario.load(path).metadata.get("kubernetes_xfail")
        if known_failure is not None:
            marks.append(pytest.mark.xfail(reason=known_failure, strict=True))
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


@pytest.mark.parametrize("path", _params())
def test_scenario_converges_on_the_operator_as_on_the_simulator(
    path: Path, cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    scenario = Scenario.load(path)
    reason = unsupported_reason(scenario) or scenario.metadata.get("kubernetes_skip")
    if reason is not None:
        pytest.skip(f"{scenario.name}: {reason}")
    steps: list[str] = []
    driver = KubernetesDriver(cluster, namespace)
    try:
        Runner(scenario, driver, log=steps.append).run()
    except NotSupportedOnKubernetes as exc:
        pytest.skip(f"{scenario.name}: {exc}")
    except ScenarioError as exc:
        pytest.fail(
            f"{exc}\nsteps run:\n  "
            + "\n  ".join(steps)
            + f"\noperator log ({namespace}):\n{_log_of(operator_process, namespace)}"
        )
    finally:
        driver.close()
