"""Finetuning engine: samples, grid, training on CPU (single process and torchrun/gloo), resume,
checkpoints and scoring of the finetuned model. Tiny randomly initialised SAM (128 px input,
32 px low-resolution logits; the tests train on a 64 px mask grid)."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from subprocess_env import pythonpath

from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation.zero_shot import RunMismatch
from mskseg_lib.finetuning.engine import SegLoss, hard_dice, train_run
from mskseg_lib.finetuning.grid import HELD_OUT, MIXES, Experiment, GridError, experiments_frame, make_experiment
from mskseg_lib.finetuning.network import BoxPromptNet
from mskseg_lib.finetuning.runner import run_grid
from mskseg_lib.finetuning.samples import BoxSampleDataset, build_samples, choose_subjects, spread_slices
from mskseg_lib.finetuning.settings import SettingsError, TrainSettings
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile import finetune as fp_ft
from mskseg_lib.from_profile.models import model_settings
from mskseg_lib.from_profile.zero_shot import preparation
from mskseg_lib.models.checkpoints import load_weights
from mskseg_lib.models.zoo import build_tiny

HIP = "Hip_3D_CUBE_Research_Anatomical_42"
SPINE = "Spine_2D_T2ax_Clinical_Anatomical_38"
T1AX = "Spine_2D_T1ax_Clinical_Anatomical_59"  # every label multi-instance (paired muscles)
THIGH = "Thigh_2D_T1ax_Clinical_Anatomical_50"  # no multi-instance label
GRID = 64  # the tests' mask grid: the tiny model's 128 px input / 2
ROOT = Path(__file__).resolve().parents[1]


def tiny_factory(key: str = "lite_medsam", device: torch.device | str = "cpu"):
    return build_tiny("medsam", device, seed=0)


@pytest.fixture(scope="module")
def ft_cfg(tmp_path_factory) -> dict:
    """Hip + spine T2ax, 5 subjects each, prepared at the tiny model's 128 px."""
    from mskseg_lib.config import load_profile

    tmp = tmp_path_factory.mktemp("ft")
    cfg = copy.deepcopy(load_profile("fixture"))
    cfg["paths"] = {k: str(tmp / k) for k in cfg["paths"]}
    cfg["cohort"].update(datasets=[HIP, SPINE], subjects_per_dataset=5)
    cfg["prepare"].update(slice_sizes_px=[128], yolo_export=False)
    cfg["models"]["cpu_threads"] = 1
    t = cfg["finetune"]["training"]
    # 12 hip samples: 6 micro-batches of 2, accumulated 4 + 2 (the partial last window is kept)
    t.update(lr=3e-3, max_epochs=3, max_samples_per_epoch=0, max_slices_per_subject=4, val_max_samples=0,
             grad_accum_steps=4, overrides={}, mask_grid_px=GRID)
    cfg["finetune"]["evaluation"].update(max_subjects_per_dataset=1, max_slices_per_subject=2)
    fp_data.prepare(cfg, progress=False)
    return cfg


def train(cfg: dict, exp: Experiment, run_dir: Path, **settings) -> dict:
    """``train_run`` with the profile's arguments (``settings`` replace training settings)."""
    base = fp_ft.train_settings(cfg)
    return train_run(exp, prepared_dir=fp_data.prepared_dir(cfg), run_dir=run_dir,
                     settings=dataclasses.replace(base, **settings), models=model_settings(cfg),
                     preparation=preparation(cfg), segmenter_factory=tiny_factory, progress=False)


def _experiment(strategy: str = "partial", shift: int = 0, n: str = "all", datasets=(HIP,)) -> Experiment:
    return Experiment(task=datasets[0], mix_kind="single", train_datasets=tuple(datasets),
                      eval_datasets=tuple(datasets), model_key="lite_medsam", strategy=strategy,
                      box_shift_grid_px=shift, train_subjects=n, groups=("size",))


# ----------------------------------------------------------------------------- grid
def test_grid_crosses_lists_shares_identical_runs_and_holds_out_undersampled_knee(ft_cfg):
    cfg = copy.deepcopy(ft_cfg)
    prepared = [HIP, SPINE, HELD_OUT, *MIXES["knee"]]
    cfg["finetune"]["experiments"] = [
        {"group": "size", "train_on": [HIP], "train_subjects": [2, "all"]},
        {"group": "strategy", "train_on": [HIP], "strategy": ["partial", "full"], "box_shift_grid_px": [0, 20]},
        {"group": "mixing", "train_on": ["knee", "all_msk"], "evaluate_on": [MIXES["knee"][2]]},
        {"group": "initial_weights", "train_on": ["all_msk"]},
    ]
    exps = fp_ft.grid_experiments(cfg, prepared)
    ids = [e.run_id(1) for e in exps]
    assert len(ids) == len(set(ids)) == 2 + 3 + 2  # the hip n=all frozen shift-0 run is shared
    shared = next(e for e in exps if e.task == HIP and e.train_subjects == "all" and e.strategy == "partial"
                  and e.box_shift_grid_px == 0)
    assert shared.groups == ("size", "strategy")
    knee = next(e for e in exps if e.task == "knee")
    assert knee.mix_kind == "anatomy" and knee.train_datasets == MIXES["knee"]
    assert knee.eval_datasets == (MIXES["knee"][2],)
    allmsk = next(e for e in exps if e.task == "all_msk")
    assert HELD_OUT not in allmsk.train_datasets and HELD_OUT in allmsk.eval_datasets
    assert set(allmsk.eval_datasets) == set(prepared)  # initial_weights asks for every dataset
    assert shared.run_id(1) == f"{HIP}/lite_medsam-frozen-gridshift0-nall/Run_1"
    assert not any(e.table1_arm for e in exps)  # initial_weights here is partial (the default strategy)


