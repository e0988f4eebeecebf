"""The engine's store and the resource types' reality on the Kubernetes API.

`store.KubernetesStore` keeps the engine's records in `Stack` and
`StackResource` objects and `ControllerRevision`s (DESIGN.md §2);
`reality.ConfigMapReality` is the physical world of OS::Heat::TestResource, a
ConfigMap per physical resource. `records` converts records to and from object
bodies without I/O; `names` turns engine identifiers into valid Kubernetes
names and label values.
"""
