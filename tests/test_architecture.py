"""The layering of docs/ARCHITECTURE.md holds: the import contracts in pyproject.toml pass, they
do catch a stage importing an app, and long modules say why they stay whole."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
ENGINE = REPOSITORY / "engine" / "dubline"
#: A module past this many lines must say at its top why it stays whole.
LONG_MODULE_LINES = 420
WHOLE_MARKER = "One module because"


def _lint_imports(engine_parent: Path) -> subprocess.CompletedProcess:
    paths = [engine_parent, REPOSITORY / "plugin", REPOSITORY / "plugin" / "blender", REPOSITORY / "plugin" / "resolve"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    tool = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(tool), "--config", str(REPOSITORY / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_import_contracts_are_kept() -> None:
    run = _lint_imports(REPOSITORY / "engine")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "broken" in run.stdout and " 0 broken" in run.stdout


def test_a_stage_importing_an_app_breaks_the_contracts(tmp_path: Path) -> None:
    copy = tmp_path / "engine" / "dubline"
    shutil.copytree(ENGINE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    probe = copy / "stages" / "media" / "probe.py"
    probe.write_text(probe.read_text() + "\nfrom dubline.apps.cli import main as _cli  # a layering violation\n")
    run = _lint_imports(tmp_path / "engine")
    assert run.returncode != 0
    assert "dubline.stages.media.probe -> dubline.apps.cli.main" in run.stdout


def test_long_modules_say_why_they_stay_whole() -> None:
    unexplained = []
    for path in sorted(ENGINE.rglob("*.py")):
        if "_generated" in path.parts:
            continue
        source = path.read_text()
        if source.count("\n") <= LONG_MODULE_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if WHOLE_MARKER not in docstring:
            unexplained.append(f"{path.relative_to(REPOSITORY)} ({source.count(chr(10))} lines)")
    assert not unexplained, f"split these or say '{WHOLE_MARKER} ...' in their docstring: {unexplained}"
