"""Notebook 07's study on the tiny cohort with stand-in models whose answers are known, resume,
the write-back to the source grid, and the real spine fixture (skipped where absent)."""
from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from autolabel_fakes import BoxFillSegmenter

from mskseg_lib.data.boxes import mask_box
from mskseg_lib.data.tables import load_tables
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile import video3d as fp_video3d
from mskseg_lib.video3d import study
from mskseg_lib.video3d.predictor import build_tiny_video_predictor, image_segmenter, parameter_count
from mskseg_lib.video3d.scoring import structure_scores

KNEE = "Knee_3D_CUBE_Research_Anatomical_300"


@pytest.fixture
def knee_cfg(tiny_cfg):
    cfg = tiny_cfg
    cfg["cohort"]["datasets"] = [KNEE]
    cfg["video3d"].update(datasets=[KNEE], real_spine=False, max_subjects_per_dataset=1)
    fp_data.generate(cfg, progress=False)
    fp_data.prepare(cfg, progress=False)
    return cfg


def _box_fill_loader(slice_shape_px):
    seg = BoxFillSegmenter(128, slice_shape_px)

    def load(key):
        return study.VideoModel(key, "box fill", seg, None, 0, {"fake": 1})
    return load, seg


def _run(cfg, vols, keys, loader):
    """The study as notebook 07 runs it: folder and settings from the profile."""
    return study.run_study(fp_video3d.study_root(cfg), vols, keys, fp_video3d.video3d_settings(cfg), loader=loader,
                           progress=False)


def _tiny_sam2_loader(key):
    predictor = build_tiny_video_predictor()
    return study.VideoModel(key, "tiny SAM2", image_segmenter(predictor, "tiny SAM2", False), predictor,
                            parameter_count(predictor), {"random": True})


def test_boxes_per_slice_with_a_box_filling_model_gives_the_boxes_dice_and_resumes(knee_cfg, tmp_path):
    """Called as a researcher would, without the profile: prepared subjects, a folder, settings."""
    subjects, _ = load_tables(fp_data.prepared_dir(knee_cfg))
    vols = study.study_volumes(subjects, [KNEE], "test", max_per_dataset=1)
    assert vols["dataset"].tolist() == [KNEE] and vols["source"].tolist() == ["cohort"]
    site = study.study_volumes(subjects.assign(source="manifest"), [KNEE], "test", max_per_dataset=1)
    assert study.volume_sources(site) == {KNEE: "real"}  # a site's volumes are real data, never "synthetic"
    settings = study.Video3dSettings(schemes=("boxes_per_slice", "point_video", "box_carry"))
    vol = study.load_volume(vols.iloc[0], settings)
    assert vol.values == [1, 3, 5]  # femur, tibia, patella: the bones of the knee set
    load, seg = _box_fill_loader(vol.image.shape[1:])
    root = tmp_path / "video3d"
    result = study.run_study(root, vols, ["box_fill"], settings, loader=load, seed=5, progress=False)
    # known answer: each structure's mask replaced by its box on every slice where it is present
    boxes = np.zeros_like(vol.gt)
    for k in range(len(vol.gt)):
        here = [v for v in vol.values if (vol.gt[k] == v).any()]
        area = {v: (lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1))(mask_box(vol.gt[k] == v)) for v in here}
        for v in sorted(here, key=lambda v: -area[v]):  # larger boxes first: the smaller structure wins overlaps
            x0, y0, x1, y1 = mask_box(vol.gt[k] == v)
            boxes[k, y0:y1 + 1, x0:x1 + 1] = v
    expected = structure_scores(boxes, vol.gt, vol.values, vol.names, vol.spacing_mm).set_index("structure")["dice"]
    got = result.structures[result.structures["scheme"] == "boxes_per_slice"].set_index("structure")["dice"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False, atol=1e-9)
    runs = result.runs.set_index("scheme")
    assert runs.loc["point_video", "status"] == study.NOT_APPLICABLE  # no memory: listed, not run
    assert runs.loc["boxes_per_slice", "status"] == "scored"
    # each slice encoded once for both image schemes; carrying a filled box never shrinks: it
    # runs to both ends of the volume (the drift the consecutive-Dice rule cannot see here)
    assert seg.encoded == len(vol.gt)
    # the predicted volume is on the source grid with the source affine
    path = runs.loc["boxes_per_slice", "volume_nifti"]
    img, src = nib.load(path), nib.load(vols.iloc[0]["image_nifti"])
    assert img.shape == src.shape and np.allclose(img.affine, src.affine)
    record = json.loads((root / "scores" / "box_fill" / KNEE / f"{vols.iloc[0]['subject_id']}.json").read_text())
    assert record["seed"] == 5 and record["config"]["schemes"] == list(settings.schemes)
    again = study.run_study(root, vols, ["box_fill"], settings, loader=load, progress=False)
    assert set(again.runs["status_run"]) == {"reused"} and seg.encoded == len(vol.gt)
    pd.testing.assert_frame_equal(again.structures, result.structures)
    settings = dataclasses.replace(settings, save_volumes=False)  # a setting that changes the outputs recomputes
    third = study.run_study(root, vols, ["box_fill"], settings, loader=load, progress=False)
    assert set(third.runs["status_run"]) == {"computed"} and seg.encoded == 2 * len(vol.gt)
    table = study.median_table(result.structures)
    assert {"femur", "tibia", "patella", "combined", "n_params", "seconds_per_volume"} <= set(table.columns)


