"""What a module imports, read from its source: the layer rule of design.md §3 as a test."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports_of(relative_path: str) -> set[str]:
    """The absolute modules a source file imports, at any depth of its code."""
    tree = ast.parse((ROOT / relative_path).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def imports_above(relative_path: str, *packages: str) -> set[str]:
    """The imports of the file from any of `packages` (which sit above it)."""
    return {
        module
        for module in imports_of(relative_path)
        if any(module == p or module.startswith(f"{p}.") for p in packages)
    }
