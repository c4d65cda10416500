"""The training loop: box-prompted finetuning of a zoo model, single process or torch DDP.

``train_run(experiment, prepared_dir=..., run_dir=..., settings=TrainSettings())`` trains one
experiment in its run folder (``<root>/<task>/<group>/Run_N``, see :mod:`.run_folder`) and
returns its summary:

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
  encoder and ``cache_embeddings``, each training slice is encoded once (``embeddings.py``,
  shared with the zero-shot embedding cache);
* metrics: training loss, validation loss and validation Dice are sums reduced over ranks, so
  every rank sees the same numbers and takes the same early-stopping decision;
* checkpoints (rank 0 only, atomic): ``checkpoint_latest.pt`` after every epoch (model,
  optimizer, scheduler, early-stopping state, history: a rerun resumes from it) and
  ``checkpoint_best.pt`` at each validation improvement; at the end both models are written as
  bare state dicts with wrapper prefixes stripped (``model_best.pt``, ``model_last.pt``), which
  ``load_weights`` reads in a single process;
* logs: ``config.yaml`` (the profile when there is one + this experiment and its settings),
  ``history.json`` (loss, Dice, learning rate and seconds per epoch), ``curves.png``,
  ``manifest.json``; optional Weights & Biases (``TrainSettings.wandb_project`` and the package
  installed).

Under torchrun every rank calls :func:`train_run` with the same arguments; rank 0 writes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
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

from mskseg_lib import distributed as dist_utils
from mskseg_lib.atomic import write_json, write_text
from mskseg_lib.data.tables import load_tables
from mskseg_lib.finetuning.embeddings import precompute_embeddings
from mskseg_lib.finetuning.grid import Experiment
from mskseg_lib.finetuning.network import BoxPromptNet, describe
from mskseg_lib.finetuning.run_folder import (
    FINISHED,
    check_settings,
    export_final,
    is_finished,
    read_run,
    run_dir_of,
    save_checkpoint,
)
from mskseg_lib.finetuning.run_log import plot_curves, wandb_logger
from mskseg_lib.finetuning.samples import BoxSampleDataset, build_samples, choose_subjects, embedding_key
from mskseg_lib.finetuning.settings import TrainSettings
from mskseg_lib.ledger import record_work
from mskseg_lib.models.checkpoints import strip_prefixes
from mskseg_lib.models.interface import Segmenter, pick_device, set_cpu_threads
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import load_model
from mskseg_lib.provenance import write_manifest

__all__ = ["SegmenterFactory", "train_run", "make_datasets", "SegLoss", "hard_dice", "validate",
           "run_dir_of", "is_finished", "FINISHED"]

log = logging.getLogger(__name__)

#: ``(model_key, device) -> Segmenter``: builds a run's initial model (tests pass tiny ones)
SegmenterFactory = Callable[[str, torch.device], Segmenter]


# ----------------------------------------------------------------------------- data
def make_datasets(subjects: pd.DataFrame, slices: pd.DataFrame, experiment: Experiment, settings: TrainSettings,
                  size_px: int, seed: int) -> tuple[BoxSampleDataset, BoxSampleDataset, pd.DataFrame]:
    """The training and validation samples of an experiment, and its chosen training subjects.

    Parameters
    ----------
    subjects, slices : the prepared subject and slice tables (``load_tables(prepared_dir)``).
    experiment : what to train on (datasets, training subjects per dataset, box shift).
    settings : ``max_slices_per_subject``, ``val_max_samples`` and ``mask_grid_px`` are used.
    size_px : the model's square input size (256 or 1024 px).
    seed : chooses the training subjects and draws labels, pieces and box shifts.

    Returns
    -------
    (train, validation, train_subjects)
        Two :class:`BoxSampleDataset` (one sample per slice) and the training subjects' rows.

    Raises
    ------
    ValueError
        No training or no validation sample (too few subjects in a split).
    """
    train_subj = choose_subjects(subjects, experiment.train_datasets, "train", experiment.train_subjects, seed)
    val_subj = choose_subjects(subjects, experiment.train_datasets, "val", "all", seed)
    grid = int(settings.mask_grid_px)
    train = build_samples(train_subj, slices, settings.max_slices_per_subject, size_px, grid)
    val = build_samples(val_subj, slices, settings.max_slices_per_subject, size_px, grid)
    if settings.val_max_samples and len(val) > settings.val_max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(val), settings.val_max_samples, replace=False))
        val = val.iloc[pick]
    if train.empty or val.empty:
        raise ValueError(f"{experiment.task}: no training or validation samples (train {len(train)}, val {len(val)})")
    shift = experiment.box_shift_grid_px
    return (BoxSampleDataset(train, size_px, grid, shift, seed),
            BoxSampleDataset(val, size_px, grid, shift, seed), train_subj)


# ----------------------------------------------------------------------------- steps
def _batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def _forward(net: torch.nn.Module, ds: BoxSampleDataset, idx: list[int], store: Mapping | None,
             device: torch.device, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, G, G)`` logits and targets of the samples ``idx`` (from stored embeddings when given)."""
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
    """Per-sample Dice of the thresholded prediction (both empty counts as 1).

    Parameters
    ----------
    logits : ``(B, G, G)``; a pixel is predicted where its logit is > 0.
    target : ``(B, G, G)`` in {0, 1}.

    Returns
    -------
    torch.Tensor
        ``(B,)`` Dice per sample.
    """
    pred = logits > 0
    tgt = target > 0.5
    inter = (pred & tgt).sum((1, 2)).float()
    denom = (pred.sum((1, 2)) + tgt.sum((1, 2))).float()
    return torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))