def test_write_back_of_the_manual_mask_is_the_source_file(knee_cfg, tmp_path):
    subjects, _ = load_tables(fp_data.prepared_dir(knee_cfg))
    row = fp_video3d.volumes(knee_cfg, subjects).iloc[0]
    vol = study.load_volume(row, fp_video3d.video3d_settings(knee_cfg))
    out = study.write_prediction(tmp_path / "gt.nii.gz", vol.gt, vol)
    src = nib.load(row["mask_nifti"])
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), np.asarray(src.dataobj))
    assert np.allclose(nib.load(out).affine, src.affine)
    names = vol.spec.label_names()  # the viewer label tables beside the prediction
    assert names and all(" " not in n for n in names.values())
    ctbl = (tmp_path / "gt.ctbl").read_text()
    assert all(f"\n{v} {n} " in ctbl for v, n in names.items())
    assert all(f'"{n}"' in (tmp_path / "gt.itksnap.txt").read_text() for n in names.values())


def test_sam2_model_runs_every_scheme(knee_cfg):
    cfg = knee_cfg
    subjects, _ = load_tables(fp_data.prepared_dir(cfg))
    vols = fp_video3d.volumes(cfg, subjects)
    result = _run(cfg, vols, ["tiny_sam2"], _tiny_sam2_loader)
    assert set(result.runs["status"]) == {"scored"}
    assert set(result.runs["scheme"]) == set(cfg["video3d"]["schemes"])
    combined = result.structures[result.structures["structure"] == "combined"]
    assert len(combined) == len(cfg["video3d"]["schemes"]) and combined["dice"].between(0, 1).all()
    assert (result.structures["n_params"] > 0).all()


def test_bad_mask_is_reported_with_its_file(knee_cfg, tmp_path):
    subjects, _ = load_tables(fp_data.prepared_dir(knee_cfg))
    vols = fp_video3d.volumes(knee_cfg, subjects)
    bad = tmp_path / "bad_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), str(bad))
    vols.loc[0, "mask_nifti"] = str(bad)
    load, _ = _box_fill_loader(64)
    result = _run(knee_cfg, vols, ["box_fill"], load)
    assert result.structures.empty
    assert "bad_mask.nii.gz" in result.failed.iloc[0]["error"]
    nan_image = tmp_path / "nan_image.nii.gz"
    src = nib.load(vols.loc[0, "image_nifti"])
    data = np.asarray(src.dataobj, np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, src.affine), str(nan_image))
    vols = fp_video3d.volumes(knee_cfg, subjects)
    vols.loc[0, "image_nifti"] = str(nan_image)
    result = _run(knee_cfg, vols, ["box_fill"], load)
    assert "nan_image.nii.gz" in result.failed.iloc[0]["error"] and "NaN" in result.failed.iloc[0]["error"]


def test_real_spine_volumes_load_with_their_vertebral_bodies(real_spine, tiny_cfg):
    cfg = tiny_cfg
    cfg["video3d"].update(real_spine=True, max_real_subjects=2)
    subjects = pd.DataFrame(columns=["dataset", "subject_id", "split", "image_nifti", "mask_nifti"])
    cfg["video3d"]["datasets"] = []
    vols = fp_video3d.volumes(cfg, subjects)
    assert vols["subject_id"].tolist() == ["vb3_01", "vb3_02"] and set(vols["source"]) == {"real"}
    vol = study.load_volume(vols.iloc[0], fp_video3d.video3d_settings(cfg))
    assert vol.values == [1, 2, 3, 4, 5] and vol.image.shape[0] == 77  # sagittal slices along axis 2
    assert vol.spacing_mm == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(np.sort(np.unique(vol.gt)), [0, 1, 2, 3, 4, 5])


def test_bench_video3d_reports_seconds_per_frame_for_both_routes(knee_cfg):
    from mskseg_lib.video3d.benchmark import bench_video3d

    result = bench_video3d(**fp_video3d.bench_inputs(knee_cfg), model="tiny", repeats=1)
    assert result["n_frames"] > 0 and result["n_objects"] == 3
    for key in ("memory_s_per_frame", "jpeg_s_per_frame", "jpeg_write_s_per_frame"):
        assert result[key] > 0
    assert result["jpeg_over_memory"] == pytest.approx(
        (result["times_s"]["jpeg_write_s"][0] + result["times_s"]["jpeg_run_s"][0]) / result["times_s"]["memory_s"][0])
    assert set(result["mask_dice_memory_vs_jpeg"]) == {1, 3, 5}
    assert "torch" in result["versions"]


