"""A profile's ``finetune`` section as the finetuning library's arguments.

``run_grid(**finetune_inputs(cfg))`` is what notebook 03 (and 04-06, which read its results)
and ``mskseg finetune`` run. Without a profile the same is::

    from mskseg_lib.finetuning.grid import make_experiment
    from mskseg_lib.finetuning.engine import train_run
    from mskseg_lib.finetuning.settings import TrainSettings
    exp = make_experiment("Knee_3D_DESS_Research_Anatomical_86", "lite_medsam", prepared=["Knee_3D_DESS_Research_Anatomical_86"])
    train_run(exp, prepared_dir=Path("data/default/prepared"), run_dir=Path("runs/mine/Run_1"),
              settings=TrainSettings(max_epochs=5))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from mskseg_lib.config import resolve_path
from mskseg_lib.data.tables import load_tables
from mskseg_lib.finetuning.grid import Experiment, expand_grid
from mskseg_lib.finetuning.settings import EvaluationSettings, TrainSettings
from mskseg_lib.from_profile.data import prepared_dir
from mskseg_lib.from_profile.models import model_settings
from mskseg_lib.from_profile.zero_shot import embedding_cache_dir, preparation

__all__ = ["finetune_root", "train_settings", "evaluation_settings", "grid_experiments", "finetune_inputs",
           "bench_finetune_inputs"]


def finetune_root(cfg: Mapping[str, Any]) -> Path:
    """The grid's folder: ``<runs_dir>/finetune/<finetune.tag>``."""
    return resolve_path(cfg, "runs_dir") / "finetune" / cfg["finetune"]["tag"]


def train_settings(cfg: Mapping[str, Any]) -> TrainSettings:
    """``finetune.training`` (its ``overrides`` per strategy), the seed, the process-group backend
    and the W&B project (when ``finetune.wandb.enabled``)."""
    f = cfg["finetune"]
    training = {k: v for k, v in f["training"].items() if k != "overrides"}
    return TrainSettings(**training, seed=int(cfg["seed"]), backend=f["distributed"]["backend"],
                         wandb_project=f["wandb"]["project"] if f["wandb"]["enabled"] else None,
                         strategy_overrides=dict(f["training"]["overrides"] or {}))


def evaluation_settings(cfg: Mapping[str, Any]) -> EvaluationSettings:
    """``finetune.evaluation``."""
    e = cfg["finetune"]["evaluation"]
    split = e["split"] if isinstance(e["split"], str) else tuple(e["split"])
    return EvaluationSettings(split=split, conditions=tuple(e["conditions"]),
                              max_subjects_per_dataset=e["max_subjects_per_dataset"],
                              max_slices_per_subject=e["max_slices_per_subject"], hd95=e["hd95"])


def grid_experiments(cfg: Mapping[str, Any], prepared: Sequence[str] | None = None) -> list[Experiment]:
    """The profile's grid (``finetune.experiments`` with ``finetune.defaults``) over the prepared
    datasets (read from the prepared tables when ``prepared`` is None)."""
    if prepared is None:
        subjects, _ = load_tables(prepared_dir(cfg))
        prepared = sorted(subjects["dataset"].unique())
    f = cfg["finetune"]
    return expand_grid(f["experiments"], f["defaults"], list(prepared))


def finetune_inputs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Every argument of ``finetuning.runner.run_grid`` (and ``run_finetune``) from the profile:
    experiments, prepared_dir, root, settings, evaluation, models, repeats, nproc_per_node,
    preparation, embedding_cache_dir and the profile itself (provenance)."""
    f = cfg["finetune"]
    return {"experiments": grid_experiments(cfg), "prepared_dir": prepared_dir(cfg), "root": finetune_root(cfg),
            "settings": train_settings(cfg), "evaluation": evaluation_settings(cfg), "models": model_settings(cfg),
            "repeats": int(f["repeats"]), "nproc_per_node": int(f["distributed"]["nproc_per_node"]),
            "preparation": preparation(cfg), "embedding_cache_dir": embedding_cache_dir(cfg), "profile": dict(cfg)}


def bench_finetune_inputs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``prepared_dir``, ``settings`` and ``models`` of ``finetuning.benchmark.bench_finetune``."""
    return {"prepared_dir": prepared_dir(cfg), "settings": train_settings(cfg), "models": model_settings(cfg)}