@torch.no_grad()
def validate(net: BoxPromptNet, ds: BoxSampleDataset, store: Mapping | None, ctx: dist_utils.DistContext,
             batch_size: int, amp: bool, loss_fn: SegLoss) -> tuple[float, float]:
    """Validation loss and Dice over all samples, each rank taking every world_size-th one.

    Returns
    -------
    (loss, dice)
        Means over every validation sample (summed over ranks first: the same on every rank).
    """
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


# ----------------------------------------------------------------------------- the run's parts
@dataclass
class _Run:
    """What one training run works with, built once by :func:`_build` (mutable: ``state``)."""

    experiment: Experiment
    repeat: int
    run_dir: Path
    settings: TrainSettings  # resolved for the experiment's strategy
    seed: int
    ctx: dist_utils.DistContext
    segmenter: Segmenter
    net: BoxPromptNet
    train_ds: BoxSampleDataset
    val_ds: BoxSampleDataset
    train_subjects: pd.DataFrame
    store: Mapping | None
    model: torch.nn.Module = None  # the net, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer = None
    scheduler: Any = None
    loss_fn: SegLoss = None
    amp: bool = False
    state: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0,
                                                           "bad_epochs": 0, "history": []})
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.experiment.run_id(self.repeat)


def _cpu_threads(ctx: dist_utils.DistContext, models: ModelSettings) -> int | None:
    """Torch CPU threads on a CPU device: the ranks on one machine share its cores."""
    if ctx.device.type != "cpu":
        return None
    n = models.cpu_threads or max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return set_cpu_threads(n)


def _build(experiment: Experiment, repeat: int, run_dir: Path, settings: TrainSettings, seed: int,
           ctx: dist_utils.DistContext, prepared_dir: Path, models: ModelSettings,
           segmenter_factory: SegmenterFactory | None, embedding_cache_dir: Path | None, progress: bool) -> _Run:
    """Initial model, samples, the trainable net and (frozen encoder) the precomputed embeddings."""
    torch.manual_seed(seed)
    segmenter = (segmenter_factory(experiment.model_key, ctx.device) if segmenter_factory
                 else load_model(experiment.model_key, models, ctx.device))
    subjects, slices = load_tables(prepared_dir)
    train_ds, val_ds, train_subjects = make_datasets(subjects, slices, experiment, settings,
                                                     segmenter.input_size_px, seed)
    net = BoxPromptNet(segmenter, experiment.strategy, int(settings.mask_grid_px))
    run = _Run(experiment, repeat, run_dir, settings, seed, ctx, segmenter, net, train_ds, val_ds, train_subjects,
               store=None)
    if not net.encoder_trained and settings.cache_embeddings:
        t0 = time.perf_counter()
        run.store = precompute_embeddings(segmenter, experiment.model_key, [train_ds, val_ds], ctx,
                                          cache_dir=embedding_cache_dir, encode_batch_size=models.encode_batch_size,
                                          progress=progress)
        run.timings["encode_s"] = round(time.perf_counter() - t0, 3)
    return run


