"""Scoring finetuned models with the zero-shot engine, on the same slices as their baseline.

A finetuned model is its zoo architecture with ``model_best.pt`` loaded; it is scored by
``run_zero_shot`` (box prompts from the ground truth, Dice/IoU at the original size) on the
``finetune.evaluation`` selection (test split by default) of its evaluation datasets, into
``Run_N/evaluation``. Its zero-shot baseline is the initial model on the same selection,
scored once per model into ``runs_dir/finetune/<tag>/_zero_shot/<model>``. A decoder-only
finetune keeps the initial encoder, so it reuses the zero-shot embedding cache (no encoding).
Shifted prompt conditions of ``finetune.evaluation.conditions`` count their shift on the
training grid (``finetune.training.mask_grid_px``), so ``shift_grid_px: 20`` there is the box
shift ``box_shift_grid_px: 20`` of training; both arms see the same boxes.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import torch

from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.zero_shot import run_zero_shot
from mskseg_lib.finetuning.grid import Experiment
from mskseg_lib.finetuning.network import fixed_single_mask_output
from mskseg_lib.models.checkpoints import load_weights, sha256_file
from mskseg_lib.models.interface import Segmenter, pick_device
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.zoo import load_model

FINETUNED_KEY = "finetuned"


def evaluation_cfg(cfg: Mapping[str, Any], datasets: list[str] | str, cache_embeddings: bool) -> dict:
    """The profile with its ``zero_shot`` section set from ``finetune.evaluation``."""
    e = cfg["finetune"]["evaluation"]
    out = copy.deepcopy(dict(cfg))
    out["zero_shot"] = {**cfg["zero_shot"], "conditions": e["conditions"], "split": e["split"], "datasets": datasets,
                        "mask_grid_px": int(cfg["finetune"]["training"]["mask_grid_px"]),
                        "max_subjects_per_dataset": e["max_subjects_per_dataset"],
                        "max_slices_per_subject": e["max_slices_per_subject"], "hd95": e["hd95"],
                        "instance_prompts": True, "cache_embeddings": cache_embeddings, "qc_overlays_per_dataset": 0}
    return out


def finetuned_segmenter(cfg: Mapping[str, Any], experiment: Experiment, run_dir: Path,
                        device: torch.device | None = None,
                        base: Segmenter | None = None) -> Segmenter:
    """The initial model with the run's best weights loaded (``base`` replaces the zoo in tests)."""
    device = device or pick_device(cfg["models"]["device"])
    seg = base if base is not None else load_model(cfg, experiment.model_key, device)
    initial = getattr(seg, "checkpoint", None)
    base_name = getattr(seg, "name", "?")
    weights = Path(run_dir) / "model_best.pt"
    load_weights(seg.model, weights)
    seg.model.eval()
    fixed_single_mask_output(seg)
    seg.name = f"{get_spec(experiment.model_key).display_name} finetuned"
    seg.checkpoint = {"path": str(weights), "sha256": sha256_file(weights), "verified": False,
                      "initial": initial}
    if experiment.strategy == "partial":  # encoder untouched: share the initial model's embeddings
        seg.embedding_source = {"model_key": experiment.model_key,
                                "sha256": (initial or {}).get("sha256", base_name)}
    return seg


def evaluate_run(cfg: Mapping[str, Any], experiment: Experiment, run_dir: Path, *, progress: bool = True,
                 base_factory: Callable[[], Segmenter] | None = None) -> pd.DataFrame:
    """Score a finished run on its evaluation datasets; returns its subject table."""
    ecfg = evaluation_cfg(cfg, list(experiment.eval_datasets), cache_embeddings=experiment.strategy == "partial")
    loader = (lambda _key: finetuned_segmenter(cfg, experiment, run_dir,
                                               base=base_factory() if base_factory else None))
    res = run_zero_shot(ecfg, [FINETUNED_KEY], run_dir=Path(run_dir) / "evaluation", progress=progress,
                        model_loader=loader)
    return aggregate.subject_table(res.slices, res.volumes) if not res.slices.empty else pd.DataFrame()


def zero_shot_dir(root: Path, model_key: str) -> Path:
    return Path(root) / "_zero_shot" / model_key


def evaluate_zero_shot(cfg: Mapping[str, Any], model_key: str, root: Path, *, progress: bool = True,
                       model_loader: Callable[[str], Segmenter] | None = None) -> Path:
    """The initial model's zero-shot scores on the evaluation selection of every prepared dataset."""
    out = zero_shot_dir(root, model_key)
    run_zero_shot(evaluation_cfg(cfg, "all", cache_embeddings=True), [model_key], run_dir=out, progress=progress,
                  model_loader=model_loader)
    return out


def predict_run_volumes(cfg: Mapping[str, Any], experiment: Experiment, run_dir: Path, *, datasets: list[str],
                        split: str | list[str], max_subjects_per_dataset: int = 0, progress: bool = True,
                        base_factory: Callable[[], Segmenter] | None = None):
    """Every labelled slice of the selected subjects segmented by a finished run (biomarkers need
    whole volumes), in ``<run>/volumes/<dataset>``; a decoder-only finetune reuses the initial
    model's cached embeddings. Returns one ``ZeroShotRun`` per dataset."""
    from mskseg_lib.evaluation.volumes import predict_volumes

    loader = (lambda _key: finetuned_segmenter(cfg, experiment, run_dir,
                                               base=base_factory() if base_factory else None))
    return {d: predict_volumes(cfg, FINETUNED_KEY, tag="volumes", datasets=[d], split=split,
                               max_subjects_per_dataset=max_subjects_per_dataset,
                               run_dir=Path(run_dir) / "volumes" / d, model_loader=loader, progress=progress,
                               cache_embeddings=experiment.strategy == "partial")
            for d in datasets}
