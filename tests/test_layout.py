"""The code's shape: modules stay readable, and a long function says why it is long."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "doppel"
MAX_MODULE_LINES = 550  # about 500: a module past it holds more than one concern
MAX_FUNCTION_LINES = 80


def test_no_module_is_much_over_500_lines() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_a_function_over_80_lines_says_why_just_above_it() -> None:
    unexplained = []
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.end_lineno is None or node.end_lineno - node.lineno < MAX_FUNCTION_LINES:
                    continue
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if not lines[first - 2].lstrip().startswith("#"):
                    unexplained.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert unexplained == []


def _doppel_imports(path: Path) -> set[str]:
    """Every doppel module a file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("doppel")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("doppel"):
            assert node.module is not None
            # `from doppel.faces import catalog` imports the module doppel.faces.catalog.
            found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    return found


# The ground floor (docs/architecture.md): each module may import only these of doppel.
GROUND = {
    "errors.py": set(),
    "types.py": {"doppel.errors", "doppel.errors.UsageError", "doppel.errors.BadGalleryName"},
    "config.py": {"doppel.errors", "doppel.errors.UsageError"},
}


def test_the_ground_modules_import_nothing_above_them() -> None:
    imports = {name: _doppel_imports(SRC / name) - {"doppel"} for name in GROUND}
    assert {name: found - GROUND[name] for name, found in imports.items()} == {
        name: set() for name in GROUND
    }


def test_mtcnn_imports_no_networks() -> None:
    # One way: faces/networks.py builds the detector from faces/mtcnn.py's pipeline.
    assert not {
        m for m in _doppel_imports(SRC / "faces" / "mtcnn.py") if m.startswith("doppel.faces")
    }
    assert "doppel.faces.mtcnn" in _doppel_imports(SRC / "faces" / "networks.py")


def test_outside_the_ingest_package_only_its_entry_is_imported() -> None:
    # One entry (docs/architecture.md): the front ends and the rest of the library see
    # doppel.ingest's job, report and ingest_photos, never local, ray, batches or workers.
    entry = {f"doppel.ingest.{name}" for name in ("ingest_photos", "IngestJob", "IngestReport")}
    package = "doppel.ingest."
    inside = {
        str(path.relative_to(SRC)): {m for m in _doppel_imports(path) if m.startswith(package)}
        for path in SRC.rglob("*.py")
        if SRC / "ingest" not in path.parents
    }
    reaching = {name: sorted(found - entry) for name, found in inside.items() if found - entry}
    assert reaching == {}
