"""Configuration: one Settings reads the environment; every variable is documented."""

from __future__ import annotations

import ast
import os
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


def test_only_the_command_line_calls_from_env() -> None:
    # The library is given its Settings (or the FaceOptions part of them) by its caller,
    # down to the worker processes that embed; it never reads them for itself.
    callers = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "config.py"
        and "from_env(" in path.read_text()
        and "cli" not in path.relative_to(SRC).parts
    ]
    assert callers == []


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


def test_the_runtime_flag_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from doppel.cli import app

    def runtime_shown(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, "models"], env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        return result.stdout.split("runtime: ", 1)[1].split(")", 1)[0]

    monkeypatch.delenv("DOPPEL_RUNTIME", raising=False)
    assert runtime_shown() == "auto"
    monkeypatch.setenv("DOPPEL_RUNTIME", "onnx")
    assert runtime_shown() == "onnx"
    assert runtime_shown("--runtime", "TensorFlow") == "tensorflow"
    assert os.environ["DOPPEL_RUNTIME"] == "onnx"  # the flag went into the Settings only
    assert runtime_shown() == "onnx"
    monkeypatch.setenv("DOPPEL_RUNTIME", "tpu")
    bad = CliRunner().invoke(app, ["models"])
    assert bad.exit_code == 2
    assert "DOPPEL_RUNTIME must be one of auto, onnx, openvino, tensorflow" in bad.stderr
    assert runtime_shown("--runtime", "onnx") == "onnx"  # the flag stands in for it


def test_a_caller_hands_a_command_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Settings live in Typer's context (ctx.obj), so a caller can give its own, and
    # `--runtime` still lays the flag over them.
    import dataclasses

    from typer.testing import CliRunner

    from doppel.cli import app

    monkeypatch.setenv("DOPPEL_RUNTIME", "onnx")
    given = dataclasses.replace(Settings.from_env(), runtime="tensorflow")

    def runtime_shown(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, "models"], obj=given, env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        return result.stdout.split("runtime: ", 1)[1].split(")", 1)[0]

    assert runtime_shown() == "tensorflow"
    assert runtime_shown("--runtime", "openvino") == "openvino"
    assert given.runtime == "tensorflow"  # the caller's Settings are not changed
