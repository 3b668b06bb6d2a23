"""The code's shape: modules stay readable, and a long function says why it is long."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "doppel"
MAX_MODULE_LINES = 450  # a module past it holds more than one concern
MAX_FUNCTION_LINES = 60


def test_no_module_is_over_450_lines() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_a_function_over_60_lines_says_why_just_above_it() -> None:
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


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its __init__.py)."""
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _import_graph() -> dict[str, set[str]]:
    """Module -> the modules of doppel it imports, at its top or inside a function; a
    name imported from a module (`from doppel.types import Gallery`) counts as that module."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _doppel_imports(path):
            while imported not in modules and "." in imported:
                imported = imported.rsplit(".", 1)[0]
            if imported in modules and imported not in (name, "doppel"):
                targets.add(imported)
        graph[name] = targets
    # `from doppel.faces import catalog` names the package too; it is catalog that is meant.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _unit(module: str) -> str:
    """The top-level folder or module a module belongs to: doppel.store.db -> store."""
    return module.split(".")[1] if module.count(".") else module


def _folder_graph() -> dict[str, set[str]]:
    folders: dict[str, set[str]] = {}
    for name, targets in _import_graph().items():
        folders.setdefault(_unit(name), set()).update(
            _unit(t) for t in targets if _unit(t) != _unit(name)
        )
    return folders


def test_no_two_files_import_each_other_directly_or_through_others() -> None:
    assert _cycles(_import_graph()) == []


def test_no_two_folders_import_each_other_directly_or_through_others() -> None:
    # A top-level module (search.py) is a folder of its own here.
    assert _cycles(_folder_graph()) == []


# The layers of docs/architecture.md, top down: each imports only its own and lower ones.
LAYERS = {
    "front ends": {"cli", "web", "__main__"},
    "use cases": {
        "search",
        "people",
        "dump",
        "resemble",
        "ingest",
        "index_builds",
        "composer",
        "sources",
        "templates",
        "duplicates",
    },
    "foundations": {"faces", "store"},
    "ground": {"types", "config", "errors", "serialize", "outputs"},
}


def test_imports_run_down_the_layers_and_never_back_up() -> None:
    floor = {unit: n for n, units in enumerate(reversed(LAYERS.values())) for unit in units}
    folders = _folder_graph()
    assert sorted(set(folders) - set(floor) - {"doppel"}) == []  # every folder has its layer
    climbs = sorted(
        f"{unit} -> {target}"
        for unit, targets in folders.items()
        for target in targets
        if unit != "doppel" and floor[target] > floor[unit]
    )
    assert climbs == []
    # The foundations stand side by side: the face pipeline knows no database and the
    # store no face pipeline.
    assert "store" not in folders["faces"] and "faces" not in folders["store"]


def test_the_foundations_write_no_command_line_words() -> None:
    # An error below the front ends says what happened; what to type next is a Remedy,
    # which the CLI words (cli.common.HINTS) and the web API leaves out.
    worded = []
    for path in sorted([*(SRC / "store").rglob("*.py"), *(SRC / "faces").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        worded += [
            f"{path.relative_to(SRC)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and "`doppel " in node.value
        ]
    assert worded == []