def test_anchor_table_compares_the_femur_tibia_union():
    """The regenerated anchor value is the median over volumes of the combined (femur + tibia
    union) 3D Dice, not the median of the per-structure Dice; femur and tibia medians beside it."""
    from mskseg_lib.reference import published_video3d

    rows = []
    per_subject = {"a": (0.9, 0.8, 0.1, 0.86, 0.7), "b": (0.95, 0.85, 0.2, 0.91, 0.8)}
    for sid, (femur, tibia, patella, combined, all_bones) in per_subject.items():
        for name, dice, union in (("femur", femur, ""), ("tibia", tibia, ""), ("patella", patella, ""),
                                  ("combined", combined, "femur, tibia"),
                                  ("all_structures", all_bones, "femur, tibia, patella")):
            rows.append({"model_key": "sam2_hiera_tiny", "model": "SAM2 hiera-t", "scheme": "points_neg_video",
                         "dataset": KNEE, "subject_id": sid, "structure": name, "dice": dice, "union_of": union})
    for name, dice, union in (("vertebral_body_L1", 0.5, ""), ("combined", 0.6, "vertebral_body_L1")):
        rows.append({"model_key": "sam2_hiera_tiny", "model": "SAM2 hiera-t", "scheme": "points_neg_video",
                     "dataset": "RealSpine_MyoSegmenTUM_VB_8", "subject_id": "vb3_01", "structure": name, "dice": dice,
                     "union_of": union})
    rows.append({"model_key": "lite_medsam", "model": "LiteMedSAM", "scheme": "points_per_slice", "dataset": KNEE,
                 "subject_id": "a", "structure": "combined", "dice": 0.3, "union_of": "femur, tibia"})
    models = pd.DataFrame({"model_key": ["sam2_hiera_tiny", "sam2_hiera_large", "lite_medsam"],
                           "model": ["SAM2 hiera-t", "SAM2 hiera-l", "LiteMedSAM"], "family": ["sam2", "sam2", "lite_medsam"],
                           "video_predictor": [True, True, False],
                           "status": ["available", "not run: checkpoint missing", "available"]})
    table = study.anchor_table(pd.DataFrame(rows), published_video3d(), models)
    reg = table[(table["source"] == "regenerated") & (table["scheme"] == "points_neg_video")].set_index("dataset")
    assert reg.loc[KNEE, "median_3d_dice"] == pytest.approx(np.median([0.86, 0.91]))  # the union's Dice
    assert reg.loc[KNEE, "median_3d_dice_femur"] == pytest.approx(0.925)
    assert reg.loc[KNEE, "median_3d_dice_tibia"] == pytest.approx(0.825)
    assert reg.loc[KNEE, "structures"] == "femur, tibia" and "study's definition" in reg.loc[KNEE, "note"]
    assert reg.loc["RealSpine_MyoSegmenTUM_VB_8", "median_3d_dice"] == pytest.approx(0.6)
    assert "different structures" in reg.loc["RealSpine_MyoSegmenTUM_VB_8", "note"]
    assert reg.loc["", "note"] == "not run: checkpoint missing" and reg.loc["", "model"] == "SAM2 hiera-l"
    assert "LiteMedSAM" not in set(table["model"])  # the anchor is SAM2's
    pub = table[table["source"] == "published"].iloc[0]
    assert pub["median_3d_dice"] == pytest.approx(0.9196) and pub["structures"] == "femur and tibia"
    assert np.isnan(pub["median_3d_dice_femur"])


def test_study_scores_combined_on_the_profile_structures(knee_cfg):
    """On a real knee volume scored with the manual mask itself minus the patella, the combined
    row (femur + tibia) is exactly 1 and the all-structures row is below it."""
    subjects, _ = load_tables(fp_data.prepared_dir(knee_cfg))
    vol = study.load_volume(fp_video3d.volumes(knee_cfg, subjects).iloc[0], fp_video3d.video3d_settings(knee_cfg))
    pred = np.where(vol.gt == 5, 0, vol.gt)
    rows = structure_scores(pred, vol.gt, vol.values, vol.names, vol.spacing_mm,
                            combined=tuple(knee_cfg["video3d"]["combined_structures"])).set_index("structure")
    assert rows.loc["combined", "dice"] == pytest.approx(1.0)
    assert rows.loc["all_structures", "dice"] < 1.0 and rows.loc["patella", "dice"] == 0.0


def test_a_misspelt_combined_structure_is_refused_with_the_setting_named():
    """``[femur, tibai]`` must not silently shrink "combined" to the femur alone."""
    study.check_combined_structures(["femur", "tibia"])
    with pytest.raises(study.Video3dSettingsError, match="video3d.combined_structures: \\['tibai'\\]"):
        study.check_combined_structures(["femur", "tibai"])
    with pytest.raises(study.Video3dSettingsError, match="tibai"):
        study.Video3dSettings(combined_structures=("femur", "tibai"))  # refused when the settings are made
    with pytest.raises(study.Video3dSettingsError, match="unknown video3d schemes \\['box_video'\\]"):
        study.Video3dSettings(schemes=("box_video",))
