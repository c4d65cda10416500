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
* ``mskseg run``: per notebook (a new run folder each start); a notebook's stages resume as above.
"""
from __future__ import annotations

import copy
import os
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
KILLS_PER_STAGE = 3
SEED = 20261201


def tiny_profile(base: Path) -> Path:
    """The fixture profile cut to two datasets x 3 subjects and a two-run grid, under ``base``."""
    cfg = copy.deepcopy(load_profile("fixture"))
    cfg["paths"] = {k: str(base / k) for k in cfg["paths"]}
    cfg["cohort"]["datasets"] = [SPINE, KNEE]
    cfg["cohort"]["subjects_per_dataset"] = 3
    cfg["zero_shot"]["models"] = ["lite_medsam"]
    cfg["finetune"]["experiments"] = [{"group": "strategy", "train_on": [SPINE], "strategy": ["partial", "full"]}]
    path = base / "tiny.yaml"
    base.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": pythonpath(ROOT), "OMP_NUM_THREADS": "1", "MSKSEG_PROFILE": "fixture"}


STAGES = (("prepare", "data_root"), ("zero-shot", "runs_dir"), ("finetune", "runs_dir"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Every stage once, uninterrupted; the wall seconds of each."""
    base = tmp_path_factory.mktemp("reference")
    profile = tiny_profile(base)
    seconds = {stage: run_stage(stage_command(stage, profile), _env(), ROOT, 900) for stage, _ in STAGES}
    return base, seconds


@pytest.mark.kill_resume
@pytest.mark.slow
def test_each_stage_killed_at_seeded_points_resumes_to_the_uninterrupted_result(reference, tmp_path):
    ref_base, seconds = reference
    profile = tiny_profile(tmp_path)
    reports = {}
    for i, (stage, folder_key) in enumerate(STAGES):
        watched = [tmp_path / "data_root", tmp_path / "runs_dir"]
        kills = seeded_kill_points(SEED + i, seconds[stage], KILLS_PER_STAGE)
        report = kill_and_resume(stage_command(stage, profile), _env(), ROOT, watched, kills, timeout_s=900)
        reports[stage] = report
        assert report.partial == [], (stage, report.partial)
        assert report.killed >= 1, (stage, report)  # at least one kill landed inside the stage
        for pattern in ("**/*.csv", "**/*.parquet"):
            diffs = table_differences(ref_base / folder_key, tmp_path / folder_key, pattern)
            assert diffs == [], (stage, diffs[:10])
    assert nifti_differences(ref_base / "data_root", tmp_path / "data_root") == []
    assert nifti_differences(ref_base / "runs_dir", tmp_path / "runs_dir") == []
    print({s: vars(r) for s, r in reports.items()})


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
