"""routing/ is RelayCore's pure core: it imports the standard library and itself, nothing else."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import routing

ROUTING = Path(routing.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_routing_imports_only_the_standard_library_and_itself() -> None:
    allowed = set(sys.stdlib_module_names) | {"routing"}
    found = {
        f"{path.name}: {root}"
        for path in sorted(ROUTING.glob("*.py"))
        for root in _imported_roots(path) - allowed
    }
    assert not found, f"routing/ imports outside the standard library: {sorted(found)}"
