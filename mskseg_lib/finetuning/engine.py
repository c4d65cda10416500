"""The training loop: box-prompted finetuning of a zoo model, single process or torch DDP.

``train_run(cfg, experiment, repeat)`` trains one experiment in its run folder
(``runs_dir/finetune/<tag>/<task>/<group>/Run_N``) and returns its summary:

* samples (``samples.py``): one per training slice, with one label (and, for multi-instance
  labels, one connected piece) drawn at random each epoch, as the study's code does; target
  and box on the square mask grid ``mask_grid_px`` (256), the box scaled to the model input and
  optionally shifted outward by 0..``box_shift_grid_px`` grid pixels per side. An epoch is one
  pass over the training slices (``max_samples_per_epoch`` > 0 caps it for small budgets: a
  different seeded subset each epoch). Validation slices are drawn the same way (the study
  validates with its training dataset class, box shift included), seeded per epoch;
* loss: as the study's code, 0.5 x MONAI ``DiceLoss(sigmoid=True, squared_pred=True)`` + 0.5 x
  BCE with logits, on the mask grid (the decoder's low-resolution logits; resized to the grid
  only for a model whose low-resolution output is not the grid); AdamW;
  ``CosineAnnealingWarmRestarts`` stepped once per optimizer step, so ``scheduler_t0`` counts
  optimizer steps as in the study's code (``scheduler_t0_unit: epochs``, the labelled variant,
  steps it with fractional epochs instead); gradient accumulation over ``grad_accum_steps``
  micro-batches, the last, partial window of an epoch included (its loss scaled by its own
  length); gradient clipping; bf16 autocast on CUDA;
* data: a ``DistributedSampler`` (seeded shuffle; world size 1 without torchrun); with a frozen
  encoder and ``cache_embeddings``, each training slice is encoded once (shared with the
  zero-shot embedding cache);
* metrics: training loss, validation loss and validation Dice are sums reduced over ranks, so
  every rank sees the same numbers and takes the same early-stopping decision;
* checkpoints (rank 0 only, atomic): ``checkpoint_latest.pt`` after every epoch (model,
  optimizer, scheduler, early-stopping state, history: a rerun resumes from it) and
  ``checkpoint_best.pt`` at each validation improvement; at the end both models are written as
  bare state dicts with wrapper prefixes stripped (``model_best.pt``, ``model_last.pt``), which
  ``load_weights`` reads in a single process;
* logs: ``config.yaml`` (profile snapshot + this experiment), ``history.json`` (loss, Dice,
  learning rate and seconds per epoch), ``curves.png``, ``manifest.json``; optional Weights &
  Biases (``finetune.wandb.enabled`` and the package installed).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import yaml
from monai.losses import DiceLoss
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from mskseg_lib.atomic import atomic_path, write_json, write_text
from mskseg_lib.config import resolve_path
from mskseg_lib.data.preprocess import geometry_of
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation.embedding_cache import EmbeddingCache, cache_key, round_trip
from mskseg_lib.evaluation.zero_shot import RunMismatch
from mskseg_lib.finetuning import distributed as dist_utils
from mskseg_lib.finetuning.grid import Experiment
from mskseg_lib.finetuning.network import BoxPromptNet, describe
from mskseg_lib.finetuning.run_log import plot_curves, wandb_logger
from mskseg_lib.finetuning.samples import BoxSampleDataset, build_samples, choose_subjects, embedding_key
from mskseg_lib.models.checkpoints import strip_prefixes
from mskseg_lib.models.interface import Embedding, Segmenter, set_cpu_threads
from mskseg_lib.models.zoo import load_model
from mskseg_lib.provenance import write_manifest

log = logging.getLogger(__name__)
FINISHED = "run.json"


def finetune_root(cfg: Mapping[str, Any]) -> Path:
    return resolve_path(cfg, "runs_dir") / "finetune" / cfg["finetune"]["tag"]


def run_dir_of(cfg: Mapping[str, Any], experiment: Experiment, repeat: int) -> Path:
    return finetune_root(cfg) / experiment.run_id(repeat)


def training_params(cfg: Mapping[str, Any], strategy: str) -> dict[str, Any]:
    """``finetune.training`` with the strategy's overrides applied."""
    t = {k: v for k, v in cfg["finetune"]["training"].items() if k != "overrides"}
    over = dict(cfg["finetune"]["training"]["overrides"].get(strategy, {}) or {})
    unknown = set(over) - set(t)
    if unknown:
        raise ValueError(f"finetune.training.overrides.{strategy}: unknown keys {sorted(unknown)}")
    t.update(over)
    for key in ("max_epochs", "batch_size", "grad_accum_steps"):
        if int(t[key]) < 1:
            raise ValueError(f"finetune.training.{key} must be >= 1 (strategy {strategy}), got {t[key]}")
    return t


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / FINISHED).exists()