@pytest.mark.parametrize("entry, message", [
    ({"group": "size", "train_on": ["Nope"]}, "unknown dataset"),
    ({"group": "sizes", "train_on": [HIP]}, "group must be one of"),
    ({"group": "size", "train_on": [HIP], "strategy": "half"}, "strategy must be one of"),
    ({"group": "size", "train_on": [HIP], "train_subjects": 0}, "positive integer"),
    ({"group": "size", "train_on": [HIP], "epochs": 3}, "unknown keys"),
    ({"group": "size", "train_on": [HIP], "box_shift_px": 20}, "renamed 'box_shift_grid_px'"),
    ({"group": "size", "train_on": [HIP], "box_shift_grid_px": 2.5}, "integer >= 0"),
    ({"group": "initial_weights", "train_on": [HIP, "all_msk"], "strategy": "full"}, "one such arm per model"),
])
def test_grid_rejects_bad_entries_with_the_entry_named(ft_cfg, entry, message):
    cfg = copy.deepcopy(ft_cfg)
    cfg["finetune"]["experiments"] = [entry]
    with pytest.raises((GridError, KeyError), match=message):
        fp_ft.grid_experiments(cfg, [HIP])


@pytest.mark.parametrize("profile", ["fixture", "default", "paper"])
def test_every_profile_trains_table1_full_arm_and_a_partial_arm_per_initial_model(profile):
    """Table 1's finetuned column is the study's mskSAM: all MSK data (CI: the knee mix), encoder
    and decoder trained, no box shift, every subject; exactly one such arm per initial model,
    flagged ``table1_arm`` in the record, beside a partial (frozen-encoder) arm (S9)."""
    from mskseg_lib.config import load_profile
    from mskseg_lib.data.catalog import DATASETS

    cfg = load_profile(profile)
    exps = fp_ft.grid_experiments(cfg, sorted(DATASETS))
    weights = [e for e in exps if "initial_weights" in e.groups]
    models = {e.model_key for e in weights}
    assert len(models) >= 2
    task = "knee" if profile == "fixture" else "all_msk"
    for model in models:
        arms = [e for e in weights if e.model_key == model and e.table1_arm]
        assert len(arms) == 1, (model, arms)
        arm = arms[0]
        assert (arm.task, arm.strategy, arm.box_shift_grid_px, arm.train_subjects) == (task, "full", 0, "all")
        assert HELD_OUT not in arm.train_datasets
        assert any(e.model_key == model and e.task == task and e.strategy == "partial" and e.box_shift_grid_px == 0
                   and e.train_subjects == "all" for e in weights)
    table = experiments_frame(exps)
    assert table["table1_arm"].sum() == len(models)
    assert set(table.loc[table["table1_arm"], "strategy"]) == {"full"}


def test_profile_with_the_old_box_shift_key_is_refused_with_the_new_name(tmp_path):
    from mskseg_lib.config import ProfileError, load_profile

    raw = yaml.safe_load((ROOT / "params" / "fixture.yaml").read_text())
    raw["finetune"]["defaults"]["box_shift_px"] = raw["finetune"]["defaults"].pop("box_shift_grid_px")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ProfileError, match="'finetune.defaults.box_shift_px' was renamed 'box_shift_grid_px'"):
        load_profile(path)


# ----------------------------------------------------------------------------- samples
def test_subject_choice_is_seeded_nested_and_capped(ft_cfg):
    subjects, _ = load_tables(fp_data.prepared_dir(ft_cfg))
    n_train = int(((subjects.dataset == HIP) & (subjects.split == "train")).sum())
    two = choose_subjects(subjects, [HIP], "train", 2, seed=7)
    again = choose_subjects(subjects, [HIP], "train", 2, seed=7)
    everyone = choose_subjects(subjects, [HIP], "train", "all", seed=7)
    assert list(two.subject_id) == list(again.subject_id) and len(two) == 2
    assert set(two.subject_id) <= set(choose_subjects(subjects, [HIP], "train", 3, seed=7).subject_id)
    assert len(everyone) == n_train == len(choose_subjects(subjects, [HIP], "train", 40, seed=7))


