"""A stage killed with SIGKILL at seeded points and restarted until it completes writes the same
tables and predictions as an uninterrupted run, and never shows a partial file under its final
name (``kill_resume.py``). Marked ``kill_resume``: ``./run_tests.sh`` (CI) runs it; a quick
developer loop leaves it out with ``-m "not kill_resume"``.

How each stage resumes (what a kill costs):
* cohort + prepare: per subject; a finished subject's files are kept (written under a temporary
  name, then renamed), a killed subject is redone from its start;
* zero-shot: per subject; a killed subject is redone; embeddings already stored are read back;
* finetune: per epoch; ``checkpoint_latest.pt`` holds model, optimizer, scheduler and early-stopping
  state, so a killed epoch is redone from the last finished one and the run ends identical;
  scoring is per subject like zero-shot;
* train-detector: per detector; ultralytics' ``best.pt`` counts only once the run record is
  written at the end, so a killed training is redone from its start (seeded, deterministic);
* autolabel (batch): per volume, each output written under a temporary name then renamed;
* video3d: per (model, volume), with a fingerprint of what shapes it;
* ``mskseg run``: per notebook (a new run folder each start); a notebook's stages resume as above.
"""
from __future__ import annotations

import copy
import os
import sys
import threading
from pathlib import Path

import pytest
import yaml
from kill_resume import (
    kill_and_resume,
    nifti_differences,
    partial_files,
    run_stage,
    seeded_kill_points,
    stage_command,
    table_differences,
)
from subprocess_env import pythonpath

from mskseg_lib.config import load_profile

ROOT = Path(__file__).resolve().parents[1]
SPINE = "Spine_2D_T2ax_Clinical_Anatomical_38"
KNEE = "Knee_3D_CUBE_Research_Anatomical_300"
KILLS_PER_STAGE = 2
SEED = 20261201


def tiny_profile(base: Path) -> Path:
    """The fixture profile cut to two datasets x 3 thin subjects, LiteMedSAM with exact boxes, a two-run
    grid (frozen and trained encoder) and two video3d schemes, under ``base``."""
    cfg = copy.deepcopy(load_profile("fixture"))
    cfg["paths"] = {k: str(base / k) for k in cfg["paths"]}
    cfg["cohort"]["datasets"] = [SPINE, KNEE]
    cfg["cohort"]["subjects_per_dataset"] = 3
    cfg["cohort"]["slice_scale"] = 0.1  # thinner volumes (the knee: 16 frames for video3d), every stage shorter
    cfg["zero_shot"]["models"] = ["lite_medsam"]
    cfg["zero_shot"]["conditions"] = [{"name": "gt_box", "shift_grid_px": 0}]
    cfg["video3d"]["schemes"] = ["boxes_per_slice", "box_carry"]
    cfg["finetune"]["experiments"] = [{"group": "strategy", "train_on": [SPINE], "strategy": ["partial", "full"]}]
    path = base / "tiny.yaml"
    base.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": pythonpath(ROOT, ROOT / "tests"), "OMP_NUM_THREADS": "1",
            "MSKSEG_PROFILE": "fixture"}


def _autolabel_input(base: Path) -> Path:
    """A folder with the spine cohort's image volumes (links), what a user points AutoLabel at."""
    folder = base / "autolabel_in"
    folder.mkdir(exist_ok=True)
    import pandas as pd

    subjects = pd.read_parquet(base / "data_root" / "prepared" / "subjects.parquet")
    for row in subjects[subjects["dataset"] == SPINE].head(2).itertuples():
        link = folder / f"{row.subject_id}.nii.gz"
        if not link.exists():
            link.symlink_to(Path(row.image_nifti).resolve())
    return folder


def stages(base: Path, profile: Path) -> list[tuple[str, list[str], str]]:
    """(name, command, folder compared) per stage, in pipeline order."""
    return [
        ("prepare", stage_command("prepare", profile), "data_root"),
        ("zero-shot", stage_command("zero-shot", profile), "runs_dir"),
        ("finetune", stage_command("finetune", profile), "runs_dir"),
        ("train-detector", stage_command("train-detector", profile, "--dataset", SPINE), "runs_dir"),
        ("autolabel", stage_command("autolabel", profile, "--dataset", SPINE, "--model", "lite_medsam", "--input",
                                    str(base / "autolabel_in"), "--output", str(base / "runs_dir" / "autolabel_cli")),
         "runs_dir"),
        ("video3d", [sys.executable, str(ROOT / "tests" / "stage_driver.py"), "video3d", str(profile)], "runs_dir"),
        ("run", stage_command("run", profile, "--only", "01"), "tables_dir"),
    ]


