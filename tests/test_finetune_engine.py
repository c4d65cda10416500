"""Finetuning engine: samples, grid, training on CPU (single process and torchrun/gloo), resume,
checkpoints and scoring of the finetuned model. Tiny randomly initialised SAM (128 px)."""
from __future__ import annotations

import copy
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

from mskseg_lib.data.prepare import prepare_all
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation.zero_shot import RunMismatch
from mskseg_lib.finetuning.engine import SegLoss, hard_dice, train_run
from mskseg_lib.finetuning.evaluate import evaluate_run
from mskseg_lib.finetuning.grid import HELD_OUT, MIXES, Experiment, GridError, expand_grid
from mskseg_lib.finetuning.network import BoxPromptNet
from mskseg_lib.finetuning.runner import run_grid
from mskseg_lib.finetuning.samples import BoxSampleDataset, build_samples, choose_subjects
from mskseg_lib.models.checkpoints import load_weights
from mskseg_lib.models.zoo import build_tiny

HIP = "Hip_3D_CUBE_Research_Anatomical_42"
SPINE = "Spine_2D_T2ax_Clinical_Anatomical_38"
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
             grad_accum_steps=4, overrides={})
    cfg["finetune"]["evaluation"].update(max_subjects_per_dataset=1, max_slices_per_subject=2)
    prepare_all(cfg, progress=False)
    return cfg


def _experiment(strategy: str = "partial", shift: int = 0, n: str = "all", datasets=(HIP,)) -> Experiment:
    return Experiment(task=datasets[0], mix_kind="single", train_datasets=tuple(datasets),
                      eval_datasets=tuple(datasets), model_key="lite_medsam", strategy=strategy,
                      box_shift_px=shift, train_subjects=n, groups=("size",))


# ----------------------------------------------------------------------------- grid
def test_grid_crosses_lists_shares_identical_runs_and_holds_out_undersampled_knee(ft_cfg):
    cfg = copy.deepcopy(ft_cfg)
    prepared = [HIP, SPINE, HELD_OUT, *MIXES["knee"]]
    cfg["finetune"]["experiments"] = [
        {"group": "size", "train_on": [HIP], "train_subjects": [2, "all"]},
        {"group": "strategy", "train_on": [HIP], "strategy": ["partial", "full"], "box_shift_px": [0, 20]},
        {"group": "mixing", "train_on": ["knee", "all_msk"], "evaluate_on": [MIXES["knee"][2]]},
        {"group": "initial_weights", "train_on": ["all_msk"]},
    ]
    exps = expand_grid(cfg, prepared)
    ids = [e.run_id(1) for e in exps]
    assert len(ids) == len(set(ids)) == 2 + 3 + 2  # the hip n=all frozen shift-0 run is shared
    shared = next(e for e in exps if e.task == HIP and e.train_subjects == "all" and e.strategy == "partial"
                  and e.box_shift_px == 0)
    assert shared.groups == ("size", "strategy")
    knee = next(e for e in exps if e.task == "knee")
    assert knee.mix_kind == "anatomy" and knee.train_datasets == MIXES["knee"]
    assert knee.eval_datasets == (MIXES["knee"][2],)
    allmsk = next(e for e in exps if e.task == "all_msk")
    assert HELD_OUT not in allmsk.train_datasets and HELD_OUT in allmsk.eval_datasets
    assert set(allmsk.eval_datasets) == set(prepared)  # initial_weights asks for every dataset
    assert shared.run_id(1) == f"{HIP}/lite_medsam-frozen-shift0-nall/Run_1"


@pytest.mark.parametrize("entry, message", [
    ({"group": "size", "train_on": ["Nope"]}, "unknown dataset"),
    ({"group": "sizes", "train_on": [HIP]}, "group must be one of"),
    ({"group": "size", "train_on": [HIP], "strategy": "half"}, "strategy must be one of"),
    ({"group": "size", "train_on": [HIP], "train_subjects": 0}, "positive integer"),
    ({"group": "size", "train_on": [HIP], "epochs": 3}, "unknown keys"),
])
def test_grid_rejects_bad_entries_with_the_entry_named(ft_cfg, entry, message):
    cfg = copy.deepcopy(ft_cfg)
    cfg["finetune"]["experiments"] = [entry]
    with pytest.raises((GridError, KeyError), match=message):
        expand_grid(cfg, [HIP])


