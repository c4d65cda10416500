"""The zero-shot engine: prompts, mask combination, the one Dice and its empty-mask rule on known
shapes, the run's wiring with a stand-in model (known Dice), called with explicit arguments and
from a profile, resume and cache; and LiteMedSAM on the real spine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mskseg_lib.config import ProfileError
from mskseg_lib.data.prepare import prepare_subject
from mskseg_lib.data.preprocess import SliceGeometry
from mskseg_lib.data.slice_store import subject_dir
from mskseg_lib.data.sources import real_spine_manifest
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.masks import combine_labels, logits_to_label_map, merge_instances, to_original
from mskseg_lib.evaluation.metrics import dice, iou, label_metrics, mean_label_dice
from mskseg_lib.evaluation.prompting import Condition, apply_condition, gt_box_prompts, parse_conditions
from mskseg_lib.evaluation.zero_shot import (
    RunMismatch,
    SliceSelection,
    ZeroShotSettings,
    evaluate_subject,
    run_zero_shot,
    select_slices,
)
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile.zero_shot import zero_shot_inputs
from mskseg_lib.models.interface import Prompts
from mskseg_lib.models.settings import ModelSettings

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
    jitter = Condition("jitter", kind="jitter", jitter_px=10)
    a = apply_condition(base, jitter, row, seed=1)
    b = apply_condition(base, jitter, row, seed=1)
    c = apply_condition(base, jitter, row, seed=2)
    assert a == b and a != c
    for p, q in zip(base, a):
        assert np.all(np.abs(np.subtract(p.box_px, q.box_px)) <= 10.5)
        assert 0 <= q.box_px[0] < q.box_px[2] <= 119 and 0 <= q.box_px[1] < q.box_px[3] <= 99
    assert apply_condition(base, Condition("gt", 0), row, seed=1) == base
    with pytest.raises(ValueError, match="distinct names"):
        parse_conditions([{"name": "a"}, {"name": "a", "shift_grid_px": 2}], 256)
    with pytest.raises(ValueError, match=r"conditions\[0\]"):
        parse_conditions([{"name": "a", "jitter": 2}], 256)


def test_conditions_parse_the_study_shift_by_default_and_jitter_only_when_named():
    conds = parse_conditions([{"name": "gt_box"}, {"name": "gt0", "jitter_px": 0}, {"name": "s20", "shift_grid_px": 20},
                              {"name": "j5", "kind": "jitter", "jitter_px": 5}], 256)
    assert [(c.kind, c.shift_grid_px, c.jitter_px, c.mask_grid_px, c.exact) for c in conds] == [
        ("shift", 0, 0.0, 256, True), ("shift", 0, 0.0, 256, True), ("shift", 20, 0.0, 256, False),
        ("jitter", 0, 5.0, 256, False)]
    with pytest.raises(ValueError, match="add 'kind: jitter'"):
        parse_conditions([{"name": "old", "jitter_px": 5}], 256)  # the old symmetric jitter, unlabelled
    with pytest.raises(ValueError, match="integer >= 0"):
        parse_conditions([{"name": "s", "shift_grid_px": 2.5}], 256)
    with pytest.raises(ValueError, match="kind must be one of"):
        parse_conditions([{"name": "s", "kind": "wiggle"}], 256)


@pytest.mark.parametrize("resize_mode", ["stretch", "pad"])
def test_study_shift_condition_contains_the_exact_box_and_is_one_physical_box_for_every_model(resize_mode):
    """Shift 20 on the 256 grid: each side moves out by a whole number 0..20 of grid pixels; in
    model pixels that is x1 at 256 (LiteMedSAM) and x4 at 1024 (SAM, SAM2), and mapped back to the
    original slice both models see the same box, which contains the exact one."""
    from mskseg_lib.data.preprocess import scale_box, unscale_box

    row = _row(resize_mode=resize_mode)  # 100 rows x 120 cols
    base = gt_box_prompts(row)
    cond = parse_conditions([{"name": "shift_20grid", "shift_grid_px": 20}], 256)[0]
    g256, g1024 = SliceGeometry(100, 120, 256, resize_mode), SliceGeometry(100, 120, 1024, resize_mode)
    moves = []
    for seed in range(150):
        for p, q in zip(base, apply_condition(base, cond, row, seed)):
            assert q.box_px[0] <= p.box_px[0] and q.box_px[1] <= p.box_px[1]  # contains the exact box
            assert q.box_px[2] >= p.box_px[2] and q.box_px[3] >= p.box_px[3]
            assert 0 <= q.box_px[0] and 0 <= q.box_px[1] and q.box_px[2] <= 119 and q.box_px[3] <= 99
            e256, s256 = scale_box(p.box_px, g256), scale_box(q.box_px, g256)
            e1024, s1024 = scale_box(p.box_px, g1024), scale_box(q.box_px, g1024)
            d256 = np.abs(s256 - e256)  # grid pixels = LiteMedSAM pixels (256 grid on a 256 input)
            assert np.allclose(d256, np.round(d256), atol=1e-9) and d256.max() <= 20 + 1e-9
            # x4 at 1024 (under pad only up to the rounding of the padded extent: 213 of 256 rows vs 853 of 1024)
            assert np.allclose(np.abs(s1024 - e1024), 4 * d256, atol=1e-9 if resize_mode == "stretch" else 0.2)
            assert np.allclose(unscale_box(s256, g256), unscale_box(s1024, g1024), atol=1e-9)  # one physical box
            moves.append(np.round(d256))
    moves = np.array(moves)
    assert moves.min() == 0 and moves.max() == 20
    assert apply_condition(base, cond, row, 3) == apply_condition(base, cond, row, 3)


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
    geom = SliceGeometry(rows_px=50, cols_px=100, size_px=200, resize_mode="pad")  # scale 2, padded rows 100..199
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


def test_the_one_dice_has_an_explicit_empty_mask_rule():
    """Dice = 2|P∩G| / (|P| + |G|): two 10 x 10 squares overlapping by half give 2 * 50 / 200;
    both masks empty -> the named value (NaN by default, kept out of means); one empty -> 0."""
    gt, pred = np.zeros((30, 30), bool), np.zeros((30, 30), bool)
    gt[0:10, 0:10] = True
    pred[5:15, 0:10] = True
    assert dice(pred, gt) == pytest.approx(0.5) and iou(pred, gt) == pytest.approx(50 / 150)
    empty = np.zeros_like(gt)
    assert np.isnan(dice(empty, empty)) and np.isnan(iou(empty, empty))
    assert dice(empty, empty, both_empty=1.0) == 1.0 and iou(empty, empty, both_empty=0.0) == 0.0
    assert dice(pred, empty) == 0.0 and iou(pred, empty) == 0.0  # ground truth empty, prediction not
    assert dice(empty, gt) == 0.0  # a missed structure
    # per slice of a stack: (half overlap, both empty, ground truth only)
    stack_p, stack_g = np.stack([pred, empty, empty]), np.stack([gt, empty, gt])
    per = dice(stack_p, stack_g, axis=(1, 2))
    assert per.shape == (3,) and per[0] == pytest.approx(0.5) and np.isnan(per[1]) and per[2] == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        dice(pred, gt[:5])
    # label maps: label 1 half overlaps, label 2 only predicted (0), label 3 nowhere (NaN)
    lab_p, lab_g = pred.astype(int), gt.astype(int)
    lab_p[20:25, 20:25] = 2
    m = label_metrics(lab_p, lab_g, [1, 2, 3])
    assert m[1]["dice"] == pytest.approx(0.5) and m[2]["dice"] == 0.0 and m[2]["pred_px"] == 25
    assert np.isnan(m[3]["dice"]) and label_metrics(lab_p, lab_g, [3], both_empty=1.0)[3]["dice"] == 1.0
    assert mean_label_dice(lab_p, lab_g) == pytest.approx((0.5 + 0.0) / 2)  # labels in either map
    assert np.isnan(mean_label_dice(empty.astype(int), empty.astype(int)))


def test_label_dice_equals_monais_compute_dice_bit_for_bit():
    """Where the ground truth has the label (every score the engine computes), the one Dice and
    IoU are MONAI's ``compute_dice`` / ``compute_iou`` (``ignore_empty=True``, the study's
    metric) exactly, in 2D and 3D."""
    from monai.metrics import compute_dice, compute_iou

    rng = np.random.default_rng(0)
    values = [1, 2, 3]
    for shape in [(37, 53), (4, 29, 31), (64, 64)]:
        gt = rng.integers(0, 4, size=shape) * (rng.random(shape) < 0.6)
        pred = np.where(rng.random(shape) < 0.3, rng.integers(0, 4, size=shape), gt)
        one_hot = lambda a: torch.stack([torch.as_tensor(a == v) for v in values])[None].float()  # noqa: E731
        d = compute_dice(one_hot(pred), one_hot(gt), include_background=True, ignore_empty=True)[0]
        j = compute_iou(one_hot(pred), one_hot(gt), include_background=True, ignore_empty=True)[0]
        ours = label_metrics(pred, gt, values)
        for k, v in enumerate(values):
            assert (gt == v).any()
            assert ours[v]["dice"] == float(d[k]) and ours[v]["iou"] == float(j[k])


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
    tiny_cfg["zero_shot"].update(conditions=[{"name": "gt_box", "jitter_px": 0}, {"name": "shift", "shift_grid_px": 6}],
                                 split="all", max_subjects_per_dataset=2, max_slices_per_subject=3, hd95=False)
    fp_data.prepare(tiny_cfg, progress=False)
    return tiny_cfg


def _run(cfg, model, keys=("filler",), **overrides):
    """``run_zero_shot`` from a profile (``overrides``: zero_shot keys), with a stand-in model."""
    inputs = {**zero_shot_inputs(cfg, **overrides), "model_keys": list(keys)}
    return run_zero_shot(**inputs, progress=False, model_loader=(lambda key: model) if model else None)


def test_engine_scores_a_box_filling_model_as_the_box_vs_mask_overlap(hip_cfg):
    """Called with explicit arguments (no profile): with GT boxes the stand-in predicts each box,
    so the saved prediction of every slice is a rectangle on the ground-truth box (within the 1 px
    of SAM's coordinate scaling), and the engine's Dice equals the Dice computed directly (numpy)
    from that prediction and the GT."""
    from mskseg_lib.evaluation.zero_shot import ground_truth_slices, load_predictions

    model = BoxFiller()
    prepared = fp_data.prepared_dir(hip_cfg)
    selection = SliceSelection(split="all", max_subjects_per_dataset=2, max_slices_per_subject=3)
    settings = ZeroShotSettings(conditions=({"name": "gt_box"}, {"name": "shift", "shift_grid_px": 6}))
    run = run_zero_shot(prepared, Path(hip_cfg["paths"]["runs_dir"]) / "mine", ["filler"], selection, settings,
                        progress=False, model_loader=lambda key: model)
    subjects, slices = load_tables(prepared)
    sel = select_slices(subjects, slices, selection)
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
    assert (run.run_dir.parent / "_embeddings").is_dir()  # the default cache folder, beside the run
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["profile"] == "(no profile)" and manifest["seed"] == 0
    assert manifest["config"]["zero_shot"]["conditions"][1] == {"name": "shift", "shift_grid_px": 6}


def test_engine_resumes_reuses_embeddings_and_refuses_changed_settings(hip_cfg):
    model = BoxFiller()
    first = _run(hip_cfg, model)
    n = model.encoded
    second = _run(hip_cfg, model)
    assert model.encoded == n  # every subject finished: nothing re-encoded or re-decoded
    pd.testing.assert_frame_equal(first.slices, second.slices)
    # a new prompt condition under a new tag decodes from the cached embeddings
    _run(hip_cfg, model, tag="more_jitter", conditions=[{"name": "shift_8", "shift_grid_px": 8}])
    assert model.encoded == n
    with pytest.raises(RunMismatch, match="zero_shot.tag"):
        _run(hip_cfg, model, conditions=[{"name": "shift_8", "shift_grid_px": 8}])
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert manifest["profile"] == "fixture" and manifest["config"]["zero_shot"] == hip_cfg["zero_shot"]


class _RecordingBar:
    """Stand-in for tqdm: records its total, start, every step, how many slices were decoded at
    each step (``decoded``, read from the model) and its postfixes."""

    bars: list = []
    model = None

    def __init__(self, *args, total=None, initial=0, disable=False, **kwargs):
        self.total, self.initial, self.disable, self.steps, self.decoded_at = total, initial, disable, [], []
        self.postfixes = []
        _RecordingBar.bars.append(self)

    def update(self, n=1):
        self.steps.append(n)
        self.decoded_at.append(_RecordingBar.model.decoded)

    def set_postfix_str(self, text):
        self.postfixes.append(text)

    def close(self):
        pass


class CountingFiller(BoxFiller):
    """BoxFiller counting decoder calls (one per slice: every condition's boxes in one call)."""

    def __init__(self):
        super().__init__()
        self.decoded = 0

    def decode(self, embedding, prompts: Prompts):
        self.decoded += 1
        return super().decode(embedding, prompts)


def test_progress_counts_slices_steps_after_each_and_starts_a_resume_at_the_finished_ones(hip_cfg, monkeypatch):
    """2 subjects x 3 slices: the bar's total is 6 and it steps by 1 right after each slice's
    decode (not once per subject); with one subject's results removed, a rerun starts at 3 and
    steps 3 times; progress=False makes the bar silent. While a subject is encoded (2 slices per
    encoder call) the postfix says so: 2/3, then 3/3. Scores are unchanged by the rerun."""
    from mskseg_lib.evaluation import zero_shot as zs

    monkeypatch.setattr(zs, "tqdm", _RecordingBar)
    model = CountingFiller()
    _RecordingBar.model, _RecordingBar.bars = model, []
    prepared = fp_data.prepared_dir(hip_cfg)
    run_dir = Path(hip_cfg["paths"]["runs_dir"]) / "progress"
    selection = SliceSelection(split="all", max_subjects_per_dataset=2, max_slices_per_subject=3)
    settings = ZeroShotSettings(conditions=({"name": "gt_box"},), cache_embeddings=False,
                                models=ModelSettings(encode_batch_size=2))
    first = run_zero_shot(prepared, run_dir, ["filler"], selection, settings, model_loader=lambda key: model)
    (bar,) = _RecordingBar.bars
    assert (bar.total, bar.initial, bar.disable) == (6, 0, False)
    assert bar.steps == [1] * 6 and bar.decoded_at == [1, 2, 3, 4, 5, 6]
    ids = sorted(first.slices["subject_id"].unique())
    assert bar.postfixes == [f"{HIP}/{i}: encoded {k}/3" for i in ids for k in (2, 3)]
    done = sorted(p for p in (run_dir / "models" / "filler" / "subjects").glob("*.parquet")
                  if not p.name.endswith(".3d.parquet"))
    assert len(done) == 2
    done[1].unlink()  # the second subject is not finished
    _RecordingBar.bars = []
    second = run_zero_shot(prepared, run_dir, ["filler"], selection, settings, model_loader=lambda key: model,
                           progress=False)
    (bar,) = _RecordingBar.bars
    assert (bar.total, bar.initial, bar.disable) == (6, 3, True)
    assert bar.steps == [1] * 3 and bar.decoded_at == [7, 8, 9]
    assert bar.postfixes == [f"{HIP}/{ids[1]}: encoded {k}/3" for k in (2, 3)]
    pd.testing.assert_frame_equal(first.slices.drop(columns="seconds"), second.slices.drop(columns="seconds"))


def test_profile_settings_keep_the_run_folder_fingerprint_layout(tiny_cfg):
    """The settings record a profile's run folder is fingerprinted with is the one the engine has
    always stored (profile values, as written), so folders made before the typed settings resume."""
    from mskseg_lib.evaluation.zero_shot import run_settings_record
    from mskseg_lib.from_profile.zero_shot import slice_selection, zero_shot_settings

    z, p = tiny_cfg["zero_shot"], tiny_cfg["prepare"]
    legacy = {"seed": tiny_cfg["seed"], **{k: z[k] for k in (
        "conditions", "mask_grid_px", "split", "datasets", "max_subjects_per_dataset", "max_slices_per_subject",
        "instance_prompts", "hd95", "cache_embeddings")},
        "input_normalisation": tiny_cfg["models"]["input_normalisation"],
        "prepare": {"resize": p["resize"], "clip_percentiles": p["clip_percentiles"], "per_dataset": p["per_dataset"]}}
    record = run_settings_record(zero_shot_settings(tiny_cfg), slice_selection(tiny_cfg))
    assert json.dumps(record, sort_keys=True) == json.dumps(legacy, sort_keys=True)


@pytest.mark.parametrize("change", ["input_normalisation", "resize", "clip"])
def test_run_folder_refuses_results_of_another_encoder_input_or_preparation(tiny_cfg, change):
    """Results depend on the encoder's input convention and on how the slices were prepared: a run
    folder made under other ones is refused, never mixed in."""
    from mskseg_lib.evaluation.zero_shot import check_run_folder, run_settings_record
    from mskseg_lib.from_profile.zero_shot import slice_selection, zero_shot_settings

    run_dir = Path(tiny_cfg["paths"]["runs_dir"]) / "zs_check"
    run_dir.mkdir(parents=True)
    record = run_settings_record(zero_shot_settings(tiny_cfg), slice_selection(tiny_cfg))
    check_run_folder(run_dir, record)
    check_run_folder(run_dir, record)  # same settings: resumes
    if change == "input_normalisation":
        tiny_cfg["models"]["input_normalisation"] = "native"
    elif change == "resize":
        tiny_cfg["prepare"]["resize"] = "pad"
    else:
        tiny_cfg["prepare"]["clip_percentiles"] = [0.5, 99.5]
    with pytest.raises(RunMismatch):
        check_run_folder(run_dir, run_settings_record(zero_shot_settings(tiny_cfg), slice_selection(tiny_cfg)))


def test_without_a_preparation_record_the_prepared_tables_stand_in():
    """Explicit settings without ``preparation``: the run folder records the resize modes and clip
    percentiles the prepared subjects were made with, so re-prepared slices are refused too."""
    from mskseg_lib.evaluation.zero_shot import run_settings_record

    subjects = pd.DataFrame({"resize_mode": ["stretch", "stretch"], "clip_percentiles": ["[1, 99]", "[1, 99]"]})
    record = run_settings_record(ZeroShotSettings(), SliceSelection(), subjects)
    assert record["prepare"] == {"resize_mode": ["stretch"], "clip_percentiles": ["[1, 99]"]}
    padded = run_settings_record(ZeroShotSettings(), SliceSelection(), subjects.assign(resize_mode="pad"))
    assert padded["prepare"] != record["prepare"]
    rows = pd.DataFrame({"dataset": ["a", "a"], "subject_id": ["s1", "s1"], "slice_index": [3, 4]})
    picked = run_settings_record(ZeroShotSettings(), rows, subjects)
    assert "split" not in picked and len(picked["slices"]) == 16  # explicit rows: their digest


def test_variant_runs_in_its_own_folder_from_the_shared_cache_and_leaves_the_profile_alone(hip_cfg):
    model = BoxFiller()
    base = _run(hip_cfg, model)
    n = model.encoded
    variant = {"tag": "physics", "max_subjects_per_dataset": 0, "conditions": [{"name": "gt_box", "jitter_px": 0}]}
    run = _run(hip_cfg, model, **variant)
    assert hip_cfg["zero_shot"]["tag"] == "baseline" and hip_cfg["zero_shot"]["max_subjects_per_dataset"] == 2
    assert run.run_dir.name == "physics" and run.run_dir != base.run_dir
    subjects, slices = load_tables(fp_data.prepared_dir(hip_cfg))
    assert run.slices["subject_id"].nunique() == len(subjects) == 3  # every subject, not 2
    new_slices = (len(select_slices(subjects, slices, zero_shot_inputs(hip_cfg, **variant)["selection"]))
                  - len(select_slices(subjects, slices, zero_shot_inputs(hip_cfg)["selection"])))
    assert model.encoded == n + new_slices  # slices already scored came from the shared cache
    with pytest.raises(ProfileError, match="unknown zero_shot keys"):
        zero_shot_inputs(hip_cfg, splitt="all")


def test_missing_model_is_reported_not_silently_skipped(hip_cfg):
    hip_cfg["models"]["checkpoints_dir"] = str(hip_cfg["paths"]["data_root"])  # no weights there
    run = _run(hip_cfg, None, ["sam_vit_b"], max_subjects_per_dataset=1, max_slices_per_subject=1)
    assert run.models.iloc[0]["status"] == "not run: checkpoint missing"
    assert "sam_vit_b_01ec64.pth" in run.models.iloc[0]["detail"]
    assert run.slices.empty


def test_encode_in_batches_keeps_order_and_batch_size():
    """7 slices, batches of 3: three encoder calls (3, 3, 1), embeddings in the slices' order, and
    each slice's content size handed on."""
    from mskseg_lib.models.encoding import encode_in_batches

    class Recorder(BoxFiller):
        def __init__(self):
            super().__init__()
            self.calls = []

        def encode(self, images, valid_hw=None):
            self.calls.append((len(images), list(valid_hw)))
            return super().encode(images, valid_hw)

    images = np.arange(7, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    hw = [(4, 4 - i % 2) for i in range(7)]
    model = Recorder()
    out = encode_in_batches(model, images, hw, 3)
    assert [c[0] for c in model.calls] == [3, 3, 1] and sum((c[1] for c in model.calls), []) == hw
    assert [int(e["image_embed"][0, 0, 0]) for e in out] == list(range(7))
    with pytest.raises(ValueError, match="7 slices but 6 sizes"):
        encode_in_batches(model, images, hw[:6], 3)


def test_subject_embeddings_encode_only_what_the_cache_lacks(tmp_path):
    from mskseg_lib.evaluation.embedding_cache import CacheEntry, EmbeddingCache, subject_embeddings

    model = BoxFiller()
    stack = np.arange(5, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    entry = CacheEntry(EmbeddingCache(tmp_path), "filler", "d", "s1", "key-1")
    got, n = subject_embeddings(model, stack, [1, 3], [(4, 4)] * 2, 8, entry)
    assert n == 2 and sorted(got) == [1, 3] and model.encoded == 2
    got, n = subject_embeddings(model, stack, [0, 1, 3], [(4, 4)] * 3, 8, entry)
    assert n == 1 and model.encoded == 3 and int(got[0]["image_embed"][0, 0, 0]) == 0  # only slice 0 was new
    stale = CacheEntry(entry.cache, "filler", "d", "s1", "key-2")  # other weights or slices: not reused
    assert subject_embeddings(model, stack, [0], [(4, 4)], 8, stale)[1] == 1
    assert subject_embeddings(model, stack, [0, 1], [(4, 4)] * 2, 8, None)[1] == 2  # no cache: all encoded


def test_embedding_store_is_one_file_per_slice_read_lazily_and_a_broken_file_is_encoded_again(tmp_path):
    """Per-slice safetensors files (float16, key in the metadata): reading one slice reads only
    its file; a truncated file (a killed or full-disk write) counts as absent and is re-encoded;
    the lazy mapping training uses gives the stored values and names a missing slice."""
    from mskseg_lib.evaluation.embedding_cache import CacheEntry, EmbeddingCache, LazyEmbeddings, subject_embeddings

    model = BoxFiller()
    stack = np.arange(5, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    cache = EmbeddingCache(tmp_path)
    entry = CacheEntry(cache, "filler", "d", "s1", "key-1")
    subject_embeddings(model, stack, [0, 2, 4], [(4, 4)] * 3, 8, entry)
    files = sorted(p.name for p in cache.folder("filler", "d", "s1").iterdir())
    assert files == ["0.safetensors", "2.safetensors", "4.safetensors"]
    assert cache.indices("filler", "d", "s1", "key-1") == {0, 2, 4} and cache.indices("filler", "d", "s1", "k2") == set()
    one = cache.load("filler", "d", "s1", "key-1", torch.device("cpu"), indices=[2])
    assert list(one) == [2] and int(one[2]["image_embed"][0, 0, 0]) == 2 and one[2]["image_embed"].dtype == torch.float32
    broken = cache.path("filler", "d", "s1", 2)
    broken.write_bytes(broken.read_bytes()[:40])
    assert cache.indices("filler", "d", "s1", "key-1") == {0, 4}
    before = model.encoded
    got, n = subject_embeddings(model, stack, [0, 2, 4], [(4, 4)] * 3, 8, entry)
    assert n == 1 and model.encoded == before + 1 and int(got[2]["image_embed"][0, 0, 0]) == 2
    lazy = LazyEmbeddings(cache, "filler", {("d", "s1", 4): "key-1", ("d", "s1", 3): "key-1"})
    assert int(lazy[("d", "s1", 4)]["image_embed"][0, 0, 0]) == 4 and len(lazy) == 2
    with pytest.raises(KeyError, match="slice 3: not in the embedding store"):
        lazy[("d", "s1", 3)]
    assert cache.bytes_per_slice("filler") > 0


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
    rec = prepare_subject(row, fp_data.prepared_dir(tiny_cfg), fp_data.prepare_settings(tiny_cfg))
    d = subject_dir(fp_data.prepared_dir(tiny_cfg), rec["subject"]["dataset"], row["subject_id"])
    subject = {**rec["subject"], "mask_nifti": str(d / "mask.nii.gz"), "slices_256_image": str(d / "slices_256_image.npy"),
               "slices_256_mask": str(d / "slices_256_mask.npy")}
    slices = pd.DataFrame(rec["slices"])
    # every third sagittal slice through the vertebral bodies: 18-20 slices, about 25 s on 2 cores
    slices = slices.iloc[::3]
    model = load_model("lite_medsam", device=torch.device("cpu"))
    res, vol, stacks, t = evaluate_subject(model, "lite_medsam", slices, subject, [Condition("gt_box")], seed=0)
    slice_dice = res.groupby("slice_index")["dice"].mean()
    assert len(slice_dice) >= 15
    assert slice_dice.mean() >= 0.75, slice_dice.describe()
    assert set(res["label_name"]) == {f"vertebral_body_L{i}" for i in range(1, 6)}
    assert stacks["gt_box"].shape == (len(slices), 224, 224)


# ------------------------------------------------------- aggregation: the study's dataset Dice
THIGH = "Thigh_2D_T1ax_Clinical_Anatomical_50"


def test_dataset_dice_is_the_mean_of_tissue_means_published_thigh():
    """Table 1's published thigh labels (tier 3), mapped to tissue classes by the catalog, give
    the published tissue values (tier 2) and dataset values (tiers 1 and 3)."""
    from mskseg_lib.data.catalog import get_dataset
    from mskseg_lib.reference import published_table1, published_table1_labels, published_table1_tissues

    tissue_of = {lab.name: lab.tissue_class for lab in get_dataset(THIGH).labels}
    labels = published_table1_labels()
    zs = labels[(labels.dataset == THIGH) & (labels.setting == "zero-shot") & (labels.label_name != "mean_tissue")]
    zs = zs.assign(tissue_class=zs.label_name.map(tissue_of))
    assert zs.tissue_class.notna().all() and len(zs) == 3 * 9
    mean = aggregate.mean_tissue_dice(zs, ["dataset", "model_key"]).set_index("model_key")
    assert mean["dice"].round(4).to_dict() == {"sam_vit_b": 0.8311, "sam2_hiera_base_plus": 0.8425,
                                               "medsam_vit_b": 0.5804}
    assert (mean["n_tissues"] == 4).all() and (mean["n_labels"] == 9).all()
    tier1 = published_table1().query("dataset == @THIGH and setting == 'zero-shot'").set_index("model_key")["dice"]
    assert dict(tier1) == {"sam_vit_b": 0.83106, "sam2_hiera_base_plus": 0.84252, "medsam_vit_b": 0.58037}
    assert (mean["dice"] - tier1).abs().max() < 1e-4  # labels are printed to 4 decimals
    tissues = aggregate.tissue_dice(zs, ["dataset", "model_key"]).set_index(["model_key", "tissue_class"])["dice"]
    tier2 = published_table1_tissues().query("dataset == @THIGH and experiment != 'mskSAM2' and "
                                             "tissue_class != 'mean_tissue'").set_index(["model_key", "tissue_class"])["dice"]
    assert tissues.loc[("sam_vit_b", "muscle")] == pytest.approx(0.90313, abs=1e-4)  # five muscle groups
    assert (tissues.reindex(tier2.index) - tier2).abs().max() < 1e-4
    # the label-balanced mean (every label counts once) is not the published value
    assert zs[zs.model_key == "sam_vit_b"].dice.mean() == pytest.approx(0.866, abs=1e-3)


def _phantom_slices() -> tuple[pd.DataFrame, pd.DataFrame]:
    """One arm, two subjects. Bone: subject a 3 slices at 0.9, subject b 1 slice at 0.3 (absent
    on b's second slice). Muscle: a 0.5 on one slice, b 0.7 and 0.6."""
    rows = [("a", 0, 1, 0.9), ("a", 1, 1, 0.9), ("a", 2, 1, 0.9), ("b", 0, 1, 0.3), ("b", 1, 1, np.nan),
            ("a", 0, 2, 0.5), ("b", 0, 2, 0.7), ("b", 1, 2, 0.6)]
    names = {1: ("femur", "bone"), 2: ("quadriceps", "muscle")}
    slices = pd.DataFrame([{"model_key": "m", "model": "M", "condition": "gt_box", "dataset": HIP,
                            "subject_id": s, "slice_index": k, "label_value": v, "label_name": names[v][0],
                            "tissue_class": names[v][1], "dice": d, "iou": d / 2} for s, k, v, d in rows])
    volumes = pd.DataFrame([{"model_key": "m", "model": "M", "condition": "gt_box", "dataset": HIP,
                             "subject_id": s, "label_value": v, "dice_3d": 0.8} for s in "ab" for v in (1, 2)])
    return slices, volumes


def test_label_dice_readings_pooled_slices_vs_per_subject_on_a_phantom():
    slices, volumes = _phantom_slices()
    keys = ["model_key", "condition", "dataset"]
    pooled = aggregate.label_dice(slices, keys, "pooled_slices").set_index("label_name")
    per_subject = aggregate.label_dice(slices, keys, "per_subject").set_index("label_name")
    assert pooled.loc["femur", "dice"] == pytest.approx((3 * 0.9 + 0.3) / 4)  # 0.75: slices pooled
    assert per_subject.loc["femur", "dice"] == pytest.approx((0.9 + 0.3) / 2)  # 0.6: subjects first
    assert pooled.loc["quadriceps", "dice"] == pytest.approx(0.6)
    assert per_subject.loc["quadriceps", "dice"] == pytest.approx((0.5 + 0.65) / 2)
    assert pooled.loc["femur", "n_slices"] == 4 and pooled.loc["femur", "n_subjects"] == 2
    subj = aggregate.subject_table(slices, volumes)
    # the two readings of "subject mean Dice": slices first (a: 0.8333, b: 0.55) or labels first,
    # as the study code's per-volume export (a: femur 0.9, quadriceps 0.5 -> 0.7; b: 0.3, 0.65 -> 0.475)
    by = subj.set_index("subject_id")
    assert by.loc["a", "dice_mean_slice"] == pytest.approx((0.7 + 0.9 + 0.9) / 3)
    assert by.loc["b", "dice_mean_slice"] == pytest.approx(0.55)
    assert by.loc["a", "dice_mean_label"] == pytest.approx(0.7) and by.loc["b", "dice_mean_label"] == pytest.approx(0.475)
    ds = aggregate.dataset_table(subj, slices).iloc[0]
    assert ds["dice_mean_tissue"] == pytest.approx((0.75 + 0.6) / 2)  # 0.675, the study's reading
    assert ds["dice_mean_tissue_per_subject"] == pytest.approx((0.6 + 0.575) / 2)  # 0.5875, the variant
    # slice-mean subject Dice: a = mean(0.7, 0.9, 0.9), b = mean(0.5, 0.6)
    assert ds["subject_dice_mean"] == pytest.approx(((0.7 + 0.9 + 0.9) / 3 + 0.55) / 2)
    assert ds["iou_mean_tissue"] == pytest.approx(0.675 / 2) and ds["n_tissues"] == 2
    labels = aggregate.grouped_table(slices, "label_name").set_index("label_name")
    assert labels.loc["femur", "dice_mean"] == pytest.approx(0.75)
    assert labels.loc["femur", "dice_mean_per_subject"] == pytest.approx(0.6)
    assert labels.loc["femur", "dice_sd_subjects"] == pytest.approx(np.std([0.9, 0.3], ddof=1))
    tissues = aggregate.grouped_table(slices, "tissue_class").set_index("tissue_class")
    assert tissues.loc["bone", "dice_mean"] == pytest.approx(0.75) and tissues.loc["muscle", "n_subjects"] == 2
    with pytest.raises(ValueError, match="level"):
        aggregate.label_dice(slices, keys, "volume")  # type: ignore[arg-type]


def test_table_s3_puts_published_values_beside_regenerated_ones():
    from mskseg_lib.evaluation.report import PUBLISHED_PREFIX, table_s3
    from mskseg_lib.reference import published_table1

    pub = published_table1()
    assert len(pub) == 12 * 3 * 2
    knee = pub[(pub.dataset == "Knee_3D_DESS_Research_Anatomical_86") & (pub.setting == "zero-shot")]
    assert dict(zip(knee.model, knee.dice)) == {"SAM ViT-B": 0.61008, "SAM2 hiera-b+": 0.62420, "MedSAM ViT-B": 0.48823}
    ds = pd.DataFrame({"dataset": ["Knee_3D_DESS_Research_Anatomical_86", "RealSpine_MyoSegmenTUM_VB_8",
                                   "Knee_3D_DESS_Research_Anatomical_86", "Spine_2D_T1ax_Clinical_Anatomical_59"],
                       "model": ["LiteMedSAM", "LiteMedSAM", "LiteMedSAM", "LiteMedSAM"],
                       "condition": ["gt_box", "gt_box", "shift_5px", "gt_box"],
                       "dice_mean_tissue": [0.5, 0.8, 0.1, 0.4], "dice_mean_tissue_per_subject": [0.45, 0.8, 0.1, 0.4],
                       "subject_dice_mean": [0.52, 0.8, 0.1, 0.4], "subject_dice_sd": [0.1, np.nan, 0.1, 0.1],
                       "n_subjects": [3, 1, 3, 2]})
    s3 = table_s3(ds).set_index("dataset")
    knee = s3.loc["Knee_3D_DESS_Research_Anatomical_86"]
    assert knee["LiteMedSAM · mean tissue"] == 0.5  # the exact-box arm only; shifted boxes are elsewhere
    assert knee["LiteMedSAM · mean tissue (per_subject)"] == 0.45
    assert knee["LiteMedSAM · subject mean ± SD (n)"] == "0.520 ± 0.100 (n=3)"
    assert knee[PUBLISHED_PREFIX + "SAM ViT-B"] == 0.61008
    assert s3.loc["RealSpine_MyoSegmenTUM_VB_8", "published_note"] == "not in the study"
    assert "copy error" in s3.loc["Spine_2D_T1ax_Clinical_Anatomical_59", "published_note"]
    assert not any("shift_5px" in c for c in s3.columns)


def _study_subjects(models: list[tuple[str, str]], conditions=("gt_box", "shift_5px", "shift_10px"),
                    n: int = 10, seed: int = 0) -> pd.DataFrame:
    """Subject Dice of the given (model_key, model) arms on two datasets; MedSAM 0.15 lower."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in (HIP, THIGH):
        for i in range(n):
            base = rng.uniform(0.6, 0.8)
            for key, model in models:
                for j, cond in enumerate(conditions):
                    drop = 0.15 if key == "medsam_vit_b" else 0.0
                    rows.append({"model_key": key, "model": model, "condition": cond, "dataset": dataset,
                                 "subject_id": f"s{i}", "dice_mean_slice": base - drop - 0.05 * j + rng.normal(0, 0.01)})
    return aggregate.add_arm(pd.DataFrame(rows))


STUDY = [("sam_vit_b", "SAM ViT-B"), ("sam2_hiera_base_plus", "SAM2 hiera-b+"), ("medsam_vit_b", "MedSAM ViT-B")]


def test_study_friedman_compares_exactly_the_three_study_models_with_exact_boxes():
    from scipy import stats

    from mskseg_lib.evaluation import report
    from mskseg_lib.stats import zero_shot_tests

    subj = _study_subjects([*STUDY, ("lite_medsam", "LiteMedSAM")])
    fr = zero_shot_tests.study_friedman(subj).set_index("dataset")
    assert fr["arms"].unique().tolist() == ["SAM ViT-B,SAM2 hiera-b+,MedSAM ViT-B"]  # never LiteMedSAM
    hip = subj[(subj.dataset == HIP) & (subj.condition == "gt_box") & (subj.model_key != "lite_medsam")]
    wide = hip.pivot(index="subject_id", columns="model", values="dice_mean_slice")
    assert fr.loc[HIP, "p_value"] == pytest.approx(stats.friedmanchisquare(*wide.to_numpy().T).pvalue)
    wx = zero_shot_tests.study_wilcoxon(subj, fr.reset_index())
    assert len(wx) == 2 * 3 and wx["gate_passed"].all()
    sam_med = wx[(wx.dataset == HIP) & (wx.arm_a == "SAM ViT-B") & (wx.arm_b == "MedSAM ViT-B")].iloc[0]
    assert sam_med["p_value"] == pytest.approx(stats.wilcoxon(wide["SAM ViT-B"], wide["MedSAM ViT-B"]).pvalue)
    s4, s5 = report.table_s4(fr.reset_index()), report.table_s5(wx)
    assert np.isnan(s4.set_index("dataset").loc[HIP, "published_p"])  # the study prints no hip p
    assert {"variant_raw_gate_p_value", "variant_bh_all_pairs_p_bh", "p_bh_within_dataset"} <= set(s5.columns)
    # the extra analyses: LiteMedSAM with the study's models, and each model's prompt conditions
    fr_x, wx_x = zero_shot_tests.extra_tests(subj, ["gt_box", "shift_5px", "shift_10px"])
    both = fr_x[fr_x.analysis == "all models · gt_box"]
    assert both["n_arms"].tolist() == [4, 4]
    lite = fr_x[fr_x.analysis == "prompt conditions · LiteMedSAM"].set_index("dataset")
    sub = subj[(subj.dataset == THIGH) & (subj.model_key == "lite_medsam")]
    w = sub.pivot(index="subject_id", columns="condition", values="dice_mean_slice")
    assert lite.loc[THIGH, "p_value"] == pytest.approx(stats.friedmanchisquare(*w.to_numpy().T).pvalue)
    assert set(wx_x["analysis"]) == set(fr_x["analysis"])


def test_study_tests_say_which_models_ran_and_why_not():
    from mskseg_lib.evaluation import report
    from mskseg_lib.stats import zero_shot_tests

    subj = _study_subjects([("lite_medsam", "LiteMedSAM")])
    models = pd.DataFrame({"model_key": ["lite_medsam", "sam_vit_b", "medsam_vit_b", "sam2_hiera_base_plus"],
                           "model": ["LiteMedSAM", "SAM ViT-B", "MedSAM ViT-B", "SAM2 hiera-b+"],
                           "status": ["available"] + ["not run: checkpoint missing"] * 3})
    fr = zero_shot_tests.study_friedman(subj, models)
    assert fr["dataset"].tolist() == [HIP, THIGH] and fr["p_value"].isna().all()
    note = fr["note"].iloc[0]
    assert "SAM ViT-B: not run: checkpoint missing" in note and "ran: LiteMedSAM" in note
    s4 = report.table_s4(fr)
    assert len(s4) == 2 and s4["note"].str.startswith("not run").all()
    s5 = report.table_s5(zero_shot_tests.study_wilcoxon(subj, fr))
    assert len(s5) == 2 * 3 and s5["p_value"].isna().all() and s5["note"].str.contains("checkpoint missing").all()
    fr_x, _ = zero_shot_tests.extra_tests(subj, ["gt_box", "shift_5px", "shift_10px"])
    assert fr_x.loc[fr_x.analysis == "prompt conditions · LiteMedSAM", "p_value"].notna().all()
    lone = fr_x[fr_x.analysis == "all models · gt_box"]
    assert len(lone) == 1 and lone["note"].iloc[0].startswith("not run: needs >= 3 models")
    assert report.exact_condition([{"name": "shift_5", "shift_grid_px": 5}, {"name": "exact", "shift_grid_px": 0}]) == "exact"


def test_whole_volume_prediction_lines_up_with_the_mask_and_the_engines_3d_dice(hip_cfg):
    """Every labelled slice is predicted and put back on the mask's grid: Dice computed on the
    reassembled NIfTI equals the engine's own 3D Dice (a wrong axis or rotation would not)."""
    import nibabel as nib

    from mskseg_lib.evaluation.volumes import assemble_volume, predict_volumes, write_volume
    from mskseg_lib.from_profile.zero_shot import volume_inputs

    model = BoxFiller()
    run = predict_volumes(model_key="filler", datasets=[HIP], split="all", max_subjects_per_dataset=1,
                          model_loader=lambda key: model, progress=False, **volume_inputs(hip_cfg, "volumes"))
    subjects, slices = load_tables(fp_data.prepared_dir(hip_cfg))
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
