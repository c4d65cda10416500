"""Notebook 06's study: scoring against known answers, and a run over the tiny cohort with an
oracle detector (the manual boxes, as a detector would report them) in which both prompt
conditions must therefore score the same; per-subject resume."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from autolabel_fakes import BoxFillSegmenter, OracleDetector

from mskseg_lib.autolabel import study
from mskseg_lib.autolabel.study import StudyModel
from mskseg_lib.data import raw_io
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.tables import load_tables
from mskseg_lib.from_profile import autolabel as fp_autolabel
from mskseg_lib.from_profile import data as fp_data


def test_score_volume_known_dice():
    gt = np.zeros((10, 10, 4), np.uint8)
    gt[2:6, 2:6, 0:2] = 1  # 32 voxels, slices 0-1
    gt[6:8, 6:8, 1:3] = 2  # 8 voxels, slices 1-2
    pred = gt.copy()
    pred[2:6, 2:6, 1] = 0  # label 1 missed on slice 1: 3D Dice 2*16/(32+16)
    pred[0, 0, 3] = 2  # a false positive on an unlabelled slice
    slices, labels = study.score_volume(pred, gt, 2, (1.0, 1.0, 2.0), {1: "a", 2: "b"})
    d = labels.set_index("label")["dice"]
    assert d[1] == pytest.approx(32 / 48) and d[2] == pytest.approx(16 / 17)
    assert labels.set_index("label")["gt_volume_cm3"][1] == pytest.approx(32 * 2 / 1000)
    s = slices.set_index("slice_index")
    assert list(s.index) == [0, 1, 2]  # slice 3 has no manual label: not a slice row
    assert s.loc[0, "dice"] == 1.0 and s.loc[1, "dice"] == pytest.approx(0.5) and s.loc[2, "dice"] == 1.0
    with pytest.raises(ValueError, match="empty"):
        study.score_volume(pred, np.zeros_like(gt), 2, (1, 1, 1), {})


@pytest.mark.parametrize("profile", ["fixture", "default", "paper"])
def test_profiles_list_the_study_autolabel_datasets(profile):
    """Figure 6 / the AutoLabel methods: thigh T1ax 50, shoulder CUBE 28, spine T1sag 23 (not the
    _111 set), knee DESS 86, spine T1ax 59, in every profile."""
    from mskseg_lib.config import load_profile

    assert tuple(load_profile(profile)["autolabel"]["datasets"]) == study.STUDY_DATASETS
    assert "Spine_2D_T1sag_Clinical_Anatomical_23" in study.STUDY_DATASETS
    assert not any(d.endswith("_111") for d in study.STUDY_DATASETS)


def test_subject_dice_is_the_mean_of_slice_dice_and_3d_dice_is_kept_beside_it():
    """Three labelled slices (slice axis 2). Slice 0: label 1 (16 px) exact -> 1. Slice 1: label 1
    (16 px) missed -> 0. Slice 2: label 1 (4 px) exact -> 1 and label 2 (8 px) half found ->
    2 * 4 / 12; slice Dice (1 + 2/3) / 2 = 5/6. Subject Dice = (1 + 0 + 5/6) / 3 = 0.6111.
    3D Dice: label 1 = 2 * 20 / (36 + 20) = 0.7143, label 2 = 2/3 -> mean 0.6905: different."""
    gt = np.zeros((8, 8, 3), np.int16)
    gt[0:4, 0:4, 0] = 1
    gt[0:4, 0:4, 1] = 1
    gt[0:2, 0:2, 2] = 1
    gt[4:6, 4:8, 2] = 2
    pred = gt.copy()
    pred[:, :, 1] = 0
    pred[4:6, 6:8, 2] = 0
    slices, labels = study.score_volume(pred, gt, 2, (1.0, 1.0, 1.0), {1: "a", 2: "b"})
    keys = {"model": "m", "model_key": "m", "dataset": "d", "subject_id": "s1", "prompt": "gt_box", "postprocess": "off"}
    subj = study.subject_table(labels.assign(**keys), slices.assign(**keys)).iloc[0]
    assert subj["dice"] == pytest.approx((1 + 0 + 5 / 6) / 3)
    assert subj["n_slices"] == 3 and subj["n_labels"] == 2
    assert subj["dice_3d"] == pytest.approx((2 * 20 / 56 + 2 / 3) / 2)
    assert abs(subj["dice"] - subj["dice_3d"]) > 0.05
    summary = study.dataset_summary(pd.DataFrame([subj])).iloc[0]
    assert summary["dice_mean"] == pytest.approx(subj["dice"]) and summary["dice_3d_mean"] == pytest.approx(subj["dice_3d"])


def test_postprocess_cost_and_summary_tables():
    rows = []
    for sid, off, on in (("s1", 0.8, 0.7), ("s2", 0.6, 0.65)):
        for pp, dice in (("off", off), ("on", on)):
            rows.append({"model": "m", "dataset": "d", "subject_id": sid, "prompt": "detector", "postprocess": pp, "dice": dice})
    subjects = pd.DataFrame(rows)
    cost = study.postprocess_cost(subjects).iloc[0]
    assert cost["difference_mean"] == pytest.approx(-0.025) and cost["n_subjects"] == 2
    summ = study.dataset_summary(subjects).set_index("postprocess")
    assert summ.loc["off", "dice_mean"] == pytest.approx(0.7) and summ.loc["on", "dice_median"] == pytest.approx(0.675)


def test_select_subjects_by_dataset_split_and_cap():
    subjects = pd.DataFrame({"dataset": ["A", "A", "A", "B", "B"], "subject_id": ["a3", "a1", "a2", "b1", "b2"],
                             "split": ["test", "test", "train", "test", "val"]})
    chosen = study.select_subjects(subjects, ["A"], "test")
    assert chosen["subject_id"].tolist() == ["a1", "a3"]  # sorted, test only
    assert study.select_subjects(subjects, "all", ["test", "val"], max_per_dataset=1)["subject_id"].tolist() == ["a1", "b1"]
    assert len(study.select_subjects(subjects, "all", "all")) == 5
    with pytest.raises(study.SelectionError, match="autolabel.datasets: C not among the prepared datasets"):
        study.select_subjects(subjects, ["A", "C"], setting="autolabel.datasets")


def test_best_finetuned_splits_by_box_shift():
    exps = pd.DataFrame({"experiment_id": ["a", "b", "c"], "status": "finished", "box_shift_grid_px": [0, 20, 0],
                         "train_datasets": ["D", "D", "D"]})
    hist = pd.DataFrame({"experiment_id": ["a", "b", "c"], "val_dice": [0.5, 0.9, 0.7]})
    best = study.best_finetuned(exps, hist, ["D"]).set_index("box_shift")["experiment_id"]
    assert best[False] == "c" and best[True] == "b"


def test_study_oracle_detector_matches_ground_truth_boxes_and_resumes(tiny_cfg):
    cfg = tiny_cfg
    cfg["autolabel"]["datasets"] = ["Spine_2D_T2ax_Clinical_Anatomical_38"]
    fp_data.generate(cfg, progress=False)
    fp_data.prepare(cfg, progress=False)
    subjects, _ = load_tables(fp_data.prepared_dir(cfg))
    chosen = fp_autolabel.study_subjects(cfg, subjects)
    settings = fp_autolabel.study_settings(cfg)
    root = fp_autolabel.study_root(cfg)
    assert set(chosen["split"]) == {"test"} and len(chosen) == 1
    subject = chosen.iloc[0]
    spec = get_dataset(subject["dataset"])
    gt = np.asarray(raw_io.read_array("nifti", subject["mask_nifti"], "mask").data)
    shape = (int(subject["rows_px"]), int(subject["cols_px"]))
    multi = frozenset(lab.value for lab in spec.labels if lab.multi_instance)
    det = OracleDetector(gt, spec.slice_axis_canonical, settings.detector.image_size_px, per_instance=multi)
    # the detector sees exactly the images it was trained on: the YOLO export's PNGs
    import cv2

    from mskseg_lib.autolabel.pipeline import slicing
    from mskseg_lib.data.preprocess import resize_slice

    sl = slicing(raw_io.read_array("nifti", subject["image_nifti"], "image"), spec, settings.clip_for(spec.name))
    pngs = sorted((fp_data.prepared_dir(cfg) / "yolo" / spec.name / "images" / "test").glob(
        f"{subject['subject_id']}_*.png"))
    assert pngs
    for png in pngs:
        k = int(png.stem.rsplit("_", 1)[1])
        exported = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(resize_slice(sl.display_slice(k), exported.shape[0]), exported)
    seg = BoxFillSegmenter(128, shape)
    models = [StudyModel("box_fill", "box fill", lambda: seg, identity={"v": 1}),
              StudyModel("box_fill_2", "box fill 2", lambda: seg, identity={"v": 2})]
    result = study.run_study(root, chosen, models, {spec.name: det}, settings, progress=False)
    assert det.calls == sl.n_slices  # two models, one detection pass over the volume
    wide = result.subjects.pivot_table(index=["subject_id", "postprocess"], columns="prompt", values="dice")
    assert np.allclose(wide["gt_box"], wide["detector"])  # the same boxes give the same masks
    assert (result.subjects["dice"] > 0.3).all()  # box-filled anatomy overlaps its manual mask
    assert set(result.runs["status"]) == {"computed"}
    # every labelled slice of the volume is scored
    n_labelled = int(np.any(np.moveaxis(gt, spec.slice_axis_canonical, 0) > 0, axis=(1, 2)).sum())
    assert result.subjects["n_slices"].eq(n_labelled).all()
    again = study.run_study(root, chosen, models, {spec.name: det}, settings, progress=False)
    assert set(again.runs["status"]) == {"reused"}
    pd.testing.assert_frame_equal(again.subjects, result.subjects)
    other = study.run_study(root, chosen, models[:1], {spec.name: det}, settings, detector_ids={spec.name: "new"},
                            progress=False)
    assert set(other.runs["status"]) == {"computed"}  # another detector's weights: scored again
    samples = study.example_samples(result, chosen, settings)
    assert len(samples) == 1 and samples[0]["image"].shape == samples[0]["gt"].shape == samples[0]["pred"].shape
    assert len(samples[0]["det_boxes"]) == len(samples[0]["det_labels"]) > 0
