"""The Convergence operator: the engine, the Kubernetes store, kopf handlers and the CLI."""
