"""The papermill harness: selection, parameter injection, manifest and failure handling.

Two kernel executions in total: one successful run of ``01`` and one run of ``02,03`` where
``02`` raises (``03`` must then not run).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from mskseg_lib import notebook_runner
from mskseg_lib.config import params_dir
from mskseg_lib.notebook_runner import (
    NotebookFailed,
    NotebookSelectionError,
    discover_notebooks,
    run_notebooks,
)


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "default"\nparams = {}')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Tmp notebooks 01 (records what it got), 02 (raises), 03 (marker); tmp fixture profile."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))  # kernel spec goes here
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    seen = tmp_path / "seen.json"
    _notebook(
        nbdir / "01_write.ipynb",
        "import json, os, sys\n"
        "import pandas as pd\n"
        "from mskseg_lib import reporting\n"
        "reporting.save_table(pd.DataFrame({'a': [1, 2]}), params, 't01', 'A tiny table', notebook='01')\n"
        f"open({str(seen)!r}, 'w').write(json.dumps({{'profile': profile, 'seed': params['seed'],"
        " 'env': os.environ.get('MSKSEG_PROFILE'), 'cwd': os.getcwd(), 'exe': sys.executable}))\n",
    )
    _notebook(nbdir / "02_fail.ipynb", "raise ValueError('boom in 02')")
    _notebook(nbdir / "03_after.ipynb", f"open({str(tmp_path / 'ran03')!r}, 'w').write('x')")
    (nbdir / "notes.ipynb").write_text("{}")  # not NN_*: ignored

    cfg = yaml.safe_load((params_dir() / "fixture.yaml").read_text())
    for key in cfg["paths"]:
        cfg["paths"][key] = str(tmp_path / key.replace("_dir", "").replace("_root", ""))
    profile = tmp_path / "tmpfix.yaml"
    profile.write_text(yaml.safe_dump(cfg))
    return {"tmp": tmp_path, "nbdir": nbdir, "seen": seen, "profile": profile, "cfg": cfg}


def test_discover_sorted_and_only(setup: dict) -> None:
    nbdir = setup["nbdir"]
    assert [p.name for p in discover_notebooks(None, nbdir)] == [
        "01_write.ipynb", "02_fail.ipynb", "03_after.ipynb"]
    assert [p.stem for p in discover_notebooks(["03", "1"], nbdir)] == ["01_write", "03_after"]
    assert [p.stem for p in discover_notebooks("02", nbdir)] == ["02_fail"]
    with pytest.raises(NotebookSelectionError, match=r"07.*available: 01_write, 02_fail, 03_after"):
        discover_notebooks(["01", "07"], nbdir)


def test_unknown_only_fails_before_creating_a_run(setup: dict) -> None:
    with pytest.raises(NotebookSelectionError):
        run_notebooks(str(setup["profile"]), ["09"], notebooks_dir=setup["nbdir"])
    assert not (setup["tmp"] / "runs").exists()


def test_run_injects_parameters_and_writes_manifest(setup: dict) -> None:
    lines: list[str] = []
    profile = str(setup["profile"])
    run_dir = run_notebooks(profile, ["01"], notebooks_dir=setup["nbdir"],
                            progress_bar=False, log=lines.append)

    assert run_dir.parent == setup["tmp"] / "runs"
    seen = json.loads(setup["seen"].read_text())
    assert seen["profile"] == profile  # papermill injected the parameters
    assert seen["seed"] == setup["cfg"]["seed"]
    assert seen["env"] == profile  # MSKSEG_PROFILE for the kernel
    assert Path(seen["cwd"]) == setup["nbdir"]
    assert Path(seen["exe"]).parent == Path(sys.executable).parent  # the project's interpreter
    spec = json.loads((setup["tmp"] / "jupyter/kernels/python3/kernel.json").read_text())
    assert spec["argv"][0] == sys.executable

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["profile"] == "fixture" and manifest["seed"] == setup["cfg"]["seed"]
    assert [n["notebook"] for n in manifest["notebooks"]] == ["01_write"]
    assert manifest["notebooks"][0]["status"] == "ok"
    assert manifest["timings"]["01_write"] > 0
    assert manifest["versions"]["papermill"] != "not installed"
    assert {"created_utc", "hostname", "git", "config"} <= set(manifest)
    assert (run_dir / "01_write.ipynb").exists()
    assert any(line.startswith("[1/1] 01_write ... done in ") for line in lines)

    index = (setup["tmp"] / "tables" / "index.html").read_text()
    assert "A tiny table" in index and "t01.csv" in index


def test_failure_stops_run_and_marks_manifest(setup: dict) -> None:
    with pytest.raises(NotebookFailed) as err:
        run_notebooks(str(setup["profile"]), "02,03", notebooks_dir=setup["nbdir"],
                      progress_bar=False, log=lambda _: None)
    exc = err.value
    assert exc.notebook_name == "02_fail"
    assert "02_fail" in str(exc) and "boom in 02" in str(exc)
    assert str(exc.output_path) in str(exc) and exc.output_path.exists()

    manifest = json.loads((exc.output_path.parent / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "02_fail" in manifest["error"]
    states = {n["notebook"]: n["status"] for n in manifest["notebooks"]}
    assert states == {"02_fail": "failed", "03_after": "not run"}
    assert "02_fail" in manifest["timings"]
    assert not (setup["tmp"] / "ran03").exists()


def test_notebook_failed_message() -> None:
    exc = NotebookFailed("03_x", Path("/r/03_x.ipynb"), RuntimeError("\x1b[31mbad\x1b[0m\nthing"))
    assert str(exc) == "notebook 03_x failed: RuntimeError: bad thing; open the executed copy: /r/03_x.ipynb"
    assert notebook_runner.default_notebooks_dir().name == "notebooks"
