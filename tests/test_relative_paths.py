"""Tables and the companion's page records carry paths relative to the project, never this
machine's absolute paths (X02c's checkpoints, X07d's output NIfTIs)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from mskseg_lib import reporting
from mskseg_lib.settings import project_root, relative_to_root


def _cfg(tmp_path: Path) -> dict:
    return {"profile": "t", "paths": {"tables_dir": str(tmp_path / "tables" / "t")}}


def _absolute_cells(csv: Path) -> list[str]:
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    return [v for col in table.columns for v in table[col] if os.path.isabs(v)]


def test_relative_to_root() -> None:
    root = Path("/srv/mskseg")
    assert relative_to_root("/srv/mskseg/runs/fixture/x.nii.gz", root) == "runs/fixture/x.nii.gz"
    assert relative_to_root(Path("/srv/mskseg/runs/../weights/a.pth"), root) == "weights/a.pth"
    assert relative_to_root("/srv/mskseg", root) == "."
    assert relative_to_root("/srv/mskseg-other/a.pth", root) == "/srv/mskseg-other/a.pth"  # outside: as given
    assert relative_to_root("runs/x", root) == "runs/x"
    assert relative_to_root("", root) == ""
    assert relative_to_root(project_root() / "weights" / "a.pth") == "weights/a.pth"


@pytest.mark.parametrize("name,column", [("tableX02c_models_run", "checkpoint"),
                                         ("tableX07d_video3d_runs", "volume_nifti")])
def test_saved_tables_have_no_absolute_project_paths(tmp_path: Path, name: str, column: str) -> None:
    root = project_root()
    rows = pd.DataFrame({
        "model_key": ["lite_medsam", "sam_vit_b", "sam2"],
        column: [str(root / ".venv" / "lib" / "lite_medsam.pth"), root / "runs" / "fixture" / "v" / "s-003.nii.gz", ""],
        "n": [1, 2, 3],
    })
    path = reporting.save_table(rows, _cfg(tmp_path), name, "Models.", data_source="synthetic")
    assert _absolute_cells(path) == []
    saved = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(saved[column]) == [".venv/lib/lite_medsam.pth", "runs/fixture/v/s-003.nii.gz", ""]
    assert list(saved["n"]) == ["1", "2", "3"]
    assert str(rows[column].iloc[0]).startswith(str(root))  # the caller's frame is not changed


def test_paths_outside_the_project_kept(tmp_path: Path) -> None:
    rows = pd.DataFrame({"checkpoint": ["/opt/weights/sam_vit_b.pth"]})
    path = reporting.save_table(rows, _cfg(tmp_path), "x", "Models.", data_source="synthetic")
    assert pd.read_csv(path)["checkpoint"].tolist() == ["/opt/weights/sam_vit_b.pth"]


def test_companion_page_record_has_a_relative_run_folder(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbconvert")
    from mskseg_lib import companion

    run_dir = project_root() / "runs" / "t" / "20260101-000000"
    executed = tmp_path / "01_x.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 · X")])
    nbformat.write(nb, executed)
    tables = tmp_path / "tables"
    page = companion.render_notebook(executed, tables, status="ok", seconds=1.0, run_dir=run_dir)
    assert page.run_dir == "runs/t/20260101-000000"
    record = json.loads((tables / "notebooks" / "_pages.json").read_text())
    assert record["01_x"]["run_dir"] == "runs/t/20260101-000000"
