"""The operator's side of the Kubernetes API, one module per kind of object.

`api` is the vocabulary the others share: the API's refusals as one error
family, and the compare-and-set, first-write and push of our objects'
status. `store.KubernetesStore` is the engine's Store: its records in `Stack`
and `StackResource` objects (DESIGN.md §2); it keeps a traversal's graph and
stack-complete sync point in ConfigMaps (`graphs`) and template revisions in
ControllerRevisions and Secrets (`revisions`). `records` converts records to
and from object bodies without I/O; `names` turns engine identifiers into
valid Kubernetes names and label values; `cache` keeps the bodies the watch
streams deliver. For the resource types: `reality.ConfigMapReality` is the
physical world of OS::Heat::TestResource, a ConfigMap per physical resource;
`secrets` is the plugin API's SecretStore; `objects` its ObjectClient.
"""