def _write_config(run: _Run, profile: Mapping[str, Any] | None) -> None:
    """``config.yaml`` (experiment, training settings, seed, world size, the profile) and the
    training subjects, rank 0 only."""
    if not run.ctx.is_main:
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    snapshot = {"experiment": {**run.experiment.to_record(), "repeat": run.repeat, "run_id": run.run_id},
                "training": run.settings.training_record(), "seed": run.seed, "world_size": run.ctx.world_size,
                "profile": dict(profile or {})}
    write_text(run.run_dir / "config.yaml", yaml.safe_dump(json.loads(json.dumps(snapshot, default=str)),
                                                          sort_keys=False))
    run.train_subjects[["dataset", "subject_id"]].to_csv(run.run_dir / "train_subjects.csv", index=False)


def _optimisation(run: _Run) -> None:
    """DDP wrapper (under torchrun), AdamW, the cosine warm-restart scheduler and the loss."""
    s, ctx = run.settings, run.ctx
    run.model = run.net
    if ctx.distributed:
        run.model = DistributedDataParallel(run.net, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
                                            find_unused_parameters=True)  # SAM decoders leave multimask heads unused
    run.optimizer = torch.optim.AdamW(run.net.trainable_parameters(), lr=s.lr, weight_decay=s.weight_decay)
    run.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        run.optimizer, T_0=s.scheduler_t0, T_mult=s.scheduler_t_mult, eta_min=s.min_lr)
    run.loss_fn = SegLoss(s.dice_weight, s.bce_weight)
    run.amp = bool(s.mixed_precision) and ctx.device.type == "cuda"


def _resume(run: _Run) -> None:
    """Continue after the last finished epoch: every rank reads rank 0's ``checkpoint_latest.pt``."""
    latest = run.run_dir / "checkpoint_latest.pt"
    if not latest.exists():
        return
    ck = torch.load(latest, map_location="cpu", weights_only=False)
    run.net.model.load_state_dict(strip_prefixes(ck["model"]))
    run.optimizer.load_state_dict(ck["optimizer"])
    run.scheduler.load_state_dict(ck["scheduler"])
    run.state = {k: ck[k] for k in run.state}
    log.info("%s: resuming after epoch %d", run.run_dir, run.state["epoch"])


def _train_epoch(run: _Run, sampler: DistributedSampler, epoch: int) -> tuple[float, float, int]:
    """One pass over this rank's share of the training samples, in accumulation windows.

    Returns the learning rate the epoch started with (the cosine decays within it), the mean
    training loss and the number of samples (both over every rank).
    """
    s, ctx = run.settings, run.ctx
    cap = s.max_samples_per_epoch
    per_rank = math.ceil(cap / ctx.world_size) if cap else None
    accum = max(1, int(s.grad_accum_steps))
    sampler.set_epoch(epoch)
    run.train_ds.set_epoch(epoch)
    indices = list(sampler)[:per_rank] if per_rank else list(sampler)
    micro = _batches(indices, s.batch_size)
    windows = [micro[i:i + accum] for i in range(0, len(micro), accum)]  # the last may be shorter
    run.net.train()
    lr_epoch = run.optimizer.param_groups[0]["lr"]
    sums = [0.0, 0.0]
    for w, window in enumerate(windows):
        run.optimizer.zero_grad(set_to_none=True)
        for j, idx in enumerate(window):
            last = j == len(window) - 1
            sync = contextlib.nullcontext() if (last or not ctx.distributed) else run.model.no_sync()
            with sync:
                logits, targets = _forward(run.model, run.train_ds, idx, run.store, ctx.device, run.amp)
                loss = run.loss_fn(logits, targets)
                (loss / len(window)).backward()
            sums[0] += loss.item() * len(idx)
            sums[1] += len(idx)
        if s.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(run.net.trainable_parameters(), s.grad_clip_norm)
        run.optimizer.step()
        if s.scheduler_t0_unit == "optimizer_steps":  # the study's code: one scheduler step per optimizer step
            run.scheduler.step()
        else:
            run.scheduler.step(epoch + (w + 1) / len(windows))
    loss_sum, n = dist_utils.sum_across(ctx, sums)
    return lr_epoch, loss_sum / max(n, 1), int(n)


