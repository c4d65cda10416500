"""Stages without a command of their own, for ``test_kill_resume.py``: ``python stage_driver.py
video3d PROFILE`` runs notebook 07's study (``video3d.study.run_study``) on the profile's first
study volume with LiteMedSAM, as the notebook does."""
from __future__ import annotations

import sys

from mskseg_lib.data.tables import load_tables
from mskseg_lib.from_profile import load_profile
from mskseg_lib.from_profile import video3d as fp_video3d
from mskseg_lib.from_profile.data import prepared_dir
from mskseg_lib.video3d import study


def video3d(profile: str) -> None:
    cfg = load_profile(profile, check_lock=False)
    subjects, _ = load_tables(prepared_dir(cfg))
    inputs = fp_video3d.study_inputs(cfg)
    study.run_study(inputs["root"], fp_video3d.volumes(cfg, subjects).head(1), ["lite_medsam"], inputs["settings"],
                    models=inputs["models"], seed=inputs["seed"], cache_dir=inputs["cache_dir"], progress=False)


if __name__ == "__main__":
    {"video3d": video3d}[sys.argv[1]](sys.argv[2])
