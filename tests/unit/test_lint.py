"""The project's rules that a linter can keep: pure cores import no clock, OS, sockets or threads
(ruff's banned-api, re-allowed only in shells, the supervisor and tools; import-linter for the
same through any chain of imports), the layers run tools -> actors -> etcdz -> proto_schemas
with no import circle (import-linter's contracts in pyproject.toml), the code is clean, and its
type hints hold (mypy, configured in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean_including_the_pure_core_import_ban() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    result = subprocess.run(
        [ruff, "check", "actors", "proto_schemas", "etcdz", "tools", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_contracts_hold_layers_no_circles_pure_cores(tmp_path: Path) -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), "import-linter is missing: pip install -e '.[test]'"
    # this tree's packages, not an installed copy of them
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [str(lint_imports), "--no-logo", "--cache-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_mypy_finds_no_type_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_print_in_the_server() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "actors").rglob("*.py")
        if any(line.lstrip().startswith("print(") for line in p.read_text().splitlines())
    ]
    assert offenders == []
