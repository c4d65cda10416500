"""Scoring finetuned models with the zero-shot engine, on the same slices as their baseline.

A finetuned model is its zoo architecture with ``model_best.pt`` loaded; it is scored by
``run_zero_shot`` (box prompts from the ground truth, Dice/IoU at the original size) on the
evaluation selection (:class:`~mskseg_lib.finetuning.settings.EvaluationSettings`, the test
split by default) of its evaluation datasets, into ``Run_N/evaluation``. Its zero-shot baseline
is the initial model on the same selection, scored once per model into
``<root>/_zero_shot/<model>``. A decoder-only finetune keeps the initial encoder, so it reuses
the zero-shot embedding cache (no encoding). Shifted prompt conditions count their shift on the
training grid (``TrainSettings.mask_grid_px``), so ``shift_grid_px: 20`` there is the box shift
``box_shift_grid_px: 20`` of training; both arms see the same boxes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.volumes import predict_volumes
from mskseg_lib.evaluation.zero_shot import SliceSelection, ZeroShotRun, ZeroShotSettings, run_zero_shot
from mskseg_lib.finetuning.grid import Experiment
from mskseg_lib.finetuning.network import fixed_single_mask_output
from mskseg_lib.finetuning.settings import EvaluationSettings
from mskseg_lib.models.checkpoints import load_weights, sha256_file
from mskseg_lib.models.interface import Segmenter, pick_device
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import load_model

__all__ = ["FINETUNED_KEY", "scoring_settings", "finetuned_segmenter", "evaluate_run", "zero_shot_dir",
           "evaluate_zero_shot", "predict_run_volumes"]

FINETUNED_KEY = "finetuned"


def scoring_settings(evaluation: EvaluationSettings, datasets: Sequence[str] | str, *, mask_grid_px: int,
                     cache_embeddings: bool, models: ModelSettings, seed: int,
                     preparation: Mapping[str, Any] | None) -> tuple[SliceSelection, ZeroShotSettings]:
    """The zero-shot engine's selection and settings for scoring finetuned models and baselines.

    Parameters
    ----------
    evaluation : split, prompt conditions, subject and slice caps, HD95.
    datasets : the datasets to score (names, or ``"all"``).
    mask_grid_px : the training grid, on which shifted conditions count their shift.
    cache_embeddings : use the shared embedding cache (a decoder-only finetune or a baseline).
    models, seed, preparation : as for the zero-shot runs (device, input convention; the seed of
        random prompt conditions; the preparation settings in the run folder's fingerprint).

    Returns
    -------
    (SliceSelection, ZeroShotSettings)
        One box per connected piece of multi-instance labels, no QC overlays.
    """
    selection = SliceSelection(split=evaluation.split, datasets=datasets if isinstance(datasets, str) else tuple(datasets),
                               max_subjects_per_dataset=evaluation.max_subjects_per_dataset,
                               max_slices_per_subject=evaluation.max_slices_per_subject)
    settings = ZeroShotSettings(conditions=tuple(evaluation.conditions), mask_grid_px=int(mask_grid_px),
                                instance_prompts=True, hd95=evaluation.hd95, cache_embeddings=cache_embeddings,
                                seed=seed, models=models, preparation=preparation)
    return selection, settings


def finetuned_segmenter(experiment: Experiment, run_dir: Path, *, models: ModelSettings = ModelSettings(),
                        device: torch.device | None = None, base: Segmenter | None = None) -> Segmenter:
    """The initial model with the run's best weights (``model_best.pt``) loaded, ready to score.

    Parameters
    ----------
    experiment : the run's experiment (initial model, strategy).
    run_dir : the finished run folder.
    models : where the initial model's checkpoint is; the device when ``device`` is None.
    device : where to put it.
    base : the initial model already built (tests pass tiny models); replaces the zoo.

    Returns
    -------
    Segmenter
        Named ``"<model> finetuned"``; ``checkpoint`` records the weights file and its digest; a
        decoder-only finetune shares the initial model's embedding cache (``embedding_source``).
    """
    device = device or pick_device(models.device)
    seg = base if base is not None else load_model(experiment.model_key, models, device)
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


def _loader(experiment: Experiment, run_dir: Path, models: ModelSettings,
            base_factory: Callable[[], Segmenter] | None) -> Callable[[str], Segmenter]:
    return lambda _key: finetuned_segmenter(experiment, run_dir, models=models,
                                            base=base_factory() if base_factory else None)


def evaluate_run(experiment: Experiment, run_dir: Path, *, prepared_dir: Path,
                 evaluation: EvaluationSettings = EvaluationSettings(), mask_grid_px: int = 256,
                 models: ModelSettings = ModelSettings(), seed: int = 42,
                 preparation: Mapping[str, Any] | None = None, embedding_cache_dir: Path | None = None,
                 profile: Mapping[str, Any] | None = None, progress: bool = True,
                 base_factory: Callable[[], Segmenter] | None = None) -> pd.DataFrame:
    """Score a finished run on its evaluation datasets into ``run_dir/evaluation`` (resumable).

    Parameters
    ----------
    experiment, run_dir : the finished run.
    prepared_dir : the prepared data.
    evaluation : what to score (split, conditions, caps).
    mask_grid_px : the training grid (shifted conditions count on it).
    models, seed, preparation, embedding_cache_dir, profile : as for ``run_zero_shot``.
    progress : progress bars.
    base_factory : builds the initial model instead of the zoo (tests).

    Returns
    -------
    pandas.DataFrame
        The run's subject table (``aggregate.subject_table``); empty without slice results.
    """
    selection, settings = scoring_settings(evaluation, list(experiment.eval_datasets), mask_grid_px=mask_grid_px,
                                           cache_embeddings=True, models=models,
                                           seed=seed, preparation=preparation)
    res = run_zero_shot(prepared_dir, Path(run_dir) / "evaluation", [FINETUNED_KEY], selection, settings,
                        cache_dir=embedding_cache_dir, profile=profile, progress=progress,
                        model_loader=_loader(experiment, Path(run_dir), models, base_factory))
    return aggregate.subject_table(res.slices, res.volumes) if not res.slices.empty else pd.DataFrame()


def zero_shot_dir(root: Path, model_key: str) -> Path:
    """Where the grid's zero-shot baseline of an initial model is scored: ``root/_zero_shot/<key>``."""
    return Path(root) / "_zero_shot" / model_key


def evaluate_zero_shot(model_key: str, root: Path, *, prepared_dir: Path,
                       evaluation: EvaluationSettings = EvaluationSettings(), mask_grid_px: int = 256,
                       models: ModelSettings = ModelSettings(), seed: int = 42,
                       preparation: Mapping[str, Any] | None = None, embedding_cache_dir: Path | None = None,
                       profile: Mapping[str, Any] | None = None, progress: bool = True,
                       model_loader: Callable[[str], Segmenter] | None = None) -> Path:
    """The initial model's zero-shot scores on the evaluation selection of every prepared dataset.

    Parameters are those of :func:`evaluate_run`; ``model_loader`` replaces the zoo (tests).

    Returns
    -------
    Path
        The run folder, :func:`zero_shot_dir` of ``root``.
    """
    out = zero_shot_dir(root, model_key)
    selection, settings = scoring_settings(evaluation, "all", mask_grid_px=mask_grid_px, cache_embeddings=True,
                                           models=models, seed=seed, preparation=preparation)
    run_zero_shot(prepared_dir, out, [model_key], selection, settings, cache_dir=embedding_cache_dir,
                  profile=profile, progress=progress, model_loader=model_loader)
    return out


def predict_run_volumes(experiment: Experiment, run_dir: Path, *, prepared_dir: Path, datasets: Sequence[str],
                        split: str | Sequence[str], settings: ZeroShotSettings = ZeroShotSettings(),
                        max_subjects_per_dataset: int = 0, cache_dir: Path | None = None,
                        profile: Mapping[str, Any] | None = None, progress: bool = True,
                        base_factory: Callable[[], Segmenter] | None = None) -> dict[str, ZeroShotRun]:
    """Every labelled slice of the selected subjects segmented by a finished run (biomarkers need
    whole volumes), in ``<run>/volumes/<dataset>``; a decoder-only finetune reuses the initial
    model's cached embeddings.

    Parameters
    ----------
    experiment, run_dir : the finished run.
    prepared_dir : the prepared data.
    datasets : the datasets to segment.
    split : the split(s) whose subjects are segmented.
    settings : the zero-shot engine's settings for whole volumes (``settings.models`` finds the
        initial model).
    max_subjects_per_dataset : 0 = all.
    cache_dir, profile, progress : as for ``predict_volumes``.
    base_factory : builds the initial model instead of the zoo (tests).

    Returns
    -------
    dict
        Dataset name -> its :class:`ZeroShotRun`.
    """
    loader = _loader(experiment, Path(run_dir), settings.models, base_factory)
    return {d: predict_volumes(prepared_dir, Path(run_dir) / "volumes" / d, FINETUNED_KEY, [d], split, settings,
                               max_subjects_per_dataset=max_subjects_per_dataset, cache_dir=cache_dir,
                               profile=profile, model_loader=loader, progress=progress)
            for d in datasets}