# ----------------------------------------------------------------------------- samples
def test_subject_choice_is_seeded_nested_and_capped(ft_cfg):
    subjects, _ = load_tables(ft_cfg)
    n_train = int(((subjects.dataset == HIP) & (subjects.split == "train")).sum())
    two = choose_subjects(subjects, [HIP], "train", 2, seed=7)
    again = choose_subjects(subjects, [HIP], "train", 2, seed=7)
    everyone = choose_subjects(subjects, [HIP], "train", "all", seed=7)
    assert list(two.subject_id) == list(again.subject_id) and len(two) == 2
    assert set(two.subject_id) <= set(choose_subjects(subjects, [HIP], "train", 3, seed=7).subject_id)
    assert len(everyone) == n_train == len(choose_subjects(subjects, [HIP], "train", 40, seed=7))


def test_multi_instance_target_is_the_piece_inside_its_own_box(tmp_path):
    """Two blobs of one multi-instance label: a box around the left blob asks for the left blob."""
    size = 64
    mask = np.zeros((1, size, size), np.uint8)
    mask[0, 10:20, 5:15] = 3
    mask[0, 10:20, 40:50] = 3
    image = (mask * 60).astype(np.uint8)
    np.save(tmp_path / "m.npy", mask)
    np.save(tmp_path / "i.npy", image)
    samples = pd.DataFrame([{"dataset": SPINE, "subject_id": "s", "slice_index": 0, "store_index": 0, "rows_px": size,
                             "cols_px": size, "label": 3, "instance": 0, "box_px": [5, 10, 14, 19], "multi_instance": True,
                             "image_path": str(tmp_path / "i.npy"), "mask_path": str(tmp_path / "m.npy")}])
    item = BoxSampleDataset(samples, size)[0]
    target = item["target"].numpy().astype(bool)
    assert target.sum() == 100 and target[10:20, 5:15].all() and not target[:, 30:].any()
    assert item["box"].tolist() == [5, 10, 14, 19]


def test_upscaled_piece_keeps_every_model_pixel_of_its_original_pixels(tmp_path):
    """32 px slice -> 128 px model input (x4): the left piece's mask after nearest resizing is
    the target in full (its right and bottom edges included), the right piece is excluded."""
    from mskseg_lib.data.preprocess import resize_slice

    original = np.zeros((32, 32), np.uint8)
    original[10:20, 5:15] = 3
    original[10:20, 20:28] = 3
    mask = resize_slice(original, 128, is_mask=True)[None]
    np.save(tmp_path / "m.npy", mask)
    np.save(tmp_path / "i.npy", mask * 60)
    row = {"dataset": SPINE, "subject_id": "s", "slice_index": 0, "store_index": 0, "rows_px": 32, "cols_px": 32,
           "label": 3, "instance": 0, "box_px": [5, 10, 14, 19], "multi_instance": True,
           "image_path": str(tmp_path / "i.npy"), "mask_path": str(tmp_path / "m.npy")}
    target = BoxSampleDataset(pd.DataFrame([row]), 128)[0]["target"].numpy().astype(bool)
    left = np.zeros_like(target)
    left[:, :72] = mask[0, :, :72] == 3
    assert target.sum() == left.sum() == 40 * 40 and np.array_equal(target, left)
    whole = BoxSampleDataset(pd.DataFrame([{**row, "multi_instance": False}]), 128)[0]["target"].numpy()
    assert whole.sum() == (mask[0] == 3).sum()  # a single-instance label keeps its whole mask


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


def test_box_shift_is_bounded_and_redrawn_each_epoch_but_reproducible(ft_cfg):
    subjects, slices = load_tables(ft_cfg)
    chosen = choose_subjects(subjects, [HIP], "train", "all", 0)
    samples = build_samples(chosen, slices, 2, 128)
    ds = BoxSampleDataset(samples, 128, box_shift_px=20, seed=1)
    exact = np.array(samples["box_px"].tolist())
    ds.set_epoch(0)
    e0 = np.array([ds.box_px(i) for i in range(len(ds))])
    ds.set_epoch(1)
    e1 = np.array([ds.box_px(i) for i in range(len(ds))])
    ds.set_epoch(0)
    assert np.array_equal(e0, [ds.box_px(i) for i in range(len(ds))])
    assert not np.array_equal(e0, e1) and not np.array_equal(e0, exact)
    assert np.abs(e0 - exact).max() <= 21  # 20 px plus rounding


