"""The convergence engine: templates, the traversal graph, sync points and the converger.

Pure Python: it imports neither kopf nor the Kubernetes client (an import-linter
contract keeps it so). It talks to a small store interface, implemented in
memory for the simulator and on the Kubernetes API by the operator.
"""