def _store(tmp_path: Path, masks: np.ndarray, dataset: str, rows_px: int | None = None,
           cols_px: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(subjects, slices) tables of one subject whose model-size slice stack is ``masks`` (N, S, S)."""
    size = masks.shape[1]
    folder = tmp_path / f"{dataset}_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "m.npy", masks.astype(np.uint8))
    np.save(folder / "i.npy", (masks * 40).astype(np.uint8))
    subjects = pd.DataFrame([{"dataset": dataset, "subject_id": "s", "split": "train",
                              f"slices_{size}_image": str(folder / "i.npy"), f"slices_{size}_mask": str(folder / "m.npy")}])
    slices = pd.DataFrame([{"dataset": dataset, "subject_id": "s", "slice_index": k, "store_index": k,
                            "rows_px": rows_px or size, "cols_px": cols_px or size, "resize_mode": "stretch"}
                           for k in range(len(masks))])
    return subjects, slices


def _dataset(tmp_path, masks, dataset, grid, shift=0, seed=0) -> BoxSampleDataset:
    subjects, slices = _store(tmp_path, masks, dataset)
    return BoxSampleDataset(build_samples(subjects, slices, 0, masks.shape[1], grid), masks.shape[1], grid, shift, seed)


def test_one_sample_per_slice_and_every_label_of_a_slice_is_drawn_uniformly(tmp_path, ft_cfg):
    """Slice 0 has labels 1, 2, 3; slice 1 only label 4; slice 2 none (not a sample). Over 900
    epochs slice 0 draws each label about 300 times (within 4.5 binomial SDs), its target is that
    label's whole mask on the grid and the box is that mask's tight box."""
    masks = np.zeros((3, GRID, GRID), np.uint8)
    masks[0, 5:15, 5:20] = 1
    masks[0, 30:40, 10:30] = 2
    masks[0, 45:60, 40:60] = 3
    masks[1, 20:30, 20:30] = 4
    ds = _dataset(tmp_path, masks, THIGH, GRID)
    assert len(ds) == 2 and list(ds.samples["labels"]) == [[1, 2, 3], [4]]
    counts = {1: 0, 2: 0, 3: 0}
    n = 900
    for epoch in range(n):
        ds.set_epoch(epoch)
        item = ds[0]
        counts[item["label"]] += 1
        target = item["target"].numpy().astype(bool)
        assert target.shape == (GRID, GRID) and np.array_equal(target, masks[0] == item["label"])
        ys, xs = np.nonzero(target)
        assert item["box"].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]  # grid = input: x1
        assert ds[1]["label"] == 4
    sd = np.sqrt(n * (1 / 3) * (2 / 3))
    assert all(abs(c - n / 3) < 4.5 * sd for c in counts.values()), counts
    # prepared data: as many samples as training slices (one per slice, not one per box)
    subjects, slices = load_tables(fp_data.prepared_dir(ft_cfg))
    chosen = choose_subjects(subjects, [SPINE], "train", "all", 0)
    picked = spread_slices(slices[slices["subject_id"].isin(chosen["subject_id"]) & (slices["dataset"] == SPINE)], 2)
    samples = build_samples(chosen, slices, 2, 128, GRID)
    assert len(samples) == len(picked)
    assert [sorted(v) for v in samples["labels"]] == [sorted(json.loads(v)) for v in picked["labels_present"]]


def test_multi_instance_label_yields_one_piece_and_its_target_is_that_piece(tmp_path):
    """Left and right psoas (label 3 of T1ax, multi-instance): a draw of label 3 targets one side
    only, with that side's box; both sides come up over epochs. The same two blobs of a thigh
    label (single-instance) are one target."""
    masks = np.zeros((1, GRID, GRID), np.uint8)
    masks[0, 20:30, 5:15] = 3
    masks[0, 22:34, 40:52] = 3
    left, right = np.zeros((GRID, GRID), bool), np.zeros((GRID, GRID), bool)
    left[20:30, 5:15] = True
    right[22:34, 40:52] = True
    ds = _dataset(tmp_path, masks, T1AX, GRID)
    seen = set()
    for epoch in range(60):
        ds.set_epoch(epoch)
        item = ds[0]
        target = item["target"].numpy().astype(bool)
        side = "left" if np.array_equal(target, left) else "right" if np.array_equal(target, right) else None
        assert side is not None  # one piece, never both, never a part
        seen.add(side)
        assert item["box"].tolist() == ([5, 20, 14, 29] if side == "left" else [40, 22, 51, 33])
    assert seen == {"left", "right"}
    whole = _dataset(tmp_path, masks, THIGH, GRID)[0]["target"].numpy().astype(bool)
    assert np.array_equal(whole, left | right)


def test_targets_and_boxes_live_on_the_grid_and_scale_to_the_input(tmp_path):
    """One labelled slice stored at 1024 (SAM) and at 256 (LiteMedSAM), grid 256: identical
    targets of shape (256, 256), the 1024 box is 4x the 256 box (shifted or not: the draws are
    the same), and a label that vanishes on the grid (one 1024 px) is not drawn."""
    small = np.zeros((2, 256, 256), np.uint8)
    small[:, 100:140, 60:200] = 1
    small[:, 10:20, 230:250] = 2
    big = small.repeat(4, axis=1).repeat(4, axis=2)
    big[1] = 0
    big[1, 1, 1] = 5  # centre-aligned nearest neighbour reads rows/cols 2, 6, 10, ...: gone on the grid
    for shift in (0, 20):
        ds256 = _dataset(tmp_path / f"s{shift}", small, THIGH, 256, shift, seed=3)
        ds1024 = _dataset(tmp_path / f"b{shift}", big, THIGH, 256, shift, seed=3)
        assert len(ds256) == 2 and len(ds1024) == 1  # the slice whose only label vanishes is left out
        for epoch in range(20):
            ds256.set_epoch(epoch)
            ds1024.set_epoch(epoch)
            a, b = ds256[0], ds1024[0]
            assert a["target"].shape == b["target"].shape == (256, 256)
            assert a["label"] == b["label"] and torch.equal(a["target"], b["target"])
            assert torch.equal(b["box"], 4 * a["box"])
            exact = ds256.draw(0)["box_grid"]
            if shift == 0:
                assert a["box"].tolist() == exact
            else:
                assert a["box"][0] <= exact[0] and a["box"][2] >= exact[2]


def test_box_shift_is_outward_integer_on_the_grid_redrawn_each_epoch_and_reproducible(tmp_path):
    """Shift 5 on a 64 grid of a 128 px input: each side moves out by an integer 0..5 grid px
    (both ends occur), the model box is twice the grid box, a side at the border stays there;
    draws repeat for the same epoch and seed, and do not change which label is drawn."""
    masks = np.zeros((1, 128, 128), np.uint8)
    masks[0, 40:80, 0:50] = 1  # touches the left border (grid x = 0)
    masks[0, 90:110, 60:100] = 2
    shifted = _dataset(tmp_path / "a", masks, THIGH, GRID, shift=5, seed=1)
    plain = _dataset(tmp_path / "b", masks, THIGH, GRID, shift=0, seed=1)
    moves, firsts = [], []
    for epoch in range(300):
        shifted.set_epoch(epoch)
        plain.set_epoch(epoch)
        d = shifted.draw(0)
        exact, box = np.array(d["box_grid"]), np.array(d["shifted_box_grid"])
        move = np.concatenate([exact[:2] - box[:2], box[2:] - exact[2:]])
        assert np.array_equal(move, np.round(move)) and move.min() >= 0 and move.max() <= 5
        assert box.min() >= 0 and box.max() <= GRID - 1
        assert shifted[0]["box"].tolist() == (box * 2).tolist()
        assert shifted[0]["label"] == plain[0]["label"]  # separate streams: same labels with and without shift
        if d["label"] == 1:
            assert box[0] == 0
            firsts.append(move[1:])
        else:
            moves.append(move)
    moves = np.array(moves + [np.r_[0, m] for m in firsts])
    assert (np.array(moves)[:, 1:].min(axis=0) == 0).all() and (np.array(moves)[:, 1:].max(axis=0) == 5).all()
    shifted.set_epoch(7)
    again = shifted[0]["box"]
    shifted.set_epoch(8)
    other = [shifted[0]["box"]]
    shifted.set_epoch(7)
    assert torch.equal(again, shifted[0]["box"]) and not all(torch.equal(again, o) for o in other + [plain[0]["box"]])


def test_sam2_decoder_gives_the_same_logits_in_training_and_evaluation():
    seg = build_tiny("sam2")
    net = BoxPromptNet(seg, "partial")
    emb = seg.encode(np.random.default_rng(0).integers(0, 255, (1, seg.input_size_px, seg.input_size_px), np.uint8))
    box = torch.tensor([[10.0, 12.0, 60.0, 50.0]])
    with torch.no_grad():
        train_out = net.train()(box, embeddings=emb)
        eval_out = net.eval()(box, embeddings=emb)
    assert torch.allclose(train_out, eval_out, atol=1e-5)
    frozen = [n for n, p in seg.model.named_parameters() if "conv_s" in n]
    assert frozen and all(not p.requires_grad for n, p in seg.model.named_parameters() if "conv_s" in n)


def test_logits_come_out_on_the_mask_grid_as_the_decoder_gives_them():
    """The tiny SAM decodes 32 x 32 low-resolution logits for its 128 px input: on a 32 grid the
    network returns exactly those (no resizing), on a 64 grid a bilinear resize of them."""
    from mskseg_lib.models.interface import Prompts
    from mskseg_lib.models.sam_vit import prompt_tensors

    seg = tiny_factory()
    emb = seg.encode(np.random.default_rng(0).integers(0, 255, (1, 128, 128), np.uint8))
    box = torch.tensor([[10.0, 12.0, 60.0, 50.0]])
    with torch.no_grad():
        on32 = BoxPromptNet(seg, "partial", 32).eval()(box, embeddings=emb)
        on64 = BoxPromptNet(seg, "partial", 64).eval()(box, embeddings=emb)
        sparse, dense = seg.model.prompt_encoder(points=None, boxes=prompt_tensors(Prompts(boxes=box.numpy()), seg.device)[1],
                                                 masks=None)
        low, _ = seg.model.mask_decoder(image_embeddings=emb[0]["image_embed"][None],
                                        image_pe=seg.model.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                        multimask_output=False)
    assert on32.shape == (1, 32, 32) and on64.shape == (1, 64, 64)
    assert torch.equal(on32, low[:, 0].float())
    assert torch.allclose(on64, torch.nn.functional.interpolate(low, size=(64, 64), mode="bilinear",
                                                                align_corners=False)[:, 0], atol=1e-6)


def test_loss_and_dice_on_known_predictions():
    target = torch.zeros(1, 8, 8)
    target[0, :4] = 1
    perfect = (target * 2 - 1) * 50
    assert SegLoss()(perfect, target).item() == pytest.approx(0.0, abs=1e-4)
    # logits 0 (p = 0.5) on a half-filled 8 x 8 target: the study's squared Dice is
    # 1 - 2*16 / (64*0.25 + 32) = 1/3 (the plain Dice would be 1/2), BCE is ln 2, weights 0.5 each
    unsure = torch.zeros(1, 8, 8)
    assert SegLoss()(unsure, target).item() == pytest.approx(0.5 / 3 + 0.5 * np.log(2), abs=1e-5)
    half = torch.full((1, 8, 8), -50.0)
    half[0, :2] = 50  # predicts 16 of the 32 target pixels
    assert hard_dice(half, target).item() == pytest.approx(2 * 16 / (16 + 32))


# ----------------------------------------------------------------------------- training
def test_strategies_freeze_the_right_blocks():
    seg = tiny_factory()
    partial = BoxPromptNet(seg, "partial")
    parts = seg.parts()
    assert all(not p.requires_grad for p in parts["encoder"].parameters())
    assert all(p.requires_grad for p in parts["mask_decoder"].parameters())
    assert all(not p.requires_grad for p in parts["prompt_encoder"].parameters())
    full = BoxPromptNet(tiny_factory(), "full")
    assert all(p.requires_grad for p in full.segmenter.parts()["encoder"].parameters())
    full.train()
    assert full.segmenter.parts()["encoder"].training and not full.segmenter.parts()["prompt_encoder"].training
    assert partial.train().segmenter.parts()["encoder"].training is False


@pytest.mark.parametrize("strategy", ["partial", "full"])
def test_training_loss_falls_and_checkpoints_reload(ft_cfg, tmp_path, strategy):
    run = tmp_path / "run"
    summary = train(ft_cfg, _experiment(strategy), run, max_epochs=6, grad_accum_steps=1)
    hist = json.loads((run / "history.json").read_text())
    assert summary["epochs_run"] == 6 and len(hist) == 6
    assert hist[-1]["train_loss"] < 0.8 * hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    for name in ("model_best.pt", "model_last.pt", "config.yaml", "curves.png", "manifest.json", "run.json"):
        assert (run / name).exists(), name
    state = torch.load(run / "model_last.pt", weights_only=True)
    assert not any(k.startswith(("module.", "model.")) for k in state)
    fresh = tiny_factory()
    load_weights(fresh.model, run / "model_last.pt")  # strict: every key fits the bare architecture
    trained = torch.load(run / "checkpoint_latest.pt", weights_only=False)["model"]
    key = next(k for k in state if "mask_decoder" in k)
    assert torch.equal(fresh.model.state_dict()[key], state[key])
    assert not torch.equal(tiny_factory().model.state_dict()[key], state[key])  # it did change
    encoder_key = next(k for k in state if k.startswith("image_encoder") and k.endswith("weight"))
    changed = not torch.equal(tiny_factory().model.state_dict()[encoder_key], state[encoder_key])
    assert changed == (strategy == "full")
    assert len(trained) == len(state)


def test_resumed_run_matches_an_uninterrupted_one(ft_cfg, tmp_path):
    cfg = copy.deepcopy(ft_cfg)
    cfg["finetune"]["training"]["max_epochs"] = 2
    exp = _experiment("partial", shift=10)
    straight = train(cfg, exp, tmp_path / "a")
    train(cfg, exp, tmp_path / "b", max_epochs=1)
    (tmp_path / "b" / "run.json").unlink()  # as if it had stopped after epoch 1
    resumed = train(cfg, exp, tmp_path / "b")
    assert straight["epochs_run"] == resumed["epochs_run"] == 2
    a = torch.load(tmp_path / "a" / "model_last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model_last.pt", weights_only=True)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    ha = json.loads((tmp_path / "a" / "history.json").read_text())
    hb = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["train_loss"] for h in ha] == pytest.approx([h["train_loss"] for h in hb], rel=1e-5)
    with pytest.raises(RunMismatch, match="changed: \\['lr'\\]"):
        train(cfg, exp, tmp_path / "b", lr=1e-2)
    with pytest.raises(RunMismatch, match="changed: \\['dice_weight'\\]"):  # a loss weight off the study's
        train(cfg, exp, tmp_path / "b", dice_weight=0.7)
    # a finished run made from other encoder inputs (another normalisation, other slices) is refused
    other = copy.deepcopy(cfg)
    other["models"]["input_normalisation"] = "native"
    with pytest.raises(RunMismatch, match="inputs.input_normalisation"):
        train(other, exp, tmp_path / "b")
    other = copy.deepcopy(cfg)
    other["prepare"]["resize"] = "pad"
    with pytest.raises(RunMismatch, match="inputs.resize"):
        train(other, exp, tmp_path / "b")


def test_settings_default_to_the_study_and_refuse_bad_values():
    s = TrainSettings()  # the study's Methods and code: AdamW 1e-4 / 0.01, batch 2 x 4 accumulated, clip 1
    assert (s.lr, s.weight_decay, s.batch_size, s.grad_accum_steps, s.grad_clip_norm) == (1e-4, 0.01, 2, 4, 1.0)
    assert (s.scheduler_t0, s.scheduler_t0_unit, s.min_lr, s.patience) == (10, "optimizer_steps", 1e-5, 10)
    assert (s.dice_weight, s.bce_weight, s.mask_grid_px) == (0.5, 0.5, 256)
    assert "dice_weight" not in s.training_record()  # run folders made before loss weights were settings stay valid
    assert TrainSettings(bce_weight=1.0).training_record()["bce_weight"] == 1.0
    full = TrainSettings(max_epochs=10, strategy_overrides={"full": {"max_epochs": 2}}).for_strategy("full")
    assert full.max_epochs == 2 and not full.strategy_overrides
    assert TrainSettings(max_epochs=10, strategy_overrides={"full": {"max_epochs": 2}}).for_strategy("partial").max_epochs == 10
    with pytest.raises(SettingsError, match=r"overrides.full: unknown keys \['epochs'\]"):
        TrainSettings(strategy_overrides={"full": {"epochs": 2}}).for_strategy("full")
    with pytest.raises(SettingsError, match="batch_size must be >= 1"):
        TrainSettings(batch_size=0)
    with pytest.raises(SettingsError, match="max_epochs must be >= 1.*strategy full"):
        TrainSettings(strategy_overrides={"full": {"max_epochs": 0}}).for_strategy("full")


def test_one_run_without_a_profile(ft_cfg, tmp_path):
    """What a notebook does with a handful of arguments: one experiment, the prepared folder, a
    run folder and settings; the same experiment as the grid makes for a one-entry grid."""
    exp = make_experiment(HIP, "lite_medsam", prepared=[HIP, SPINE], box_shift_grid_px=5)
    assert exp == fp_ft.grid_experiments(
        {**ft_cfg, "finetune": {**ft_cfg["finetune"], "experiments": [
            {"group": "size", "train_on": [HIP], "box_shift_grid_px": 5}]}}, [HIP, SPINE])[0]
    settings = TrainSettings(max_epochs=2, max_slices_per_subject=2, mask_grid_px=GRID, seed=3)
    summary = train_run(exp, prepared_dir=fp_data.prepared_dir(ft_cfg), run_dir=tmp_path / "mine",
                        settings=settings, segmenter_factory=tiny_factory, progress=False)
    assert summary["status"] == "finished" and summary["epochs_run"] == 2
    assert json.loads((tmp_path / "mine" / "settings.json").read_text())["settings"]["seed"] == 3
    config = yaml.safe_load((tmp_path / "mine" / "config.yaml").read_text())
    assert config["training"]["max_slices_per_subject"] == 2 and config["profile"] == {}


@pytest.mark.parametrize("unit", ["optimizer_steps", "epochs"])
def test_scheduler_period_counts_optimizer_steps_as_the_study_or_epochs_as_the_variant(ft_cfg, tmp_path, unit):
    """CosineAnnealingWarmRestarts with T_0 = 3: the learning rate each epoch starts with follows
    the cosine of (optimizer steps so far mod 3), as the study's code steps it, or of (epochs so
    far mod 3) in the labelled variant."""
    cfg = copy.deepcopy(ft_cfg)
    t = cfg["finetune"]["training"]
    t.update(max_epochs=4, scheduler_t0=3, scheduler_t0_unit=unit, scheduler_t_mult=1, lr=1e-3, min_lr=1e-5,
             early_stopping=False)
    summary = train(cfg, _experiment(), tmp_path / "r")
    hist = json.loads((tmp_path / "r" / "history.json").read_text())
    steps = int(np.ceil(np.ceil(summary["n_train_samples"] / t["batch_size"]) / t["grad_accum_steps"]))
    done = [e * (steps if unit == "optimizer_steps" else 1) for e in range(4)]
    expected = [1e-5 + (1e-3 - 1e-5) * (1 + np.cos(np.pi * (d % 3) / 3)) / 2 for d in done]
    assert [h["lr"] for h in hist] == pytest.approx(expected, rel=1e-6)
    assert steps % 3 != 1  # the two units give different schedules here


def test_early_stopping_stops_when_validation_stalls(ft_cfg, tmp_path):
    summary = train(ft_cfg, _experiment(), tmp_path / "r", max_epochs=20, lr=1e-9, patience=2, min_delta=0.5)
    # epoch 1 sets the best; no later epoch can gain 0.5 at lr 1e-9, so it stops after 1 + 2 epochs
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    assert summary["stop_reason"].startswith("early stopping")


def test_torchrun_two_processes_gloo_end_with_identical_weights(ft_cfg, tmp_path):
    cfg = copy.deepcopy(ft_cfg)
    cfg["finetune"]["training"]["max_epochs"] = 2
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "ddp_train_worker.py"), str(cfg_file), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
    summary = json.loads((out / "run" / "run.json").read_text())
    assert summary["world_size"] == 2
    hist = json.loads((out / "run" / "history.json").read_text())
    assert hist[0]["train_samples"] == summary["n_train_samples"] + summary["n_train_samples"] % 2  # both ranks counted
    fresh = tiny_factory()
    load_weights(fresh.model, out / "run" / "model_last.pt")  # stripped: loads in one process
    assert all(torch.equal(fresh.model.state_dict()[k], r0[k]) for k in r0)


def test_grid_runs_launch_torchrun_with_a_job_file(ft_cfg, tmp_path, monkeypatch):
    """``run_grid`` with ``nproc_per_node = 2`` trains through torchrun: the job file carries the
    arguments to both ranks, which train one DDP run (world size 2) and leave no job behind."""
    sys.path.insert(0, str(ROOT / "tests"))
    from ddp_train_worker import tiny_segmenter

    from mskseg_lib.finetuning.runner import grid_runs, launch_torchrun

    monkeypatch.setenv("PYTHONPATH", pythonpath(ROOT, ROOT / "tests"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    exp = _experiment()
    runs = grid_runs([exp], 1)
    root = tmp_path / "grid"
    launch_torchrun(runs, list(runs), 2, root=root, prepared_dir=fp_data.prepared_dir(ft_cfg),
                    settings=dataclasses.replace(fp_ft.train_settings(ft_cfg), max_epochs=1),
                    models=model_settings(ft_cfg), segmenter_factory=tiny_segmenter, progress=False)
    summary = json.loads((root / exp.run_id(1) / "run.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_run"] == 1
    assert not list((root / "_torchrun").iterdir())


# ----------------------------------------------------------------------------- scoring
def test_finetuned_model_is_scored_by_the_zero_shot_engine_and_beats_its_start(ft_cfg, tmp_path):
    cfg = copy.deepcopy(ft_cfg)
    cfg["paths"]["runs_dir"] = str(tmp_path / "runs")
    cfg["finetune"]["training"].update(max_epochs=30, grad_accum_steps=1)
    cfg["finetune"]["experiments"] = [{"group": "size", "train_on": [HIP]}]
    result = run_grid(**fp_ft.finetune_inputs(cfg), progress=False, segmenter_factory=tiny_factory)
    assert list(result.experiments["status"]) == ["finished"]
    subj = result.subjects
    assert set(subj["experiment_id"]) == {result.experiments["experiment_id"][0], "zero_shot:lite_medsam"}
    test_ids = set(load_tables(fp_data.prepared_dir(cfg))[0].query("split == 'test' and dataset == @HIP")["subject_id"])
    ft = subj[subj.experiment_id != "zero_shot:lite_medsam"]
    assert set(ft["subject_id"]) <= test_ids and ft["dataset"].eq(HIP).all()
    zs = subj[(subj.experiment_id == "zero_shot:lite_medsam") & (subj.dataset == HIP)]
    # a random tiny model segments nothing useful; 30 epochs on the hip teach it the femur
    assert ft["dice_mean_slice"].mean() > zs["dice_mean_slice"].mean() + 0.1
    for name in ("experiments.csv", "subject_metrics.csv", "slice_label_metrics.csv", "history.csv"):
        assert (result.root / name).exists()
    # the decoder-only finetune and the zero-shot arm share the hip test slices' embeddings
    ft_enc = json.loads((Path(result.experiments["run_dir"][0]) / "evaluation" / "manifest.json").read_text())
    zs_enc = json.loads((result.root / "_zero_shot" / "lite_medsam" / "manifest.json").read_text())
    n_ft = ft_enc["per_model"]["finetuned"]
    n_zs = zs_enc["per_model"]["lite_medsam"]
    assert n_ft["encoded_slices"] == n_ft["slices"] > 0
    assert n_zs["encoded_slices"] == n_zs["slices"] - n_ft["slices"]
    again = run_grid(**fp_ft.finetune_inputs(cfg), progress=False, segmenter_factory=tiny_factory)  # resumes: nothing retrained
    pd.testing.assert_frame_equal(again.subjects, result.subjects)


def test_cli_lists_the_grid_and_names_an_unknown_run(ft_cfg, tmp_path, capsys):
    from mskseg_lib.cli import main

    cfg = copy.deepcopy(ft_cfg)
    cfg["finetune"]["experiments"] = [{"group": "size", "train_on": [HIP], "train_subjects": [1, "all"]}]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["finetune", "--profile", str(path), "--list"]) == 0
    assert capsys.readouterr().out.split() == [f"{HIP}/lite_medsam-frozen-gridshift0-n1/Run_1",
                                               f"{HIP}/lite_medsam-frozen-gridshift0-nall/Run_1"]
    assert main(["finetune", "--profile", str(path), "--experiment", "nope/Run_1"]) != 0
    assert "unknown run id(s) ['nope/Run_1']" in capsys.readouterr().err


def test_wandb_is_optional_enabled_without_the_package_only_warns(ft_cfg, caplog, monkeypatch):
    import importlib.util

    from mskseg_lib.finetuning import run_log

    cfg = copy.deepcopy(ft_cfg)
    assert fp_ft.train_settings(cfg).wandb_project is None  # off by default
    assert run_log.wandb_logger(None, "x/Run_1", {}) is None
    cfg["finetune"]["wandb"]["enabled"] = True
    project = fp_ft.train_settings(cfg).wandb_project
    assert project == "mskseg"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with caplog.at_level("WARNING"):
        assert run_log.wandb_logger(project, "x/Run_1", {}) is None
    assert "wandb is not installed" in caplog.text


def test_frozen_encoder_training_reads_the_shared_store_lazily_and_trains_the_same(ft_cfg, tmp_path):
    """With a store folder, precomputed embeddings are per-slice files read on access (nothing
    held in memory), equal to the in-memory float16 ones; a second run encodes nothing; and a
    frozen-encoder run trained from the store ends with the same weights as one trained in memory."""
    from mskseg_lib.distributed import DistContext
    from mskseg_lib.evaluation.embedding_cache import LazyEmbeddings
    from mskseg_lib.finetuning.embeddings import precompute_embeddings
    from mskseg_lib.finetuning.engine import make_datasets

    subjects, slices = load_tables(fp_data.prepared_dir(ft_cfg))
    exp = _experiment()
    settings = dataclasses.replace(fp_ft.train_settings(ft_cfg), max_slices_per_subject=2)
    train_ds, val_ds, _ = make_datasets(subjects, slices, exp, settings, 128, 0)
    seg = tiny_factory()
    calls = []
    encode = seg.encode
    seg.encode = lambda images, hw=None: calls.append(len(images)) or encode(images, hw)
    ctx = DistContext(0, 1, 0, torch.device("cpu"), None)
    memory = precompute_embeddings(seg, "lite_medsam", [train_ds, val_ds], ctx, progress=False)
    lazy = precompute_embeddings(seg, "lite_medsam", [train_ds, val_ds], ctx, cache_dir=tmp_path / "store",
                                 progress=False)
    assert isinstance(lazy, LazyEmbeddings) and set(lazy) == set(memory)
    key = next(iter(memory))
    for name, value in memory[key].items():
        torch.testing.assert_close(lazy[key][name], value.float())
    n_encoded = sum(calls)
    again = precompute_embeddings(seg, "lite_medsam", [train_ds, val_ds], ctx, cache_dir=tmp_path / "store",
                                  progress=False)
    assert sum(calls) == n_encoded and len(again) == len(lazy)  # every slice read back, none encoded
    in_memory = train(ft_cfg, exp, tmp_path / "mem", max_epochs=1, max_slices_per_subject=2)
    from_store = train_run(exp, prepared_dir=fp_data.prepared_dir(ft_cfg), run_dir=tmp_path / "disk",
                           settings=dataclasses.replace(fp_ft.train_settings(ft_cfg), max_epochs=1,
                                                        max_slices_per_subject=2),
                           models=model_settings(ft_cfg), preparation=preparation(ft_cfg),
                           embedding_cache_dir=tmp_path / "store2", segmenter_factory=tiny_factory, progress=False)
    assert in_memory["status"] == from_store["status"] == "finished"
    a = load_weights_state(tmp_path / "mem")
    b = load_weights_state(tmp_path / "disk")
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def load_weights_state(run_dir: Path) -> dict:
    """The trained weights a run folder saved (its final checkpoint)."""
    paths = sorted(run_dir.rglob("*.pt")) + sorted(run_dir.rglob("*.pth"))
    assert paths, f"no checkpoint under {run_dir}"
    state = torch.load(paths[-1], map_location="cpu", weights_only=False)
    for key in ("model", "state_dict", "net"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def test_default_grid_gives_every_finetuning_type_what_its_mixed_model_needs():
    """Notebook 04 fits the study's model per finetuning type. On ``default`` the VIF screen keeps
    three dataset-level MRI terms (TE, flip angle, 2D/3D), so a type needs >= 5 scored datasets
    (intercept + 3 terms + 1 for the random intercept's variance), runs with and without encoder
    training and box shift, and encoder-trained runs scored on >= 2 datasets of different echo
    time (TE x strategy). Only LiteMedSAM trains on CPU (the other initial weights need checkpoints)."""
    from mskseg_lib.config import load_profile
    from mskseg_lib.data.catalog import DATASETS, get_dataset
    from mskseg_lib.stats.mixed_effects import FINETUNE_TYPE

    cfg = load_profile("default")
    exps = [e for e in fp_ft.grid_experiments(cfg, sorted(DATASETS)) if e.model_key == "lite_medsam"]
    te = {d: get_dataset(d).protocol.te_ms for d in DATASETS}
    for kind in ("single", "mixed", "all_msk"):
        mine = [e for e in exps if FINETUNE_TYPE[e.mix_kind] == kind]
        scored = {d for e in mine for d in e.eval_datasets}
        assert len(scored) >= 5, (kind, sorted(scored))
        assert {e.strategy for e in mine} == {"partial", "full"}, kind
        assert {e.box_shift_grid_px > 0 for e in mine} == {False, True}, kind
        trained_te = {te[d] for e in mine if e.strategy == "full" for d in e.eval_datasets}
        assert len(trained_te) >= 2, (kind, trained_te)
