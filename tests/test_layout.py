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
