"""The template language: Heat Orchestration Templates (HOT), from text to what a traversal
resolves.

- `loading`: YAML or JSON text to a JSON document, as Heat reads it;
- `template`: `Template`, the parsed, statically validated document;
- `parameters`: parameter schemas and the binding of a stack's values, with
  `constraints` (range, length, ...) and `coercion` (a value to a parameter type);
- `environment`: the Heat environment (parameters, parameter_defaults, resource_registry
  with aliases, templates and per-resource overrides; what a nested stack inherits);
- `template_resources`: a type that is a file of the files map, checked down its tree;
- `definition`: `StackDefinition`, a template bound to parameters, a stack identity
  and the environment, which resolves properties and outputs from resource data;
- `functions/`: the intrinsic functions, one module per family (references,
  strings, maps and lists, conditions), the CloudFormation ones apart (`cfn`), and
  the parser that finds them in snippets (and does get_file);
- `errors`: `TemplateError`, which every module raises.

Pure: it knows nothing of traversals, stores or resource types.
"""