def _end_epoch(run: _Run, epoch: int, record: dict[str, Any], wandb_run: Any) -> None:
    """Record the epoch, update early stopping, write the checkpoints and history (rank 0)."""
    s, state = run.settings, run.state
    val_loss = record["val_loss"]
    state["history"].append(record)
    if not math.isfinite(val_loss):
        raise FloatingPointError(f"{run.run_id}: validation loss is {val_loss} at epoch "
                                 f"{epoch + 1} (learning rate too high? broken input?)")
    improved = val_loss < state["best_val_loss"] - s.min_delta
    if improved:
        state.update(best_val_loss=val_loss, best_epoch=epoch + 1, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    state["epoch"] = epoch + 1
    if run.ctx.is_main:
        ck = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
              "scheduler": run.scheduler.state_dict(), **state}
        if improved:
            save_checkpoint(run.run_dir / "checkpoint_best.pt", {"model": ck["model"], "epoch": epoch + 1,
                                                                 "val_loss": val_loss})
        save_checkpoint(run.run_dir / "checkpoint_latest.pt", ck)
        write_json(run.run_dir / "history.json", state["history"])
        if wandb_run is not None:
            wandb_run.log(record)
    dist_utils.barrier(run.ctx)


def _stalled(run: _Run) -> bool:
    s = run.settings
    return bool(s.early_stopping and run.state["bad_epochs"] >= s.patience)


def _train_epochs(run: _Run, progress: bool) -> str:
    """Epochs until ``max_epochs`` or early stopping; returns why training stopped."""
    s, ctx, state = run.settings, run.ctx, run.state
    sampler = DistributedSampler(run.train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=run.seed, drop_last=False)
    wandb_run = wandb_logger(s.wandb_project, run.run_id, s.training_record()) if ctx.is_main else None
    early = f"early stopping (no val-loss gain > {s.min_delta} in {s.patience} epochs)"
    bar = tqdm(total=s.max_epochs, initial=state["epoch"], desc=run.run_id, disable=not (progress and ctx.is_main))
    while state["epoch"] < s.max_epochs and not _stalled(run):
        epoch = state["epoch"]
        t_epoch = time.perf_counter()
        lr_epoch, train_loss, n = _train_epoch(run, sampler, epoch)
        t_val = time.perf_counter()
        run.val_ds.set_epoch(epoch)
        val_loss, val_dice = validate(run.net, run.val_ds, run.store, ctx, s.batch_size, run.amp, run.loss_fn)
        if ctx.is_main:  # the run's ledger: micro-batches trained, validation passes
            trained = f"{run.experiment.model_key} (finetuned)"
            kind = "full_step" if run.experiment.strategy == "full" else "frozen_step"
            record_work(kind, trained, math.ceil(n / s.batch_size), t_val - t_epoch)
            record_work("encode" if kind == "full_step" else "box", trained, len(run.val_ds),
                        time.perf_counter() - t_val)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_dice": val_dice,
                  "lr": lr_epoch, "train_samples": n, "seconds": round(time.perf_counter() - t_epoch, 3)}
        _end_epoch(run, epoch, record, wandb_run)
        bar.update(1)
        bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}", dice=f"{val_dice:.3f}")
    bar.close()
    if wandb_run is not None:
        wandb_run.finish()
    return early if _stalled(run) else "max_epochs"


def _summary(run: _Run, stop_reason: str) -> dict[str, Any]:
    """What ``run.json`` says about the finished run."""
    history = run.state["history"]
    return {"run_id": run.run_id, "status": "finished", "epochs_run": run.state["epoch"],
            "best_epoch": run.state["best_epoch"], "best_val_loss": run.state["best_val_loss"],
            "stop_reason": stop_reason, "n_train_samples": len(run.train_ds), "n_val_samples": len(run.val_ds),
            "n_train_subjects": run.train_subjects.groupby("dataset").size().to_dict(),
            "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in history] or [0.0])), 3),
            "train_seconds": run.timings["train_s"], "world_size": run.ctx.world_size, "device": str(run.ctx.device),
            **describe(run.net)}