# ----------------------------------------------------------------------------- data
def make_datasets(cfg: Mapping[str, Any], experiment: Experiment, params: Mapping[str, Any], size_px: int,
                  seed: int) -> tuple[BoxSampleDataset, BoxSampleDataset, pd.DataFrame]:
    """(train, validation) datasets and the chosen training subjects."""
    subjects, slices = load_tables(cfg)
    train_subj = choose_subjects(subjects, experiment.train_datasets, "train", experiment.train_subjects, seed)
    val_subj = choose_subjects(subjects, experiment.train_datasets, "val", "all", seed)
    grid = int(params["mask_grid_px"])
    train = build_samples(train_subj, slices, params["max_slices_per_subject"], size_px, grid)
    val = build_samples(val_subj, slices, params["max_slices_per_subject"], size_px, grid)
    if params["val_max_samples"] and len(val) > params["val_max_samples"]:
        pick = np.sort(np.random.default_rng(seed).choice(len(val), params["val_max_samples"], replace=False))
        val = val.iloc[pick]
    if train.empty or val.empty:
        raise ValueError(f"{experiment.task}: no training or validation samples (train {len(train)}, val {len(val)})")
    shift = experiment.box_shift_grid_px
    return (BoxSampleDataset(train, size_px, grid, shift, seed),
            BoxSampleDataset(val, size_px, grid, shift, seed), train_subj)


def precompute_embeddings(cfg: Mapping[str, Any], segmenter: Segmenter, model_key: str,
                          datasets: list[BoxSampleDataset], ctx: dist_utils.DistContext,
                          progress: bool = True) -> dict[tuple, Embedding]:
    """Frozen-encoder embeddings of every slice the samples use, from the shared cache.

    Missing subjects are encoded by the ranks in turn (subject i by rank i mod world size) and
    cached; after a barrier every rank loads all of them (float16 in memory).
    """
    cache = EmbeddingCache(resolve_path(cfg, "runs_dir") / "zero_shot" / "_embeddings")
    frames = pd.concat([d.samples for d in datasets], ignore_index=True)
    per_subject = frames.drop_duplicates(["dataset", "subject_id", "store_index"]).groupby(
        ["dataset", "subject_id"], sort=True)
    groups = list(per_subject)
    size = segmenter.input_size_px
    batch = int(cfg["models"]["encode_batch_size"])
    mine = [g for i, g in enumerate(groups) if i % ctx.world_size == ctx.rank]
    store: dict[tuple, Embedding] = {}

    def keep(dataset: str, subject_id: str, g: pd.DataFrame, have: dict[int, Embedding]) -> None:
        for k in g["store_index"]:  # only the slices the samples use, as float16
            if int(k) not in have:
                raise RuntimeError(f"embedding cache for {dataset}/{subject_id} lacks slice {k} after encoding")
            store[(dataset, subject_id, int(k))] = {n: v.to(torch.float16) for n, v in have[int(k)].items()}

    for (dataset, subject_id), g in tqdm(mine, desc="encode training slices", disable=not (progress and ctx.is_main)):
        key = cache_key(segmenter, g["image_path"].iloc[0])
        have = cache.load(model_key, dataset, subject_id, key, torch.device("cpu"))
        todo = g[~g["store_index"].isin(list(have))]
        if not todo.empty:
            stack = np.load(todo["image_path"].iloc[0], mmap_mode="r")
            fresh: dict[int, Embedding] = {}
            for i in range(0, len(todo), batch):
                part = todo.iloc[i:i + batch]
                hw = [geometry_of(r, size).resized_shape for _, r in part.iterrows()]
                embs = segmenter.encode(np.stack([stack[int(k)] for k in part["store_index"]]), hw)
                fresh.update({int(k): round_trip(e) for k, e in zip(part["store_index"], embs)})
            cache.save(model_key, dataset, subject_id, key, fresh)
            have.update(fresh)
        keep(dataset, subject_id, g, have)  # this rank's subjects are not read back from disk
    dist_utils.barrier(ctx)
    for i, ((dataset, subject_id), g) in enumerate(groups):
        if i % ctx.world_size != ctx.rank:  # encoded by another rank
            key = cache_key(segmenter, g["image_path"].iloc[0])
            keep(dataset, subject_id, g, cache.load(model_key, dataset, subject_id, key, torch.device("cpu")))
    return store


