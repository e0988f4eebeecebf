"""How commands print: aligned tables for people, JSON or YAML for programs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml

TABLE = "table"
JSON = "json"
YAML = "yaml"
FORMATS = (TABLE, JSON, YAML)


def add_format(parser: argparse.ArgumentParser) -> None:
    """The `-o table|json|yaml` option of a command."""
    parser.add_argument(
        "-o", "--output", choices=FORMATS, default=TABLE, help="output format (default: table)"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned as kubectl aligns them: three spaces apart, the last one unpadded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def dump(data: Any, fmt: str) -> str:
    """`data` (plain JSON values) as JSON or YAML text."""
    if fmt == JSON:
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def emit(text: str) -> None:
    """Write a command's output."""
    sys.stdout.write(text)
    sys.stdout.flush()
