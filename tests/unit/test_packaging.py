"""The folder-to-import-name mapping in pyproject.toml covers every package."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"operator": "convergence.operator", "reconcilers": "convergence.reconcilers"}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {name: folder for folder, name in FOLDERS.items()}
    on_disk = {
        FOLDERS[init.relative_to(ROOT).parts[0]]
        + "".join(f".{part}" for part in init.parent.relative_to(ROOT).parts[1:])
        for folder in FOLDERS
        for init in (ROOT / folder).rglob("__init__.py")
    }
    missing = on_disk - set(config["packages"])
    assert not missing, f"add these packages to [tool.setuptools] packages: {sorted(missing)}"
    stale = set(config["packages"]) - on_disk
    assert not stale, f"these listed packages have no folder: {sorted(stale)}"
