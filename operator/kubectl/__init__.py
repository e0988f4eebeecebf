"""`kubectl convergence`: a kubectl plugin for Stacks, a client tool run with the user's kubeconfig.

`main` parses the command line and connects (`client`); each command is a
module of its own with `register(subparsers)` and `run(args) -> int`:
`preview` (the operator's answer to a StackPreview), `resources`, `events`,
`trace`, `graph`, and the requests the operator reads from annotations,
`cancel`, `rollback` and `retry`. `snapshot` reads what
they show (the Stack, its StackResources as the engine's records, the current
traversal's graph) through the operator's own decoders in `kube/`; `output`
prints tables, JSON and YAML.
"""
