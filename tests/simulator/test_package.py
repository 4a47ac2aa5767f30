"""The simulator is a self-contained subpackage: standard library only, no tap imports, and the tap
never imports it (it ships with the tap for the demo, tests and benchmarks, nothing more)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tap_mixpanel_profiles.simulator as simulator_package

PACKAGE = Path(simulator_package.__file__).parent
TAP = PACKAGE.parent


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(level, dotted name) of everything a file imports, relative imports resolved against its
    package (``from . import x`` yields the package and ``package.x``)."""
    package = list(path.relative_to(TAP.parent).parent.parts)
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((0, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package[: len(package) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.level, base))
            found.extend((node.level, f"{base}.{alias.name}") for alias in node.names)
    return found


def test_simulator_imports_only_the_standard_library_and_itself() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "__main__.py", "server.py", "engage.py"}
    for path in files:
        for level, module in imported_modules(path):
            if level:
                assert level == 1, f"{path.name}: relative import beyond the package: {module}"
                assert module.startswith("tap_mixpanel_profiles.simulator"), path.name
            else:
                top = module.split(".")[0]
                assert top in sys.stdlib_module_names, f"{path.name} imports {module}"


def test_the_tap_never_imports_the_simulator() -> None:
    tap_files = [p for p in sorted(TAP.rglob("*.py")) if PACKAGE not in p.parents]
    assert TAP / "tap.py" in tap_files
    for path in tap_files:
        for _, module in imported_modules(path):
            assert not module.startswith("tap_mixpanel_profiles.simulator"), path


def test_importing_the_simulator_loads_nothing_of_the_tap() -> None:
    probe = (
        "import sys, tap_mixpanel_profiles.simulator\n"
        "mods = [m for m in sys.modules if m.startswith('tap_mixpanel_profiles.')]\n"
        "print(sorted(m for m in mods if not m.startswith('tap_mixpanel_profiles.simulator')))\n"
        "print('requests' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.split("\n")[:2] == ["[]", "False"]
