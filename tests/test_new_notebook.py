"""scripts/new_notebook.py: the paper id reaches the notebook's code only as a checked Python string literal."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nbformat

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "new_notebook.py"


def new_notebook(cwd: Path, paper: str) -> subprocess.CompletedProcess:
    (cwd / "notebooks").mkdir(exist_ok=True)
    (cwd / "intro.md").write_text("An intro.\n")
    return subprocess.run([sys.executable, str(SCRIPT), paper, "A title", "intro.md"], cwd=cwd, capture_output=True,
                          text=True)


def test_the_paper_id_is_checked_and_reaches_the_code_only_as_a_string_literal(tmp_path):
    bad = 'x"; open("pwned", "w"); "'  # pasted into `paper = "{id}"` this was code run by every execution
    proc = new_notebook(tmp_path, bad)
    assert proc.returncode == 2 and "is not a paper id" in proc.stderr
    assert list((tmp_path / "notebooks").iterdir()) == [] and not (tmp_path / "pwned").exists()
    assert new_notebook(tmp_path, "zz_new").returncode == 0
    nb = nbformat.read(str(tmp_path / "notebooks" / "zz_new.ipynb"), as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    first = ast.parse(params.source).body[0]
    assert isinstance(first, ast.Assign) and first.targets[0].id == "paper"
    assert isinstance(first.value, ast.Constant) and first.value.value == "zz_new"