def _finish(run: _Run, summary: dict[str, Any], profile: Mapping[str, Any] | None, threads: int | None) -> None:
    """Rank 0: bare weight files, curves, the manifest, then ``run.json`` (marks it finished)."""
    if run.ctx.is_main:
        export_final(run.run_dir)
        plot_curves(run.state["history"], run.run_dir / "curves.png", run.run_id)
        record = dict(profile) if profile else {"training": asdict(run.settings)}
        write_manifest(run.run_dir / "manifest.json", profile=str((profile or {}).get("profile", "")), seed=run.seed,
                       config=record, timings=run.timings,
                       extra={"experiment": run.experiment.to_record(), "training": run.settings.training_record(),
                              "summary": summary, "initial_checkpoint": getattr(run.segmenter, "checkpoint", None),
                              "cpu_threads": threads})
        write_json(run.run_dir / FINISHED, summary)  # last: marks the run finished
    dist_utils.barrier(run.ctx)


# ----------------------------------------------------------------------------- the run
def train_run(experiment: Experiment, *, prepared_dir: Path, run_dir: Path,
              settings: TrainSettings = TrainSettings(), models: ModelSettings = ModelSettings(), repeat: int = 1,
              preparation: Mapping[str, Any] | None = None, embedding_cache_dir: Path | None = None,
              profile: Mapping[str, Any] | None = None, segmenter_factory: SegmenterFactory | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Train one experiment in its run folder, resuming it; return the summary written to ``run.json``.

    A finished folder is returned as it is; one made with other settings is refused
    (:func:`~mskseg_lib.finetuning.run_folder.check_settings`). Under torchrun every rank calls
    this with the same arguments (DDP, one process per GPU); rank 0 writes.

    Parameters
    ----------
    experiment : what to train (``grid.make_experiment`` or an entry of ``grid.expand_grid``).
    prepared_dir : the prepared data (``subjects.parquet``, ``slices.parquet``, slice stacks).
    run_dir : the run folder (``run_folder.run_dir_of(root, experiment, repeat)`` in a grid).
    settings : training settings (the study's by default); overrides of the experiment's
        strategy are applied.
    models : where the initial weights are and which device runs them (CPU threads, encoder batch).
    repeat : 1, 2, ...: the run trains with seed ``settings.seed + repeat - 1``.
    preparation : the preparation settings that made the slices (``resize``,
        ``clip_percentiles``, ``per_dataset``); with the encoder input convention they become
        part of the folder's fingerprint (None: not checked).
    embedding_cache_dir : the shared embedding cache for a frozen encoder (None: in memory only).
    profile : the profile the arguments came from, recorded verbatim in ``config.yaml`` and
        ``manifest.json`` (provenance); None when called without one.
    segmenter_factory : ``(model_key, device) -> Segmenter`` replacing the zoo (tests use tiny models).
    progress : progress bars (rank 0).

    Returns
    -------
    dict
        ``run.json``: status, epochs_run, best_epoch, best_val_loss, stop_reason, sample and
        subject counts, seconds per epoch, train_seconds, world_size, device and the trained parts.
    """
    ctx = dist_utils.start(pick_device(models.device), settings.backend)
    run_dir = Path(run_dir)
    resolved = settings.for_strategy(experiment.strategy)
    seed = int(settings.seed) + repeat - 1
    inputs = {"input_normalisation": models.input_normalisation, **preparation} if preparation is not None else None
    check_settings(run_dir, experiment, resolved.training_record(), seed, write=ctx.is_main, inputs=inputs)
    if is_finished(run_dir):
        return read_run(run_dir)
    threads = _cpu_threads(ctx, models)
    t_start = time.perf_counter()
    run = _build(experiment, repeat, run_dir, resolved, seed, ctx, Path(prepared_dir), models, segmenter_factory,
                 embedding_cache_dir, progress)
    _write_config(run, profile)
    _optimisation(run)
    _resume(run)
    stop_reason = _train_epochs(run, progress)
    run.timings["train_s"] = round(sum(h["seconds"] for h in run.state["history"]), 3)
    run.timings["total_s"] = round(time.perf_counter() - t_start, 3)
    summary = _summary(run, stop_reason)
    _finish(run, summary, profile, threads)
    return summary
