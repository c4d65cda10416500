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
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(3, 2)); ax.plot([0, 1], [0, 1])\n"
        "reporting.save_figure(fig, params, 'f01', 'A tiny line', notebook='01')\n"
        "plt.show()\n"
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


def test_first_run_takes_its_eta_from_the_profiles_expected_minutes(setup: dict) -> None:
    """No earlier run here: the profile's expected_minutes give the ETA, and the first line says so."""
    cfg = {**setup["cfg"], "expected_minutes": {"01": 0.5}}
    profile = setup["tmp"] / "timed.yaml"
    profile.write_text(yaml.safe_dump(cfg))
    lines: list[str] = []
    run_notebooks(str(profile), ["01"], notebooks_dir=setup["nbdir"], progress_bar=False, log=lines.append)
    assert "expected 30s from the profile's expected_minutes" in lines[0]
    assert lines[1].startswith("[1/1] 01_write: 0s in (recorded 30s); run ") and "ETA 30s" in lines[1]


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
    assert manifest["encoders"] == {"notebooks": {}, "run": {}}  # this notebook encodes nothing
    assert {"created_utc", "hostname", "git", "config"} <= set(manifest)
    assert (run_dir / "01_write.ipynb").exists()
    assert any(line.startswith("[1/1] 01_write ... done in ") for line in lines)
    assert any(line.startswith("[1/1] 01_write: 0s in; run ") and "ETA unknown" in line for line in lines)
    # a second run knows how long 01 took and says so
    again: list[str] = []
    run_notebooks(profile, ["01"], notebooks_dir=setup["nbdir"], progress_bar=False, log=again.append)
    assert "expected" in again[0] and "from earlier runs" in again[0]
    assert "(recorded " in again[1] and "ETA " in again[1]

    index = (setup["tmp"] / "tables" / "index.html").read_text()
    assert "A tiny table" in index and "t01.csv" in index
    # the companion: the executed notebook as HTML with its figure inline, linked from the front page
    page = setup["tmp"] / "tables" / "notebooks" / "01_write.html"
    assert page.exists() and "data:image/png;base64," in page.read_text()
    assert "cdnjs" not in page.read_text()  # opens offline: nothing fetched from a CDN
    assert "href='notebooks/01_write.html'" in index and "A tiny line" in index
    assert "src='../figures/f01.png'" in index and "Synthetic data." in index
    assert "By data source: synthetic: 1 tables, 1 figures" in index and "banner synthetic" in index


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
    # a failed notebook is rendered too (its traceback is the story) and marked on the front page
    assert (setup["tmp"] / "tables" / "notebooks" / "02_fail.html").exists()
    assert "boom in 02" in (setup["tmp"] / "tables" / "notebooks" / "02_fail.html").read_text()
    assert "class='failed'>failed</span>" in (setup["tmp"] / "tables" / "index.html").read_text()


def test_notebook_failed_message() -> None:
    exc = NotebookFailed("03_x", Path("/r/03_x.ipynb"), RuntimeError("\x1b[31mbad\x1b[0m\nthing"))
    assert str(exc) == "notebook 03_x failed: RuntimeError: bad thing; open the executed copy: /r/03_x.ipynb"
    assert notebook_runner.default_notebooks_dir().name == "notebooks"


def test_companion_opens_in_a_headless_browser_with_every_figure(setup: dict) -> None:
    """The front page and the executed notebook page load in Chromium with their figures drawn;
    a figure deleted afterwards is reported as a broken image and a missing file."""
    from mskseg_lib.browser_check import check_pages, find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium here (Debian package chromium; .ci/run installs it where it can)")
    run_notebooks(str(setup["profile"]), ["01"], notebooks_dir=setup["nbdir"], progress_bar=False,
                  log=lambda _: None)
    root = setup["tmp"]
    pages = ["tables/index.html", "tables/notebooks/01_write.html"]
    reports = check_pages(root, pages)
    assert [r.page for r in reports] == pages
    assert all(r.ok for r in reports), [r.summary() for r in reports]
    assert reports[0].n_images == 1 and reports[1].n_images >= 1  # the saved figure; the inline plot
    assert reports[0].title == "mskseg companion: fixture"
    from mskseg_lib.cli import main

    assert main(["check-companion", "--profile", str(setup["profile"])]) == 0

    (root / "figures" / "f01.png").unlink()
    assert main(["check-companion", "--profile", str(setup["profile"])]) == 1
    broken = check_pages(root, pages[:1])[0]
    assert not broken.ok
    assert broken.missing_files == ["../figures/f01.png"] and len(broken.broken_images) == 1
    assert any("f01.png" in f for f in broken.failed_requests)