class Reference:
    """Every stage once, uninterrupted, in a thread beside the killed run.

    Each stage runs with one OpenMP thread, so the uninterrupted run and the killed one share the
    machine's two cores and the test takes about as long as the killed run alone. Stage ``i`` of
    the reference finishes before the killed run needs its wall time (the kill points); the killed
    run of a stage takes longer than its reference (two partial starts, then the rest), so the
    reference stays ahead."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.seconds: dict[str, float] = {}
        self.error: BaseException | None = None
        self._stages = stages(base, tiny_profile(base))
        self._done = {name: threading.Event() for name, _, _ in self._stages}
        self._thread = threading.Thread(target=self._run, name="uninterrupted-run", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for name, cmd, _ in self._stages:
                if name == "autolabel":
                    _autolabel_input(self.base)
                self.seconds[name] = run_stage(cmd, _env(), ROOT, 900)
                self._done[name].set()
        except BaseException as err:  # noqa: BLE001 - reported by seconds_of / finished
            self.error = err
        finally:
            for done in self._done.values():
                done.set()

    def seconds_of(self, name: str) -> float:
        """Wall seconds of the uninterrupted stage ``name`` (waits for it)."""
        if not self._done[name].wait(1800):
            raise AssertionError(f"the uninterrupted {name} stage did not finish in 30 min")
        if name not in self.seconds:
            raise AssertionError(f"the uninterrupted run failed before or in {name}: {self.error}")
        return self.seconds[name]

    def finished(self) -> Path:
        """The reference's folder once every stage has run (raises the reference's failure)."""
        self._thread.join(1800)
        if self.error is not None or len(self.seconds) != len(self._stages):
            raise AssertionError(f"the uninterrupted run failed: {self.error}")
        return self.base


@pytest.mark.kill_resume
@pytest.mark.slow
def test_each_stage_killed_at_seeded_points_resumes_to_the_uninterrupted_result(tmp_path_factory, tmp_path):
    reference = Reference(tmp_path_factory.mktemp("reference"))
    profile = tiny_profile(tmp_path)
    reports = {}
    for i, (name, cmd, _) in enumerate(stages(tmp_path, profile)):
        if name == "autolabel":
            _autolabel_input(tmp_path)
        watched = [tmp_path / "data_root", tmp_path / "runs_dir", tmp_path / "tables_dir"]
        kills = seeded_kill_points(SEED + i, reference.seconds_of(name), KILLS_PER_STAGE)
        report = kill_and_resume(cmd, _env(), ROOT, watched, kills, timeout_s=900)
        reports[name] = report
        assert report.partial == [], (name, report.partial)
        assert report.killed >= 1, (name, report)  # at least one kill landed inside the stage
    ref_base = reference.finished()
    print({name: {**vars(r), "reference_s": round(reference.seconds[name], 1)} for name, r in reports.items()})
    for folder in ("data_root", "runs_dir", "tables_dir"):  # every stage's outputs, once all have run
        for pattern in ("**/*.csv", "**/*.parquet"):
            diffs = table_differences(ref_base / folder, tmp_path / folder, pattern)
            assert diffs == [], (folder, diffs[:10])
        assert nifti_differences(ref_base / folder, tmp_path / folder) == [], folder


def test_the_partial_file_check_finds_a_truncated_file(tmp_path):
    """The check above can fail: a truncated table or array under its final name is reported,
    the same bytes under a temporary name are not."""
    import numpy as np
    import pandas as pd

    good = tmp_path / "t.csv"
    pd.DataFrame({"a": range(100), "b": ["x" * 20] * 100}).to_csv(good, index=False)
    arr = tmp_path / "a.npy"
    np.save(arr, np.arange(1000))
    assert partial_files([tmp_path]) == []
    arr.write_bytes(arr.read_bytes()[:200])
    (tmp_path / "p.parquet").write_bytes(b"PAR1 truncated")
    found = partial_files([tmp_path])
    assert any("a.npy" in f for f in found) and any("p.parquet" in f for f in found), found
    (tmp_path / "a.npy").rename(tmp_path / ".a.tmp-123.npy")
    (tmp_path / "p.parquet").unlink()
    assert partial_files([tmp_path]) == []