def test_loss_and_dice_on_known_predictions():
    target = torch.zeros(1, 8, 8)
    target[0, :4] = 1
    perfect = (target * 2 - 1) * 50
    assert SegLoss()(perfect, target).item() == pytest.approx(0.0, abs=1e-4)
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
    cfg = copy.deepcopy(ft_cfg)
    cfg["finetune"]["training"].update(max_epochs=6, grad_accum_steps=1)
    run = tmp_path / "run"
    summary = train_run(cfg, _experiment(strategy), 1, run_dir=run, segmenter_factory=tiny_factory, progress=False)
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
    straight = train_run(cfg, exp, 1, run_dir=tmp_path / "a", segmenter_factory=tiny_factory, progress=False)
    one = copy.deepcopy(cfg)
    one["finetune"]["training"]["max_epochs"] = 1
    train_run(one, exp, 1, run_dir=tmp_path / "b", segmenter_factory=tiny_factory, progress=False)
    (tmp_path / "b" / "run.json").unlink()  # as if it had stopped after epoch 1
    resumed = train_run(cfg, exp, 1, run_dir=tmp_path / "b", segmenter_factory=tiny_factory, progress=False)
    assert straight["epochs_run"] == resumed["epochs_run"] == 2
    a = torch.load(tmp_path / "a" / "model_last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model_last.pt", weights_only=True)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    ha = json.loads((tmp_path / "a" / "history.json").read_text())
    hb = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["train_loss"] for h in ha] == pytest.approx([h["train_loss"] for h in hb], rel=1e-5)
    changed = copy.deepcopy(cfg)
    changed["finetune"]["training"]["lr"] = 1e-2
    with pytest.raises(RunMismatch, match="changed: \\['lr'\\]"):
        train_run(changed, exp, 1, run_dir=tmp_path / "b", segmenter_factory=tiny_factory, progress=False)


def test_early_stopping_stops_when_validation_stalls(ft_cfg, tmp_path):
    cfg = copy.deepcopy(ft_cfg)
    cfg["finetune"]["training"].update(max_epochs=20, lr=1e-9, patience=2, min_delta=0.5)
    summary = train_run(cfg, _experiment(), 1, run_dir=tmp_path / "r", segmenter_factory=tiny_factory, progress=False)
    # epoch 1 sets the best; no later epoch can gain 0.5 at lr 1e-9, so it stops after 1 + 2 epochs
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    assert summary["stop_reason"].startswith("early stopping")


def test_torchrun_two_processes_gloo_end_with_identical_weights(ft_cfg, tmp_path):
    cfg = copy.deepcopy(ft_cfg)
    cfg["finetune"]["training"]["max_epochs"] = 2
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
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


# ----------------------------------------------------------------------------- scoring
def test_finetuned_model_is_scored_by_the_zero_shot_engine_and_beats_its_start(ft_cfg, tmp_path):
    cfg = copy.deepcopy(ft_cfg)
    cfg["paths"]["runs_dir"] = str(tmp_path / "runs")
    cfg["finetune"]["training"].update(max_epochs=30, grad_accum_steps=1)
    cfg["finetune"]["experiments"] = [{"group": "size", "train_on": [HIP]}]
    result = run_grid(cfg, progress=False, segmenter_factory=tiny_factory)
    assert list(result.experiments["status"]) == ["finished"]
    subj = result.subjects
    assert set(subj["experiment_id"]) == {result.experiments["experiment_id"][0], "zero_shot:lite_medsam"}
    test_ids = set(load_tables(cfg)[0].query("split == 'test' and dataset == @HIP")["subject_id"])
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
    again = run_grid(cfg, progress=False, segmenter_factory=tiny_factory)  # resumes: nothing retrained
    pd.testing.assert_frame_equal(again.subjects, result.subjects)


def test_cli_lists_the_grid_and_names_an_unknown_run(ft_cfg, tmp_path, capsys):
    from mskseg_lib.cli import main

    cfg = copy.deepcopy(ft_cfg)
    cfg["finetune"]["experiments"] = [{"group": "size", "train_on": [HIP], "train_subjects": [1, "all"]}]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["finetune", "--profile", str(path), "--list"]) == 0
    assert capsys.readouterr().out.split() == [f"{HIP}/lite_medsam-frozen-shift0-n1/Run_1",
                                               f"{HIP}/lite_medsam-frozen-shift0-nall/Run_1"]
    assert main(["finetune", "--profile", str(path), "--experiment", "nope/Run_1"]) != 0
    assert "unknown run id(s) ['nope/Run_1']" in capsys.readouterr().err


def test_wandb_is_optional_enabled_without_the_package_only_warns(ft_cfg, caplog, monkeypatch):
    import importlib.util

    from mskseg_lib.finetuning import run_log

    cfg = copy.deepcopy(ft_cfg)
    assert run_log.wandb_logger(cfg, "x/Run_1", {}) is None  # off by default
    cfg["finetune"]["wandb"]["enabled"] = True
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with caplog.at_level("WARNING"):
        assert run_log.wandb_logger(cfg, "x/Run_1", {}) is None
    assert "wandb is not installed" in caplog.text
