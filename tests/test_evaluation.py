"""The zero-shot engine: prompts, mask combination, MONAI metrics on known shapes, the run's
wiring with a stand-in model (known Dice), resume and cache; and LiteMedSAM on the real spine."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mskseg_lib.data.preprocess import SliceGeometry
from mskseg_lib.data.prepare import prepare_all, prepare_subject, subject_dir
from mskseg_lib.data.sources import real_spine_manifest
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.masks import combine_labels, logits_to_label_map, merge_instances, to_original
from mskseg_lib.evaluation.metrics import label_metrics
from mskseg_lib.evaluation.prompting import Condition, apply_condition, gt_box_prompts, parse_conditions
from mskseg_lib.evaluation.zero_shot import (RunMismatch, evaluate_subject, run_zero_shot, select_slices,
                                             zero_shot_variant)
from mskseg_lib.models.interface import Prompts

T1AX = "Spine_2D_T1ax_Clinical_Anatomical_59"
HIP = "Hip_3D_CUBE_Research_Anatomical_42"


def _row(**kw):
    base = {"dataset": T1AX, "subject_id": "s1", "slice_index": 3, "rows_px": 100, "cols_px": 120,
            "boxes_json": json.dumps({"1": [10, 10, 90, 40], "3": [20, 50, 30, 60]}),
            "instance_boxes_json": json.dumps({"1": [[10, 10, 40, 40], [60, 10, 90, 40]], "3": [[20, 50, 30, 60]]})}
    base.update(kw)
    return pd.Series(base)


# ----------------------------------------------------------------------------- prompts
def test_multi_instance_labels_get_one_box_per_piece():
    prompts = gt_box_prompts(_row(), instance_prompts=True)
    assert [(p.label, p.instance) for p in prompts] == [(1, 0), (1, 1), (3, 0)]
    assert prompts[1].box_px == (60, 10, 90, 40)
    assert len(gt_box_prompts(_row(), instance_prompts=False)) == 2


def test_jitter_is_seeded_bounded_and_shared_across_models():
    row = _row()
    base = gt_box_prompts(row)
    a = apply_condition(base, Condition("shift", 10), row, seed=1)
    b = apply_condition(base, Condition("shift", 10), row, seed=1)
    c = apply_condition(base, Condition("shift", 10), row, seed=2)
    assert a == b and a != c
    for p, q in zip(base, a):
        assert np.all(np.abs(np.subtract(p.box_px, q.box_px)) <= 10.5)
        assert 0 <= q.box_px[0] < q.box_px[2] <= 119 and 0 <= q.box_px[1] < q.box_px[3] <= 99
    assert apply_condition(base, Condition("gt", 0), row, seed=1) == base
    with pytest.raises(ValueError, match="distinct names"):
        parse_conditions([{"name": "a"}, {"name": "a", "jitter_px": 2}])
    with pytest.raises(ValueError, match=r"conditions\[0\]"):
        parse_conditions([{"name": "a", "jitter": 2}])


# ----------------------------------------------------------------------------- masks
def test_overlap_goes_to_the_smaller_structure_and_instances_merge():
    logits = torch.full((3, 4, 4), -5.0)
    logits[0, :, :2] = 2.0  # label 1, piece 0
    logits[1, :, 3] = 1.0  # label 1, piece 1 (label 1: 12 px)
    logits[2, :, 1:3] = 0.5  # label 2 (8 px) overlaps label 1 in column 1, less confident
    merged, values = merge_instances(logits, [1, 1, 2])
    assert values == [1, 2]
    out = combine_labels(merged, values)
    np.testing.assert_array_equal(out[0], [1, 2, 2, 1])
    # nested anatomy: a muscle inside the box-filling fat prediction survives
    fat = torch.full((1, 10, 10), 5.0)
    muscle = torch.full((1, 10, 10), -5.0)
    muscle[0, 3:6, 3:6] = 1.0
    nested = combine_labels(torch.cat([fat, muscle]), [1, 2])
    assert (nested == 2).sum() == 9 and (nested == 1).sum() == 91
    # equal areas: the higher logit wins
    a = torch.full((1, 2, 2), 1.0)
    b = torch.full((1, 2, 2), 3.0)
    assert (combine_labels(torch.cat([a, b]), [1, 2]) == 2).all()


def test_logits_map_back_to_the_original_slice_geometry():
    geom = SliceGeometry(rows_px=50, cols_px=100, size_px=200)  # scale 2, padded rows 100..199
    logits = torch.full((1, 200, 200), -10.0)
    logits[0, 20:60, 40:120] = 10.0  # original rows 10..29, cols 20..59
    up = to_original(logits, geom)
    assert up.shape == (1, 50, 100)
    label = logits_to_label_map(logits, [4], geom)
    expected = np.zeros((50, 100), np.uint8)
    expected[10:30, 20:60] = 4
    np.testing.assert_array_equal(label, expected)


# ----------------------------------------------------------------------------- metrics
def test_dice_iou_on_known_overlap_and_empty_rules():
    gt = np.zeros((40, 40), np.int16)
    pred = np.zeros_like(gt)
    gt[0:10, 0:10] = 1  # 100 px
    pred[5:15, 0:10] = 1  # 100 px, 50 overlap
    gt[20:30, 20:30] = 2  # missed entirely
    m = label_metrics(pred, gt, [1, 2, 3])
    assert m[1]["dice"] == pytest.approx(2 * 50 / 200) and m[1]["iou"] == pytest.approx(50 / 150)
    assert m[2]["dice"] == 0.0 and m[2]["pred_px"] == 0
    assert np.isnan(m[3]["dice"])  # empty ground truth: not scored


def test_hd95_of_concentric_discs_is_the_radius_gap_in_mm():
    yy, xx = np.mgrid[:100, :100]
    r = np.hypot(yy - 50, xx - 50)
    gt = (r < 20).astype(np.int16)
    pred = (r < 26).astype(np.int16)
    m = label_metrics(pred, gt, [1], spacing_mm=(0.5, 0.5), hd95=True)
    assert m[1]["hd95_mm"] == pytest.approx(6 * 0.5, abs=0.5)
    assert np.isnan(label_metrics(np.zeros_like(gt), gt, [1], hd95=True)[1]["hd95_mm"])


# ----------------------------------------------------------------------------- the engine
class BoxFiller:
    """Stand-in segmenter: logits +10 inside each box, -10 outside. Counts encoder calls."""

    name = "box-filler"
    input_size_px = 256
    device = torch.device("cpu")
    autocast_bf16 = False

    def __init__(self):
        self.encoded = 0

    def encode(self, images, valid_hw=None):
        self.encoded += len(images)
        return [{"image_embed": torch.as_tensor(np.asarray(im), dtype=torch.float32)[None]} for im in images]

    def decode(self, embedding, prompts: Prompts):
        s = self.input_size_px
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        out = []
        for x0, y0, x1, y1 in prompts.boxes:
            inside = (xx >= x0 - 0.5) & (xx <= x1 + 0.5) & (yy >= y0 - 0.5) & (yy <= y1 + 0.5)
            out.append(torch.where(inside, 10.0, -10.0))
        return torch.stack(out)


@pytest.fixture
def hip_cfg(tiny_cfg):
    tiny_cfg["cohort"]["datasets"] = [HIP]
    tiny_cfg["zero_shot"].update(conditions=[{"name": "gt_box", "jitter_px": 0}, {"name": "shift", "jitter_px": 3}],
                                 split="all", max_subjects_per_dataset=2, max_slices_per_subject=3, hd95=False)
    prepare_all(tiny_cfg, progress=False)
    return tiny_cfg


def test_engine_scores_a_box_filling_model_as_the_box_vs_mask_overlap(hip_cfg):
    """With GT boxes the stand-in predicts each box, so the saved prediction of every slice is a
    rectangle on the ground-truth box (within the 1 px of SAM's coordinate scaling), and the
    engine's Dice equals the Dice computed directly (numpy) from that prediction and the GT."""
    from mskseg_lib.evaluation.zero_shot import ground_truth_slices, load_predictions

    model = BoxFiller()
    run = run_zero_shot(hip_cfg, ["filler"], model_loader=lambda key: model, progress=False)
    subjects, slices = load_tables(hip_cfg)
    sel = select_slices(hip_cfg, subjects, slices)
    assert len(sel) == 6 and model.encoded == 6
    gt_rows = run.slices[run.slices["condition"] == "gt_box"]
    subj_index = subjects.set_index(["dataset", "subject_id"])
    for r in sel.itertuples():
        subj = subj_index.loc[(r.dataset, r.subject_id)]
        gt = ground_truth_slices(subj["mask_nifti"], int(subj["slice_axis"]), [r.slice_index])[0] == 1
        preds = load_predictions(run.run_dir, "filler", r.dataset, r.subject_id)
        pred = preds["gt_box"][list(preds["slice_index"]).index(r.slice_index)] == 1
        assert pred.shape == gt.shape
        ys, xs = np.nonzero(pred)
        box = json.loads(r.boxes_json)["1"]
        assert np.abs(np.subtract([xs.min(), ys.min(), xs.max(), ys.max()], box)).max() <= 1
        assert pred.sum() == (np.ptp(xs) + 1) * (np.ptp(ys) + 1)  # a filled rectangle
        expected = 2 * (gt & pred).sum() / (gt.sum() + pred.sum())
        got = gt_rows[(gt_rows.subject_id == r.subject_id) & (gt_rows.slice_index == r.slice_index)]["dice"]
        assert float(got.iloc[0]) == pytest.approx(expected, abs=1e-6)
    subj_table = aggregate.subject_table(run.slices, run.volumes)
    assert set(subj_table["arm"]) == {"box-filler · gt_box", "box-filler · shift"}
    assert (subj_table["n_slices"] == 3).all()
    # jittered boxes are worse than exact ones for a box-filling model on a compact structure
    by = subj_table.groupby("condition")["dice_mean_slice"].mean()
    assert by["gt_box"] > by["shift"]
    for name in ("models.csv", "slice_label_metrics.csv", "volume_label_metrics.csv", "manifest.json", "config.yaml"):
        assert (run.run_dir / name).exists()


def test_engine_resumes_reuses_embeddings_and_refuses_changed_settings(hip_cfg):
    model = BoxFiller()
    first = run_zero_shot(hip_cfg, ["filler"], model_loader=lambda key: model, progress=False)
    n = model.encoded
    second = run_zero_shot(hip_cfg, ["filler"], model_loader=lambda key: model, progress=False)
    assert model.encoded == n  # every subject finished: nothing re-encoded or re-decoded
    pd.testing.assert_frame_equal(first.slices, second.slices)
    # a new prompt condition under a new tag decodes from the cached embeddings
    hip_cfg["zero_shot"]["tag"] = "more_jitter"
    hip_cfg["zero_shot"]["conditions"] = [{"name": "shift_8", "jitter_px": 8}]
    run_zero_shot(hip_cfg, ["filler"], model_loader=lambda key: model, progress=False)
    assert model.encoded == n
    hip_cfg["zero_shot"]["tag"] = "baseline"
    with pytest.raises(RunMismatch, match="zero_shot.tag"):
        run_zero_shot(hip_cfg, ["filler"], model_loader=lambda key: model, progress=False)


def test_variant_runs_in_its_own_folder_from_the_shared_cache_and_leaves_the_profile_alone(hip_cfg):
    model = BoxFiller()
    base = run_zero_shot(hip_cfg, ["filler"], model_loader=lambda key: model, progress=False)
    n = model.encoded
    variant = zero_shot_variant(hip_cfg, tag="physics", max_subjects_per_dataset=0,
                                conditions=[{"name": "gt_box", "jitter_px": 0}])
    assert hip_cfg["zero_shot"]["tag"] == "baseline" and hip_cfg["zero_shot"]["max_subjects_per_dataset"] == 2
    run = run_zero_shot(variant, ["filler"], model_loader=lambda key: model, progress=False)
    assert run.run_dir.name == "physics" and run.run_dir != base.run_dir
    subjects, _ = load_tables(hip_cfg)
    assert run.slices["subject_id"].nunique() == len(subjects) == 3  # every subject, not 2
    new_slices = len(select_slices(variant, *load_tables(hip_cfg))) - len(select_slices(hip_cfg, *load_tables(hip_cfg)))
    assert model.encoded == n + new_slices  # slices already scored came from the shared cache
    with pytest.raises(KeyError, match="unknown zero_shot keys"):
        zero_shot_variant(hip_cfg, splitt="all")


def test_missing_model_is_reported_not_silently_skipped(hip_cfg):
    hip_cfg["models"]["checkpoints_dir"] = str(hip_cfg["paths"]["data_root"])  # no weights there
    hip_cfg["zero_shot"]["max_subjects_per_dataset"] = 1
    hip_cfg["zero_shot"]["max_slices_per_subject"] = 1
    run = run_zero_shot(hip_cfg, ["sam_vit_b"], progress=False)
    assert run.models.iloc[0]["status"] == "not run: checkpoint missing"
    assert "sam_vit_b_01ec64.pth" in run.models.iloc[0]["detail"]
    assert run.slices.empty


# ----------------------------------------------------------------------------- real data
@pytest.mark.real_data
@pytest.mark.slow
def test_lite_medsam_segments_real_vertebral_bodies(tiny_cfg, real_spine):
    """LiteMedSAM, ground-truth boxes, sagittal slices through L1-L5 of a real lumbar MRI:
    mean slice Dice >= 0.75 (this model family reaches about 0.8 on this dataset)."""
    from mskseg_lib.models.zoo import load_model

    row = real_spine_manifest(real_spine).to_dict("records")[3]  # vb3_04, the test split
    tiny_cfg["prepare"]["min_component_px"] = 100
    tiny_cfg["prepare"]["min_component_voxels"] = 1000
    rec = prepare_subject(row, tiny_cfg)
    d = subject_dir(tiny_cfg, rec["subject"]["dataset"], row["subject_id"])
    subject = {**rec["subject"], "mask_nifti": str(d / "mask.nii.gz"), "slices_256_image": str(d / "slices_256_image.npy"),
               "slices_256_mask": str(d / "slices_256_mask.npy")}
    slices = pd.DataFrame(rec["slices"])
    # every third sagittal slice through the vertebral bodies: 18-20 slices, about 25 s on 2 cores
    slices = slices.iloc[::3]
    model = load_model(tiny_cfg, "lite_medsam", device=torch.device("cpu"))
    res, vol, stacks, t = evaluate_subject(model, "lite_medsam", slices, subject, [Condition("gt_box")], seed=0)
    slice_dice = res.groupby("slice_index")["dice"].mean()
    assert len(slice_dice) >= 15
    assert slice_dice.mean() >= 0.75, slice_dice.describe()
    assert set(res["label_name"]) == {f"vertebral_body_L{i}" for i in range(1, 6)}
    assert stacks["gt_box"].shape == (len(slices), 224, 224)


def test_table_s3_puts_published_values_beside_regenerated_ones():
    from mskseg_lib.evaluation.report import PUBLISHED_PREFIX, table_s3
    from mskseg_lib.reference import published_table1

    pub = published_table1()
    assert len(pub) == 12 * 3 * 2
    knee = pub[(pub.dataset == "Knee_3D_DESS_Research_Anatomical_86") & (pub.setting == "zero-shot")]
    assert dict(zip(knee.model, knee.dice)) == {"SAM ViT-B": 0.61008, "SAM2 hiera-b+": 0.62420, "MedSAM ViT-B": 0.48823}
    ds = pd.DataFrame({"dataset": ["Knee_3D_DESS_Research_Anatomical_86", "RealSpine_MyoSegmenTUM_VB_8"],
                       "arm": ["LiteMedSAM · gt_box"] * 2, "dice_mean": [0.5, 0.8], "dice_sd": [0.1, np.nan],
                       "n_subjects": [3, 1]})
    s3 = table_s3(ds).set_index("dataset")
    assert s3.loc["Knee_3D_DESS_Research_Anatomical_86", "LiteMedSAM · gt_box"] == "0.500 ± 0.100 (n=3)"
    assert s3.loc["Knee_3D_DESS_Research_Anatomical_86", PUBLISHED_PREFIX + "SAM ViT-B"] == 0.61008
    assert s3.loc["RealSpine_MyoSegmenTUM_VB_8", "published note"] == "not in the study"


def test_whole_volume_prediction_lines_up_with_the_mask_and_the_engines_3d_dice(hip_cfg):
    """Every labelled slice is predicted and put back on the mask's grid: Dice computed on the
    reassembled NIfTI equals the engine's own 3D Dice (a wrong axis or rotation would not)."""
    import nibabel as nib

    from mskseg_lib.evaluation.volumes import assemble_volume, predict_volumes, write_volume

    model = BoxFiller()
    run = predict_volumes(hip_cfg, "filler", tag="volumes", datasets=[HIP], split="all",
                          max_subjects_per_dataset=1, model_loader=lambda key: model, progress=False)
    subjects, slices = load_tables(hip_cfg)
    subject = subjects.sort_values("subject_id").iloc[0].to_dict()
    n_labelled = int((slices["subject_id"] == subject["subject_id"]).sum())
    assert run.slices.groupby("slice_index").ngroups == n_labelled  # all slices, not the profile's 3
    volume, affine = assemble_volume(run.run_dir, "filler", subject)
    mask = nib.load(subject["mask_nifti"])
    gt = np.asarray(mask.dataobj)
    assert volume.shape == gt.shape and np.allclose(affine, mask.affine)
    for row in run.volumes.itertuples():
        p, g = volume == row.label_value, gt == row.label_value
        assert 2 * (p & g).sum() / (p.sum() + g.sum()) == pytest.approx(row.dice_3d, abs=1e-6)  # stored as float32
    path = write_volume(run.run_dir / "pred.nii.gz", volume, affine)
    assert np.array_equal(np.asarray(nib.load(path).dataobj), volume)
