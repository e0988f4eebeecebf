"""The engine's harness: a deterministic simulator and the scenario runner.

`simulator` runs the whole algorithm in one process, one worker step at a
time, on an in-memory store, Reality and SecretStore with a virtual clock,
and can pause or crash workers. `scenario` reads YAML stories of stack
operations and checks, and runs them through a `Driver`: on the simulator
here, on the real operator in `operator/testing/kube_driver.py`.
"""
