"""Counting a profile's compute and pricing it (``mskseg bench estimate``): hand-counted answers."""
from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import yaml

from mskseg_lib.cli import main
from mskseg_lib.config import params_dir
from mskseg_lib.from_profile import load_profile
from mskseg_lib.from_profile.workload import disk_gib, nominal_inventory, profile_workload
from mskseg_lib.workload import COST_COLUMNS, estimate, h100_costs, priced, work_frame

KNEE = "Knee_3D_CUBE_Research_Anatomical_300"


def test_estimate_sums_count_times_cost_and_spreads_parallel_work():
    work = work_frame([
        {"notebook": "02", "model": "m", "kind": "encode", "count": 60, "parallel": False},
        {"notebook": "02", "model": "m", "kind": "encode", "count": 40, "parallel": False},  # summed with the above
        {"notebook": "03", "model": "m (finetuned)", "kind": "full_step", "count": 10, "parallel": True},
        {"notebook": "03", "model": "other", "kind": "encode", "count": 5, "parallel": True},
        {"notebook": "06", "model": "yolov8n", "kind": "detector_image", "count": 1000, "parallel": False},
    ])
    costs = pd.DataFrame([("m", "encode", 0.5, "a"), ("m", "full_step", 2.0, "b"), ("*", "detector_image", 0.01, "c")],
                         columns=COST_COLUMNS)
    one = estimate(work, costs, 1).set_index("notebook")
    four = estimate(work, costs, 4).set_index("notebook")
    assert one.loc["02", "seconds"] == pytest.approx(50.0)
    assert one.loc["03", "seconds"] == pytest.approx(20.0)  # the finetuned model priced as its initial model
    assert four.loc["03", "seconds"] == pytest.approx(5.0)
    assert four.loc["02", "seconds"] == pytest.approx(50.0)  # not parallel
    assert one.loc["06", "seconds"] == pytest.approx(10.0)  # the "*" cost
    assert one.loc["03", "unpriced"] == "other/encode"
    assert priced(work, costs).set_index(["notebook", "kind", "model"]).loc[("06", "detector_image", "yolov8n"),
                                                                            "source"] == "c"
    with pytest.raises(ValueError, match="unknown work kinds"):
        work_frame([{"notebook": "02", "model": "m", "kind": "flops", "count": 1, "parallel": False}])


def test_h100_costs_keep_the_measured_throughputs_and_say_where_each_cost_comes_from():
    c = h100_costs().set_index(["model", "kind"])
    assert 1 / c.loc[("lite_medsam", "encode"), "seconds"] == pytest.approx(322)
    assert 1 / c.loc[("sam_vit_b", "encode"), "seconds"] == pytest.approx(50)
    assert c.loc[("sam_vit_b", "full_step"), "seconds"] == pytest.approx(6 / 50)
    assert c["source"].str.len().gt(5).all()
    assert c.loc[("*", "box"), "source"].endswith("not measured")


@pytest.fixture
def knee_cfg() -> dict:
    """The fixture profile cut to one dataset of 10 subjects, 8 slices each (nominal inventory)."""
    cfg = copy.deepcopy(load_profile("fixture"))
    cfg["cohort"].update(datasets=[KNEE], subjects_per_dataset=10, slice_scale=8 / 160)  # protocol: 160 slices
    cfg["sources"] = []
    cfg["prepare"]["split_fractions"] = [0.6, 0.2, 0.2]
    cfg["zero_shot"].update(models=["lite_medsam"], split=["test"], datasets="all", max_subjects_per_dataset=0,
                            max_slices_per_subject=3,
                            conditions=[{"name": "gt_box", "shift_grid_px": 0}, {"name": "s", "shift_grid_px": 20}])
    f = cfg["finetune"]
    f["repeats"] = 1
    f["defaults"].update(model="lite_medsam", train_subjects="all", evaluate_on=[])
    f["experiments"] = [{"group": "strategy", "train_on": [KNEE], "strategy": ["partial", "full"]}]
    f["training"].update(batch_size=2, max_epochs=4, max_samples_per_epoch=0, max_slices_per_subject=5,
                         val_max_samples=3, overrides={})
    f["evaluation"].update(split="test", max_subjects_per_dataset=0, max_slices_per_subject=3,
                           conditions=[{"name": "gt_box", "shift_grid_px": 0}])
    cfg["mixed_effects"]["physics"].update(enabled=True, model="lite_medsam", split="all", max_slices_per_subject=3,
                                          max_subjects_per_dataset=0)
    cfg["biomarkers"].update(datasets="all", split="test", zero_shot_model="lite_medsam", max_subjects_per_dataset=0)
    cfg["autolabel"].update(datasets=[KNEE], split="test", models=["lite_medsam"], finetuned=False,
                            max_subjects_per_dataset=0)
    cfg["autolabel"]["detector"]["epochs"] = 7
    cfg["video3d"].update(datasets=[KNEE], split="test", models=["lite_medsam", "sam2_hiera_tiny"], real_spine=False,
                          max_subjects_per_dataset=0,
                          schemes=["points_per_slice", "boxes_per_slice", "point_video", "points_neg_video"])
    return cfg


