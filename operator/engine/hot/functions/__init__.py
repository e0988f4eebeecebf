"""HOT intrinsic functions, one module per family.

`snippets` holds the three phases every function goes through (parse, bind,
resolve) and the `Function` base; `references` (get_param, get_resource,
get_attr), `strings`, `structures` (maps and lists) and `conditions` (with
`if`) hold HOT's own; `cfn` the CloudFormation functions of the oldest
version, apart; `parser` finds the function each snippet names.
"""
