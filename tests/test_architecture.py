"""The package's shape, enforced: one dependency rule, the SDK's private surface in one module.

* `engine/` is shared by every stream and knows no domain: it imports neither
  `profiles/` nor `events/`;
* domains never import each other;
* nothing outside `simulator/` imports it, and it imports nothing of the tap;
* private singer-sdk names are imported in `engine/sdk_hooks.py` only, and the SDK's
  final `sync_all` is not overridden;
* every subpackage is a regular package and every module stays readable in size.

An `ast` scan of import statements (relative ones resolved), checked first on a
synthetic package so that the checker itself is known to catch a violation.
"""

from __future__ import annotations

import ast
import typing as t
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tap_mixpanel_profiles"
NAME = PACKAGE.name
SUBPACKAGES = ("engine", "profiles", "events", "simulator")
MAX_MODULE_LINES = 420
#: Layers that must not import each other: (importer, imported).
FORBIDDEN = [
    ("engine", "profiles"),
    ("engine", "events"),
    ("profiles", "events"),
    ("events", "profiles"),
]
SDK_HOOKS = f"{NAME}.engine.sdk_hooks"


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of `path` inside the package rooted at `root`."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every module (and `module.name` for from-imports) that `source` imports."""
    found: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def scan(root: Path) -> dict[str, set[str]]:
    """module -> what it imports, for every module under `root`."""
    return {
        module_name(path, root): imports_of(
            path.read_text(encoding="utf-8"),
            module_name(path, root),
            path.name == "__init__.py",
        )
        for path in sorted(root.rglob("*.py"))
    }


def layer(module: str, root: str) -> str | None:
    """The subpackage a module belongs to (None for top-level modules)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in SUBPACKAGES) else None


def violations(graph: dict[str, set[str]], root: str) -> list[str]:
    """Every import that breaks the dependency rule."""
    found = []
    for module, imported in graph.items():
        own = layer(module, root)
        for target in sorted(imported):
            if not target.startswith(f"{root}."):
                continue
            other = layer(target, root)
            if (own, other) in FORBIDDEN:
                found.append(f"{module} imports {target} ({own} must not import {other})")
            if other == "simulator" and own != "simulator":
                found.append(f"{module} imports the simulator ({target})")
            if own == "simulator" and other != "simulator":
                found.append(f"the simulator ({module}) imports the tap ({target})")
    return found


def private_sdk_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """module -> the private singer-sdk names or modules it imports."""
    found: dict[str, list[str]] = {}
    for module, imported in graph.items():
        private = [
            name
            for name in imported
            if name.split(".")[0] == "singer_sdk"
            and any(part.startswith("_") for part in name.split("."))
        ]
        if private:
            found[module] = sorted(private)
    return found


# ------------------------------------------------------------------- the checker
def test_the_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    root = tmp_path / NAME
    files = {
        "__init__.py": "",
        "engine/__init__.py": "",
        "engine/core.py": "from ..profiles import sync\n",  # engine -> profiles
        "profiles/__init__.py": "",
        "profiles/sync.py": f"import {NAME}.events.sync\n",  # profiles -> events
        "events/__init__.py": "",
        "events/sync.py": "from .helpers import x\n",  # fine
        "events/helpers.py": f"from {NAME}.simulator import server\n",  # tap -> simulator
        "simulator/__init__.py": "",
        "simulator/server.py": f"from {NAME}.errors import TapError\n",  # simulator -> tap
        "tap.py": "from singer_sdk.helpers._typing import is_uniform_list\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    graph = scan(root)
    found = "\n".join(violations(graph, NAME))
    assert "engine.core imports" in found and "engine must not import profiles" in found
    assert "profiles must not import events" in found
    assert "events.helpers imports the simulator" in found
    assert "the simulator (" in found and "imports the tap" in found
    assert "events.sync" not in found.replace("events.sync (", "")
    assert list(private_sdk_imports(graph)) == [f"{NAME}.tap"]


# ------------------------------------------------------------------ the package
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return scan(PACKAGE)


def test_dependency_rule(graph: dict[str, set[str]]) -> None:
    assert violations(graph, NAME) == []


def test_private_sdk_names_are_imported_in_one_module(graph: dict[str, set[str]]) -> None:
    assert set(private_sdk_imports(graph)) <= {SDK_HOOKS}


def test_sync_all_is_not_overridden_and_private_hooks_live_in_sdk_hooks() -> None:
    from singer_sdk import Stream, Tap

    sdk_private = {
        name
        for cls in (Tap, Stream)
        for name in dir(cls)
        if name.startswith("_") and not name.startswith("__")
    }
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        methods = {
            node.name
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef)
            for node in cls.body
            if isinstance(node, ast.FunctionDef)
        }
        assert "sync_all" not in methods, f"{path} overrides sync_all (final in the SDK)"
        if module_name(path, PACKAGE) != SDK_HOOKS:
            assert methods & sdk_private == set(), f"{path} overrides private SDK hooks"


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackages_are_regular_packages(name: str) -> None:
    assert (PACKAGE / name / "__init__.py").is_file()


def test_modules_stay_readable_in_size() -> None:
    sizes: dict[str, int] = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in sizes.items() if v > MAX_MODULE_LINES} == {}


def test_tests_mirror_the_packages() -> None:
    tests: t.Final = Path(__file__).resolve().parent
    for name in (*SUBPACKAGES, "e2e"):
        assert (tests / name / "__init__.py").is_file(), f"tests/{name}/ is missing"