# ----------------------------------------------------------------------------- steps
def _batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def _forward(net: torch.nn.Module, ds: BoxSampleDataset, idx: list[int], store: dict | None,
             device: torch.device, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    items = [ds[i] for i in idx]
    boxes = torch.stack([it["box"] for it in items])
    targets = torch.stack([it["target"] for it in items]).to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        if store is not None:
            embs = [{k: v.to(device, torch.float32) for k, v in store[embedding_key(ds.samples.iloc[i])].items()}
                    for i in idx]
            logits = net(boxes, embeddings=embs)
        else:
            images = np.stack([it["image"].numpy() for it in items])
            logits = net(boxes, images=images, valid_hw=[it["valid_hw"] for it in items])
    return logits.float(), targets


class SegLoss(torch.nn.Module):
    """The study's loss: ``0.5 * Dice + 0.5 * BCE`` on ``(B, G, G)`` logits and targets.

    Dice is MONAI's ``DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")`` (per sample,
    ``1 - (2 sum(p t) + 1e-5) / (sum(p^2) + sum(t^2) + 1e-5)`` with ``p = sigmoid(logits)``,
    then the mean), BCE is ``BCEWithLogitsLoss`` (mean over pixels), weights 0.5 and 0.5: the
    study's ``finetune_main.py`` and ``calculate_loss``.
    """

    def __init__(self, dice_weight: float = 0.5, bce_weight: float = 0.5) -> None:
        super().__init__()
        self.dice = DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")
        self.bce = torch.nn.BCEWithLogitsLoss()
        self.dice_weight, self.bce_weight = float(dice_weight), float(bce_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice_weight * self.dice(logits[:, None], target[:, None]) + self.bce_weight * self.bce(logits, target)


def hard_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample Dice of the thresholded prediction (both empty counts as 1)."""
    pred = logits > 0
    tgt = target > 0.5
    inter = (pred & tgt).sum((1, 2)).float()
    denom = (pred.sum((1, 2)) + tgt.sum((1, 2))).float()
    return torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))


@torch.no_grad()
def validate(net: BoxPromptNet, ds: BoxSampleDataset, store: dict | None, ctx: dist_utils.DistContext,
             batch_size: int, amp: bool, loss_fn: SegLoss) -> tuple[float, float]:
    """Validation loss and Dice over all samples, each rank taking every world_size-th one."""
    net.eval()
    mine = list(range(ctx.rank, len(ds), ctx.world_size))
    sums = [0.0, 0.0, 0.0]
    for idx in _batches(mine, batch_size):
        logits, targets = _forward(net, ds, idx, store, ctx.device, amp)
        per = [loss_fn(logits[j:j + 1], targets[j:j + 1]).item() for j in range(len(idx))]
        sums[0] += sum(per)
        sums[1] += hard_dice(logits, targets).sum().item()
        sums[2] += len(idx)
    loss_sum, dice_sum, n = dist_utils.sum_across(ctx, sums)
    return loss_sum / max(n, 1), dice_sum / max(n, 1)


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def bare_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The zoo model's weights with DDP / wrapper prefixes removed (``module.model.x`` -> ``x``)."""
    return strip_prefixes({k: v.detach().cpu() for k, v in module.state_dict().items()})


def export_final(run_dir: Path) -> None:
    """Bare, prefix-free weight files from the training checkpoints (single-process loadable)."""
    for name, out in (("checkpoint_best.pt", "model_best.pt"), ("checkpoint_latest.pt", "model_last.pt")):
        state = torch.load(run_dir / name, map_location="cpu", weights_only=False)
        save_checkpoint(run_dir / out, strip_prefixes(state["model"]))


# ----------------------------------------------------------------------------- the run
def check_settings(run_dir: Path, experiment: Experiment, params: Mapping[str, Any], seed: int,
                   write: bool = True, inputs: Mapping[str, Any] | None = None) -> None:
    """Refuse to resume (or reuse) a run folder made with other training settings.

    ``max_epochs`` is left out: an interrupted run may be resumed with a different budget (a
    finished run stays finished); so are the ablation groups and evaluation datasets, which do
    not change what is trained. ``inputs`` (the encoder input convention and the preparation
    that made the slices) is part of the fingerprint when given.
    """
    training = {k: v for k, v in params.items() if k != "max_epochs"}
    what = {k: experiment.to_record()[k] for k in ("task", "train_datasets", "model_key", "strategy",
                                                     "box_shift_grid_px", "train_subjects")}
    settings = {"experiment": what, "training": training, "seed": seed}
    if inputs:
        settings["inputs"] = dict(inputs)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    marker = Path(run_dir) / "settings.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if old.get("fingerprint") != digest:
            changed = sorted(k for k in training if old["settings"]["training"].get(k) != training[k])
            changed += sorted(f"inputs.{k}" for k in (inputs or {})
                              if (old["settings"].get("inputs") or {}).get(k) != inputs[k])
            raise RunMismatch(f"{run_dir}: trained with other settings (changed: {changed or 'experiment/seed'}); "
                              "choose a new finetune.tag or delete the folder")
    elif write:
        write_json(marker, {"fingerprint": digest, "settings": settings})


def train_run(cfg: Mapping[str, Any], experiment: Experiment, repeat: int = 1, *, run_dir: Path | None = None,
              segmenter_factory: Callable[[torch.device], Segmenter] | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Train one experiment (resuming its run folder); returns the summary written to ``run.json``.

    Under torchrun every rank calls this; rank 0 writes. ``segmenter_factory`` replaces the zoo
    (tests pass tiny models).
    """
    fcfg = cfg["finetune"]
    ctx = dist_utils.start(cfg["models"]["device"], fcfg["distributed"]["backend"])
    run_dir = Path(run_dir) if run_dir else run_dir_of(cfg, experiment, repeat)
    params = training_params(cfg, experiment.strategy)
    seed = int(cfg["seed"]) + repeat - 1
    p = cfg["prepare"]
    inputs = {"input_normalisation": cfg["models"]["input_normalisation"], "resize": p["resize"],
              "clip_percentiles": p["clip_percentiles"], "per_dataset": p["per_dataset"]}
    check_settings(run_dir, experiment, params, seed, write=ctx.is_main, inputs=inputs)
    if is_finished(run_dir):
        return json.loads((run_dir / FINISHED).read_text())
    threads = None
    if ctx.device.type == "cpu":  # ranks on one machine share its cores
        n = cfg["models"]["cpu_threads"] or max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        threads = set_cpu_threads(n)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    torch.manual_seed(seed)

    segmenter = segmenter_factory(ctx.device) if segmenter_factory else load_model(cfg, experiment.model_key, ctx.device)
    size = segmenter.input_size_px
    train_ds, val_ds, train_subjects = make_datasets(cfg, experiment, params, size, seed)
    net = BoxPromptNet(segmenter, experiment.strategy, int(params["mask_grid_px"]))
    store = None
    if not net.encoder_trained and params["cache_embeddings"]:
        t0 = time.perf_counter()
        store = precompute_embeddings(cfg, segmenter, experiment.model_key, [train_ds, val_ds], ctx, progress)
        timings["encode_s"] = round(time.perf_counter() - t0, 3)

    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        snapshot = {"experiment": {**experiment.to_record(), "repeat": repeat, "run_id": experiment.run_id(repeat)},
                    "training": params, "seed": seed, "world_size": ctx.world_size, "profile": dict(cfg)}
        write_text(run_dir / "config.yaml", yaml.safe_dump(json.loads(json.dumps(snapshot, default=str)), sort_keys=False))
        train_subjects[["dataset", "subject_id"]].to_csv(run_dir / "train_subjects.csv", index=False)

    model: torch.nn.Module = net
    if ctx.distributed:
        model = DistributedDataParallel(net, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
                                        find_unused_parameters=True)  # SAM decoders leave multimask heads unused
    optimizer = torch.optim.AdamW(net.trainable_parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=params["scheduler_t0"], T_mult=params["scheduler_t_mult"], eta_min=params["min_lr"])
    per_step = params["scheduler_t0_unit"] == "optimizer_steps"
    loss_fn = SegLoss()
    amp = bool(params["mixed_precision"]) and ctx.device.type == "cuda"

    state = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    latest = run_dir / "checkpoint_latest.pt"
    if latest.exists():  # resume: every rank reads rank 0's last epoch
        ck = torch.load(latest, map_location="cpu", weights_only=False)
        net.model.load_state_dict(strip_prefixes(ck["model"]))
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        state = {k: ck[k] for k in state}
        log.info("%s: resuming after epoch %d", run_dir, state["epoch"])

    sampler = DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed,
                                 drop_last=False)
    cap = params["max_samples_per_epoch"]
    per_rank = math.ceil(cap / ctx.world_size) if cap else None
    accum = max(1, int(params["grad_accum_steps"]))
    wandb_run = wandb_logger(cfg, experiment.run_id(repeat), params) if ctx.is_main else None
    stop_reason = "max_epochs"
    bar = tqdm(total=params["max_epochs"], initial=state["epoch"], desc=experiment.run_id(repeat),
               disable=not (progress and ctx.is_main))
    while state["epoch"] < params["max_epochs"]:
        if params["early_stopping"] and state["bad_epochs"] >= params["patience"]:
            stop_reason = f"early stopping (no val-loss gain > {params['min_delta']} in {params['patience']} epochs)"
            break
        epoch = state["epoch"]
        t_epoch = time.perf_counter()
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        indices = list(sampler)[:per_rank] if per_rank else list(sampler)
        micro = _batches(indices, params["batch_size"])
        windows = [micro[i:i + accum] for i in range(0, len(micro), accum)]  # the last may be shorter
        net.train()
        lr_epoch = optimizer.param_groups[0]["lr"]  # the rate this epoch starts with (cosine decays within it)
        sums = [0.0, 0.0]
        for w, window in enumerate(windows):
            optimizer.zero_grad(set_to_none=True)
            for j, idx in enumerate(window):
                last = j == len(window) - 1
                sync = contextlib.nullcontext() if (last or not ctx.distributed) else model.no_sync()
                with sync:
                    logits, targets = _forward(model, train_ds, idx, store, ctx.device, amp)
                    loss = loss_fn(logits, targets)
                    (loss / len(window)).backward()
                sums[0] += loss.item() * len(idx)
                sums[1] += len(idx)
            if params["grad_clip_norm"] > 0:
                torch.nn.utils.clip_grad_norm_(net.trainable_parameters(), params["grad_clip_norm"])
            optimizer.step()
            if per_step:  # the study's code: one scheduler step per optimizer step
                scheduler.step()
            else:
                scheduler.step(epoch + (w + 1) / len(windows))
        loss_sum, n = dist_utils.sum_across(ctx, sums)
        val_ds.set_epoch(epoch)
        val_loss, val_dice = validate(net, val_ds, store, ctx, params["batch_size"], amp, loss_fn)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(n, 1), "val_loss": val_loss, "val_dice": val_dice,
                  "lr": lr_epoch, "train_samples": int(n),
                  "seconds": round(time.perf_counter() - t_epoch, 3)}
        state["history"].append(record)
        if not math.isfinite(val_loss):
            raise FloatingPointError(f"{experiment.run_id(repeat)}: validation loss is {val_loss} at epoch "
                                     f"{epoch + 1} (learning rate too high? broken input?)")
        improved = val_loss < state["best_val_loss"] - params["min_delta"]
        if improved:
            state.update(best_val_loss=val_loss, best_epoch=epoch + 1, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        if ctx.is_main:
            ck = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), **state}
            if improved:
                save_checkpoint(run_dir / "checkpoint_best.pt", {"model": ck["model"], "epoch": epoch + 1,
                                                                 "val_loss": val_loss})
            save_checkpoint(latest, ck)
            write_json(run_dir / "history.json", state["history"])
            if wandb_run is not None:
                wandb_run.log(record)
        dist_utils.barrier(ctx)
        bar.update(1)
        bar.set_postfix(train=f"{record['train_loss']:.3f}", val=f"{val_loss:.3f}", dice=f"{val_dice:.3f}")
    if params["early_stopping"] and state["bad_epochs"] >= params["patience"]:
        stop_reason = f"early stopping (no val-loss gain > {params['min_delta']} in {params['patience']} epochs)"
    bar.close()
    timings["train_s"] = round(sum(h["seconds"] for h in state["history"]), 3)
    timings["total_s"] = round(time.perf_counter() - t_start, 3)
    summary = {"run_id": experiment.run_id(repeat), "status": "finished", "epochs_run": state["epoch"],
               "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"],
               "stop_reason": stop_reason, "n_train_samples": len(train_ds), "n_val_samples": len(val_ds),
               "n_train_subjects": train_subjects.groupby("dataset").size().to_dict(),
               "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in state["history"]] or [0.0])), 3),
               "train_seconds": timings["train_s"], "world_size": ctx.world_size, "device": str(ctx.device),
               **describe(net)}
    if ctx.is_main:
        export_final(run_dir)
        plot_curves(state["history"], run_dir / "curves.png", experiment.run_id(repeat))
        checkpoint = getattr(segmenter, "checkpoint", None)
        write_manifest(run_dir / "manifest.json", profile=cfg["profile"], seed=seed, config=dict(cfg),
                       timings=timings, extra={"experiment": experiment.to_record(), "training": params,
                                               "summary": summary, "initial_checkpoint": checkpoint,
                                               "cpu_threads": threads})
        write_json(run_dir / FINISHED, summary)  # last: marks the run finished
        if wandb_run is not None:
            wandb_run.finish()
    dist_utils.barrier(ctx)
    return summary
