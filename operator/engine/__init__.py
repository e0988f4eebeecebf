"""The convergence engine: the traversal graph, sync points, the store and the converger.

Pure Python: it imports neither kopf nor the Kubernetes client (an import-linter
contract keeps it so). It talks to a small store interface, implemented in
memory for the simulator and on the Kubernetes API by the operator. The
template language is in `hot/`, the plugin API resource types implement in
`plugin/`, and the simulator and scenario runner in `sim/`; the layers
contract in pyproject.toml gives the order in which the modules build on
each other.
"""
