"""Every stored notebook is a jupytext pair in sync, without outputs (item: the notebook is the source)."""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from mskseg_lib.notebook_files import pair_problems, pre_save_hook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_numbered_notebook_and_script_is_paired() -> None:
    assert len(NOTEBOOKS) == 7
    scripts = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert [p.stem for p in scripts] == [p.stem for p in NOTEBOOKS]
    assert (ROOT / "notebooks" / "jupytext.toml").exists()


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_pair_in_sync_without_outputs(ipynb: Path) -> None:
    assert pair_problems(ipynb) == []


def _copy_pair(tmp_path: Path) -> Path:
    src = NOTEBOOKS[0]
    for suffix in (".ipynb", ".py"):
        shutil.copy(src.with_suffix(suffix), tmp_path / src.with_suffix(suffix).name)
    return tmp_path / src.name


def test_edited_script_or_stored_outputs_are_reported(tmp_path: Path) -> None:
    ipynb = _copy_pair(tmp_path)
    script = ipynb.with_suffix(".py")
    script.write_text(script.read_text() + "\n# %%\nprint('a new cell')\n")
    problems = pair_problems(ipynb)
    assert len(problems) == 1 and "differs from" in problems[0] and "jupytext --sync" in problems[0]

    ipynb = _copy_pair(tmp_path)
    nb = nbformat.read(ipynb, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    code.execution_count = 3
    nbformat.write(nb, ipynb)
    assert [p for p in pair_problems(ipynb) if "stores outputs" in p]

    ipynb.with_suffix(".py").unlink()
    assert "no paired" in pair_problems(ipynb)[0]


def test_pre_save_hook_strips_outputs_and_execution_metadata() -> None:
    nb = nbformat.v4.new_notebook(metadata={"papermill": {"duration": 1.0}})
    executed = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=1, metadata={"execution": executed, "tags": ["x"]})
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1)]
    nb.cells = [cell, nbformat.v4.new_markdown_cell("# hi")]
    model = {"type": "notebook", "content": nb}
    pre_save_hook(model, path="x.ipynb")
    assert cell.outputs == [] and cell.execution_count is None
    assert cell.metadata == {"tags": ["x"]} and "papermill" not in nb.metadata
    text = {"type": "file", "content": "keep me"}
    pre_save_hook(text, path="x.py")
    assert text["content"] == "keep me"
