"""`convergence` as operators before readable record ids ran it: records named by bare UUIDs.

Up to the change that made record ids readable (`engine.record_ids`), a new
record's id was `Engine.new_id()` itself, a UUID; everything else of that
naming is still this code's (a UUID record's short id, physical names and
the UUID form of its replacements), kept so that an upgrade finds them. So the
old operator's records are made by running this very operator with that one
function put back, which the upgrade tests do:

    python -m convergence.operator.testing.legacy_ids run -n NAMESPACE
"""

from __future__ import annotations

import sys

from convergence.operator import cli
from convergence.operator.engine import operations


def uuid_record_id(stack: str, name: str, unique: str) -> str:
    """A new record's id as older operators gave it: the unique id alone."""
    return unique


def main() -> int:
    operations.record_id = uuid_record_id  # type: ignore[attr-defined]  # its import, replaced
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
