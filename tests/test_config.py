"""Configuration: one Settings reads the environment; every variable is documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from doppel.config import ENVIRONMENT, Settings
from doppel.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "doppel"


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^# ([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert set(ENVIRONMENT) <= documented


def _environment_reads(tree: ast.AST) -> list[str]:
    """os.environ.get(...), os.environ[...], os.getenv(...) in a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = ast.unparse(node.func)
            if target in ("os.environ.get", "os.getenv"):
                found.append(ast.unparse(node))
        if (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.ctx, ast.Load)
        ):
            found.append(ast.unparse(node))
    return found


def test_only_config_reads_the_environment() -> None:
    reads = {
        str(path.relative_to(SRC)): _environment_reads(ast.parse(path.read_text()))
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "config.py"
    }
    assert {name: found for name, found in reads.items() if found} == {}


# The inference runtime (`doppel --runtime`) and the download settings reach worker
# processes through the environment, so the face pipeline reads them there when it is
# given no Settings.
FROM_ENV_FALLBACKS = ["faces/catalog.py", "faces/embed.py"]


def test_only_the_command_line_calls_from_env() -> None:
    callers = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "config.py"
        and "Settings.from_env()" in path.read_text()
        and "cli" not in path.relative_to(SRC).parts
    ]
    assert callers == FROM_ENV_FALLBACKS


def test_from_env_reads_every_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "DOPPEL_HOME": str(tmp_path),
        "DOPPEL_GALLERY": "ffhq",
        "DOPPEL_IMAGE_ROOT": f"{tmp_path / 'a'}:{tmp_path / 'b'}",
        "DOPPEL_EF_SEARCH": "250",
        "DOPPEL_BATCH_SIZE": "8",
        "DOPPEL_HOST": "0.0.0.0",
        "DOPPEL_PORT": "9000",
        "DOPPEL_MAX_UPLOAD_MIB": "5",
        "RAY_ADDRESS": "auto",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DOPPEL_REPORTS", raising=False)
    settings = Settings.from_env()
    assert (settings.gallery, settings.ef_search, settings.batch_size) == ("ffhq", 250, 8)
    assert (settings.host, settings.port, settings.max_upload_mib) == ("0.0.0.0", 9000, 5)
    assert settings.image_roots == (tmp_path / "a", tmp_path / "b")
    assert settings.reports_dir == tmp_path / "reports"
    assert settings.ray_address == "auto"


def test_a_bad_number_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOPPEL_PORT", "eighty")
    with pytest.raises(UsageError, match="DOPPEL_PORT must be a whole number"):
        Settings.from_env()
    monkeypatch.setenv("DOPPEL_PORT", "70000")
    with pytest.raises(UsageError, match="between 1 and 65535"):
        Settings.from_env()
