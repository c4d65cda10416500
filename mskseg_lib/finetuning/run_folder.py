"""A run folder: where it lives, whether it finished, what it was trained with, its weight files.

``<root>/<task>/<group>/Run_N`` (``root`` is the grid's folder, e.g.
``runs/<profile>/finetune/<tag>``) holds ``settings.json`` (the fingerprint of what is trained:
a folder made with other settings is refused, never mixed), ``checkpoint_latest.pt`` /
``checkpoint_best.pt`` while training, the bare weight files ``model_best.pt`` /
``model_last.pt`` at the end and ``run.json``, written last, which marks the run finished.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from mskseg_lib.atomic import atomic_path, write_json
from mskseg_lib.evaluation.zero_shot import RunMismatch
from mskseg_lib.finetuning.grid import Experiment
from mskseg_lib.models.checkpoints import strip_prefixes
from mskseg_lib.provenance import fingerprint

__all__ = ["FINISHED", "run_dir_of", "is_finished", "read_run", "check_settings", "save_checkpoint",
           "bare_state_dict", "export_final"]

FINISHED = "run.json"


def run_dir_of(root: Path, experiment: Experiment, repeat: int) -> Path:
    """The run folder of an experiment's repeat: ``root/<task>/<group>/Run_<repeat>``.

    Parameters
    ----------
    root : the grid's folder (``runs/<profile>/finetune/<tag>`` under a profile).
    experiment : the experiment.
    repeat : 1, 2, ... (seed + repeat - 1).

    Returns
    -------
    Path
        The run folder (not created).
    """
    return Path(root) / experiment.run_id(repeat)


def is_finished(run_dir: Path) -> bool:
    """Whether the run's ``run.json`` (written last) exists."""
    return (Path(run_dir) / FINISHED).exists()


def read_run(run_dir: Path) -> dict[str, Any]:
    """The run's summary (``run.json``); empty when it has not finished."""
    p = Path(run_dir) / FINISHED
    return json.loads(p.read_text()) if p.exists() else {}


def check_settings(run_dir: Path, experiment: Experiment, training: Mapping[str, Any], seed: int,
                   write: bool = True, inputs: Mapping[str, Any] | None = None) -> None:
    """Refuse to resume (or reuse) a run folder made with other training settings.

    ``max_epochs`` is left out: an interrupted run may be resumed with a different budget (a
    finished run stays finished); so are the ablation groups and evaluation datasets, which do
    not change what is trained.

    Parameters
    ----------
    run_dir : the run folder; ``settings.json`` there holds the fingerprint.
    experiment : what is trained (task, datasets, model, strategy, box shift, subjects).
    training : the training settings as the profile names them
        (:meth:`~mskseg_lib.finetuning.settings.TrainSettings.training_record`).
    seed : the run's seed (base seed + repeat - 1).
    write : write ``settings.json`` when absent (rank 0 only under torchrun).
    inputs : what made the inputs (encoder input convention, preparation settings); part of the
        fingerprint when given.

    Raises
    ------
    RunMismatch
        The folder was made with other settings; names the changed ones.
    """
    training = {k: v for k, v in training.items() if k != "max_epochs"}
    what = {k: experiment.to_record()[k] for k in ("task", "train_datasets", "model_key", "strategy",
                                                     "box_shift_grid_px", "train_subjects")}
    settings = {"experiment": what, "training": training, "seed": seed}
    if inputs:
        settings["inputs"] = dict(inputs)
    digest = fingerprint(settings)
    marker = Path(run_dir) / "settings.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if old.get("fingerprint") != digest:
            before = old["settings"]["training"]
            changed = sorted(k for k in set(training) | set(before) if before.get(k) != training.get(k))
            changed += sorted(f"inputs.{k}" for k in (inputs or {})
                              if (old["settings"].get("inputs") or {}).get(k) != inputs[k])
            raise RunMismatch(f"{run_dir}: trained with other settings (changed: {changed or 'experiment/seed'}); "
                              "choose a new finetune.tag or delete the folder")
    elif write:
        write_json(marker, {"fingerprint": digest, "settings": settings})


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to ``path`` atomically (a crash never leaves half a checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def bare_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The zoo model's weights with DDP / wrapper prefixes removed (``module.model.x`` -> ``x``)."""
    return strip_prefixes({k: v.detach().cpu() for k, v in module.state_dict().items()})


def export_final(run_dir: Path) -> None:
    """Bare, prefix-free weight files from the training checkpoints (single-process loadable):
    ``model_best.pt`` from ``checkpoint_best.pt``, ``model_last.pt`` from ``checkpoint_latest.pt``."""
    for name, out in (("checkpoint_best.pt", "model_best.pt"), ("checkpoint_latest.pt", "model_last.pt")):
        state = torch.load(Path(run_dir) / name, map_location="cpu", weights_only=False)
        save_checkpoint(Path(run_dir) / out, strip_prefixes(state["model"]))