def test_counts_follow_the_profile_on_a_hand_counted_inventory(knee_cfg):
    subjects, slices = nominal_inventory(knee_cfg)
    assert len(subjects) == 10 and len(slices) == 80
    assert subjects["split"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    stored: dict[str, int] = {}
    w = profile_workload(knee_cfg, subjects, slices, stored=stored)
    n = w.groupby(["notebook", "model", "kind"])["count"].sum()
    labels = 6  # every label of the card on every nominal slice
    # 02: 2 test subjects x 3 spread slices, 2 conditions
    assert n[("02", "lite_medsam", "encode")] == 6
    assert n[("02", "lite_medsam", "box")] == 6 * labels * 2
    # 03 partial: 6 train subjects x 5 slices = 30 samples -> 15 steps x 4 epochs; stored encodes:
    # 30 train + 3 val (cap) + the 6 test slices already stored by 02 -> 33 new
    steps = 4 * math.ceil(30 / 2)
    assert n[("03", "lite_medsam", "frozen_step")] == steps
    assert n[("03", "lite_medsam", "full_step")] == steps
    assert n[("03", "lite_medsam", "encode")] == 33 + (4 * 3 + 6)  # full: val each epoch + its test scoring
    # 04: every subject x 3 spread slices (0, 4, 7 of 8) = 30; train subjects' 5 (0, 2, 4, 5, 7) and the
    # test subjects' are stored, of the val subjects only the first 3 samples (first subject's 0, 2, 4):
    # new are the first val subject's slice 7 and the second's three
    assert n[("04", "lite_medsam", "encode")] == 4
    # 05: every slice of the 2 test subjects (16); 6 of them stored by 02
    assert n[("05", "lite_medsam", "encode")] == 16 - 6
    assert n[("05", "lite_medsam (finetuned)", "encode")] == 16
    # 06: 6 train subjects x 8 slices x 7 epochs; its 16 test slices are in the store (05): none encoded
    assert n[("06", "yolov8n", "detector_image")] == 6 * 8 * 7
    assert ("06", "lite_medsam", "encode") not in n and n[("06", "lite_medsam", "box")] == 16 * labels
    # 07: 16 frames, in the store for LiteMedSAM; SAM2 (video predictor, no store) encodes each
    # frame for 2 video schemes + once for the per-slice schemes
    assert ("07", "lite_medsam", "encode") not in n
    assert n[("07", "sam2_hiera_tiny", "encode")] == 16 * 3
    assert n[("07", "lite_medsam", "box")] == 16 * 3 * 2  # the bones only (video3d.tissues), 2 image schemes
    # the store holds each (model, slice) once: 02 + 03 + 04 + 05 new encodes
    assert stored["lite_medsam"] == sum(n[(nb, "lite_medsam", "encode")] for nb in ("02", "05")) + 33 + \
        n[("04", "lite_medsam", "encode")]
    disk = disk_gib(knee_cfg, slices, stored)
    assert disk["prepared_slices"] == pytest.approx(round(80 * 2 * 256 * 256 / 2**30, 1))


def test_models_without_weights_can_be_left_out(knee_cfg):
    subjects, slices = nominal_inventory(knee_cfg)
    w = profile_workload(knee_cfg, subjects, slices, model_keys=["lite_medsam"])
    assert "sam2_hiera_tiny" not in set(w["model"])
    assert (w["model"] == "lite_medsam").any()


def test_bench_estimate_prints_hours_per_notebook(capsys, tmp_path):
    cfg = yaml.safe_load((params_dir() / "paper.yaml").read_text())
    cfg["paths"] = {k: str(tmp_path / k) for k in cfg["paths"]}  # nothing written into the project
    profile = tmp_path / "paper_here.yaml"
    profile.write_text(yaml.safe_dump(cfg))
    assert main(["bench", "estimate", "--profile", str(profile), "--gpus", "1", "4"]) == 0
    out = capsys.readouterr().out
    assert "hours_1gpu" in out and "hours_4gpu" in out and "nominal data" in out
    assert (tmp_path / "runs_dir" / "bench" / "estimate.json").is_file()
    bad = tmp_path / "costs.csv"
    bad.write_text("model,seconds\nx,1\n")
    assert main(["bench", "estimate", "--profile", str(profile), "--costs", str(bad)]) == 2
    assert "lacks columns" in capsys.readouterr().err
