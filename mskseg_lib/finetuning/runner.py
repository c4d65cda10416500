"""Run the whole grid: train every experiment (resuming), score it, and gather the tables.

``run_grid(experiments, prepared_dir=..., root=...)`` is what notebook 03 calls (through
``mskseg_lib.from_profile.finetune.finetune_inputs``) and :func:`run_finetune` what
``mskseg finetune`` calls. Per experiment and repeat: skip when the initial model's checkpoint
is missing (reported as such), train in this process or, with ``nproc_per_node > 1``, through
``torchrun`` (one process per GPU, :mod:`.torchrun_job`), then score it. Results are merged
into ``root`` (``runs/<profile>/finetune/<tag>`` under a profile): ``experiments.csv``
(definitions, status, epochs, times), ``subject_metrics.csv``, ``slice_label_metrics.csv`` and
``history.csv``, for finetuned models and their zero-shot baselines alike (``experiment_id``
``zero_shot:<model>``), plus ``summary.json`` and a manifest.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from mskseg_lib.atomic import atomic_path, save_csv, write_json
from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.zero_shot import collect_results
from mskseg_lib.finetuning.engine import SegmenterFactory, train_run
from mskseg_lib.finetuning.evaluate import FINETUNED_KEY, evaluate_run, evaluate_zero_shot, zero_shot_dir
from mskseg_lib.finetuning.grid import Experiment, GridError, experiments_frame
from mskseg_lib.finetuning.report import zero_shot_id
from mskseg_lib.finetuning.run_folder import is_finished, read_run, run_dir_of
from mskseg_lib.finetuning.settings import EvaluationSettings, TrainSettings
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import model_availability
from mskseg_lib.provenance import write_manifest

__all__ = ["GridResult", "FinetuneOutcome", "grid_runs", "select_runs", "train_runs", "launch_torchrun",
           "run_grid", "collect_grid", "run_finetune"]

log = logging.getLogger(__name__)
HISTORY_COLUMNS = ["experiment_id", "epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds"]
SUBJECT_COLUMNS = ["experiment_id", "model_key", "condition", "dataset", "subject_id", "dice_mean_slice",
                   "iou_mean_slice", "dice_3d", "n_slices"]


@dataclass
class GridResult:
    """Everything a grid has produced so far, as tables (also written as CSV under ``root``)."""

    root: Path
    experiments: pd.DataFrame  # one row per (experiment, repeat): definition, status, times
    subjects: pd.DataFrame  # subject Dice per experiment (and zero-shot baseline), dataset, condition
    slices: pd.DataFrame  # slice-label Dice rows, same keys
    history: pd.DataFrame  # per experiment and epoch
    models: pd.DataFrame  # initial models: model_key, model, status
    timings: dict[str, float] = field(default_factory=dict)
    runs: dict[str, tuple[Experiment, int]] = field(default_factory=dict)  # run id -> (experiment, repeat)


@dataclass
class FinetuneOutcome:
    """What :func:`run_finetune` did: the whole grid trained and scored (``grid``), or, in
    train-only mode, the summaries of the runs trained (``trained``: filled on rank 0 only, so
    one process reports under torchrun)."""

    grid: GridResult | None = None
    trained: dict[str, dict[str, Any]] = field(default_factory=dict)


def grid_runs(experiments: Sequence[Experiment], repeats: int = 1) -> dict[str, tuple[Experiment, int]]:
    """Every run of a grid: run id (``<task>/<group>/Run_N``) -> (experiment, repeat), in grid order.

    Parameters
    ----------
    experiments : the grid (``grid.expand_grid``).
    repeats : runs per experiment (Run_1..Run_N, seed + N - 1).

    Returns
    -------
    dict
        Run id -> (experiment, repeat).
    """
    return {e.run_id(r): (e, r) for e in experiments for r in range(1, int(repeats) + 1)}


def select_runs(runs: Mapping[str, tuple[Experiment, int]], only: Sequence[str] | None) -> list[str]:
    """The run ids to work on, in grid order: those of ``only``, or every run.

    Raises
    ------
    GridError
        ``only`` names a run that is not in the grid.
    """
    if only is None:
        return list(runs)
    unknown = sorted(set(only) - set(runs))
    if unknown:
        raise GridError(f"unknown run id(s) {unknown}; the grid has {len(runs)} runs "
                        "(list them with `mskseg finetune --profile NAME --list`)")
    wanted = set(only)
    return [rid for rid in runs if rid in wanted]


def _models_table(model_keys: Sequence[str], models: ModelSettings,
                  segmenter_factory: SegmenterFactory | None) -> pd.DataFrame:
    """Initial models with their status; with a ``segmenter_factory`` every model counts as available."""
    if segmenter_factory is None:
        return model_availability(list(model_keys), models)
    return pd.DataFrame([{"model_key": k, "model": k, "status": "available", "checkpoint": "", "detail": ""}
                         for k in model_keys])


def train_runs(runs: Mapping[str, tuple[Experiment, int]], run_ids: Sequence[str], *, prepared_dir: Path,
               root: Path, settings: TrainSettings = TrainSettings(), models: ModelSettings = ModelSettings(),
               preparation: Mapping[str, Any] | None = None, embedding_cache_dir: Path | None = None,
               profile: Mapping[str, Any] | None = None, progress: bool = True,
               segmenter_factory: SegmenterFactory | None = None) -> dict[str, dict[str, Any]]:
    """Train the named runs in this process, one after the other (every rank under torchrun).

    Parameters
    ----------
    runs : :func:`grid_runs` of the grid.
    run_ids : the runs to train.
    prepared_dir, root : the prepared data; the grid's folder (run folders below it).
    settings, models, preparation, embedding_cache_dir, profile, progress, segmenter_factory :
        as for :func:`~mskseg_lib.finetuning.engine.train_run`.

    Returns
    -------
    dict
        Run id -> its ``run.json`` summary.
    """
    out = {}
    for rid in run_ids:
        exp, repeat = runs[rid]
        out[rid] = train_run(exp, prepared_dir=prepared_dir, run_dir=run_dir_of(root, exp, repeat), settings=settings,
                             models=models, repeat=repeat, preparation=preparation,
                             embedding_cache_dir=embedding_cache_dir, profile=profile,
                             segmenter_factory=segmenter_factory, progress=progress)
    return out


def launch_torchrun(runs: Mapping[str, tuple[Experiment, int]], run_ids: Sequence[str], nproc: int, *,
                    root: Path, **train_kwargs: Any) -> None:
    """Train runs with ``torchrun --standalone --nproc_per_node nproc`` (blocking), one process per GPU.

    The arguments of :func:`train_runs` are written to a job file under ``root/_torchrun`` that
    every rank reads (:mod:`mskseg_lib.finetuning.torchrun_job`).

    Parameters
    ----------
    runs, run_ids : as for :func:`train_runs`.
    nproc : processes (GPUs) on this machine.
    root : the grid's folder.
    train_kwargs : the other keyword arguments of :func:`train_runs` (no ``segmenter_factory``).

    Raises
    ------
    RuntimeError
        torchrun exited with an error.
    """
    job = Path(root) / "_torchrun" / f"job_{os.getpid()}_{time.time_ns()}.pkl"
    with atomic_path(job) as tmp:
        Path(tmp).write_bytes(pickle.dumps({"runs": {r: runs[r] for r in run_ids}, "run_ids": list(run_ids),
                                            "root": Path(root), **train_kwargs}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "mskseg_lib.finetuning.torchrun_job", str(job)]
    log.info("launching %s", " ".join(cmd))
    done = subprocess.run(cmd, check=False)
    job.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun training of {list(run_ids)} failed with exit code {done.returncode}")


def run_grid(experiments: Sequence[Experiment], *, prepared_dir: Path, root: Path,
             settings: TrainSettings = TrainSettings(), evaluation: EvaluationSettings = EvaluationSettings(),
             models: ModelSettings = ModelSettings(), repeats: int = 1, nproc_per_node: int = 1,
             preparation: Mapping[str, Any] | None = None, embedding_cache_dir: Path | None = None,
             profile: Mapping[str, Any] | None = None, only: Sequence[str] | None = None, evaluate: bool = True,
             progress: bool = True, segmenter_factory: SegmenterFactory | None = None) -> GridResult:
    """Train and score a grid (resumable): finished runs are kept, interrupted ones continue.

    Parameters
    ----------
    experiments : the grid (``grid.expand_grid``, or ``[grid.make_experiment(...)]``).
    prepared_dir : the prepared data.
    root : the grid's folder: run folders, zero-shot baselines, merged tables, manifest.
    settings : training settings (the study's by default; strategy overrides applied per run).
    evaluation : how finetuned models and baselines are scored.
    models : where the zoo's weights are and which device runs them.
    repeats : runs per experiment.
    nproc_per_node : > 1 trains each run with torchrun, one process per GPU.
    preparation : preparation settings for the run folders' fingerprints (None: not checked).
    embedding_cache_dir : the shared embedding cache (None: frozen-encoder embeddings in memory;
        baselines and evaluations then use the zero-shot engine's default beside their run).
    profile : the profile these arguments came from, recorded in manifests (provenance).
    only : run ids to train and score (default: all); every finished run is still collected.
    evaluate : score the runs and the baselines (False: train only).
    progress : progress bars.
    segmenter_factory : ``(model_key, device) -> Segmenter`` replacing the zoo (tests); every
        model then counts as available and training stays in this process.

    Returns
    -------
    GridResult
        The merged tables of everything finished so far.
    """
    t0 = time.perf_counter()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    runs = grid_runs(experiments, repeats)
    todo = select_runs(runs, only)
    model_keys = list(dict.fromkeys(e.model_key for e in experiments))
    table = _models_table(model_keys, models, segmenter_factory)
    available = set(table.loc[table["status"] == "available", "model_key"])
    train_kw = dict(prepared_dir=prepared_dir, settings=settings, models=models, preparation=preparation,
                    embedding_cache_dir=embedding_cache_dir, profile=profile, progress=progress)
    score_kw = dict(prepared_dir=prepared_dir, evaluation=evaluation, mask_grid_px=settings.mask_grid_px,
                    models=models, seed=settings.seed, preparation=preparation,
                    embedding_cache_dir=embedding_cache_dir, profile=profile, progress=progress)
    for rid in todo:
        exp, repeat = runs[rid]
        if exp.model_key not in available:
            continue
        run_dir = run_dir_of(root, exp, repeat)
        if not is_finished(run_dir):
            if nproc_per_node > 1 and segmenter_factory is None:
                launch_torchrun(runs, [rid], nproc_per_node, root=root, **train_kw)
            else:
                train_runs(runs, [rid], root=root, segmenter_factory=segmenter_factory, **train_kw)
        if evaluate:
            base = (lambda k=exp.model_key: segmenter_factory(k, torch.device("cpu"))) if segmenter_factory else None
            evaluate_run(exp, run_dir, base_factory=base, **score_kw)
    if evaluate:
        for key in sorted(available):
            loader = (lambda k: segmenter_factory(k, torch.device("cpu"))) if segmenter_factory else None
            evaluate_zero_shot(key, root, model_loader=loader, **score_kw)
    result = collect_grid(experiments, table, root=root, repeats=repeats)
    result.timings["total_s"] = round(time.perf_counter() - t0, 3)
    write_manifest(root / "manifest.json", profile=str((profile or {}).get("profile", "")), seed=settings.seed,
                   config=dict(profile or {}), timings=result.timings,
                   extra={"n_experiments": len(result.experiments), "models": table.to_dict("records")})
    return result


def _experiment_row(rid: str, run_dir: Path, model_available: bool) -> dict[str, Any]:
    """One run's status, epochs and times from its ``run.json`` (pending when absent)."""
    info = read_run(run_dir)
    status = info.get("status", "pending") if model_available else "not run: checkpoint missing"
    n_subj = info.get("n_train_subjects", {})
    return {"experiment_id": rid, "status": status, "epochs_run": info.get("epochs_run", 0),
            "best_epoch": info.get("best_epoch", 0), "stop_reason": info.get("stop_reason", ""),
            "train_seconds": info.get("train_seconds", float("nan")),
            "seconds_per_epoch": info.get("seconds_per_epoch", float("nan")),
            "n_train_samples": info.get("n_train_samples", 0),
            "n_train_subjects_max": max(n_subj.values()) if n_subj else 0, "run_dir": str(run_dir)}


def collect_grid(experiments: Sequence[Experiment], models: pd.DataFrame, *, root: Path,
                 repeats: int = 1) -> GridResult:
    """Everything finished so far, as tables (also written as CSV and ``summary.json`` in ``root``).

    Parameters
    ----------
    experiments : the grid.
    models : initial models with their status (``model_key``, ``model``, ``status``): runs of an
        unavailable model are reported as "not run: checkpoint missing".
    root : the grid's folder.
    repeats : runs per experiment.

    Returns
    -------
    GridResult
        ``experiments`` (definitions + status), ``subjects``, ``slices`` (finetuned runs and the
        zero-shot baselines, ``experiment_id = "zero_shot:<model>"``), ``history``, ``models``.
    """
    root = Path(root)
    runs = grid_runs(experiments, repeats)
    available = set(models.loc[models["status"] == "available", "model_key"])
    rows, slices, volumes, history = [], [], [], []
    for rid, (exp, repeat) in runs.items():
        run_dir = run_dir_of(root, exp, repeat)
        rows.append(_experiment_row(rid, run_dir, exp.model_key in available))
        hist = run_dir / "history.json"
        if hist.exists():
            history.append(pd.DataFrame(json.loads(hist.read_text())).assign(experiment_id=rid))
        s, v = collect_results(run_dir / "evaluation", [FINETUNED_KEY])
        if not s.empty:
            name = f"{get_spec(exp.model_key).display_name} finetuned"
            slices.append(s.assign(experiment_id=rid, model_key=exp.model_key, model=name))
            volumes.append(v.assign(experiment_id=rid, model_key=exp.model_key, model=name))
    for key in sorted(available):
        s, v = collect_results(zero_shot_dir(root, key), [key])
        if not s.empty:
            name = get_spec(key).display_name
            slices.append(s.assign(experiment_id=zero_shot_id(key), model=name))
            volumes.append(v.assign(experiment_id=zero_shot_id(key), model=name))
    experiments_df = experiments_frame(list(experiments), repeats).merge(pd.DataFrame(rows), on="experiment_id",
                                                                         how="left")
    slices_df = pd.concat(slices, ignore_index=True) if slices else pd.DataFrame()
    volumes_df = pd.concat(volumes, ignore_index=True) if volumes else pd.DataFrame()
    subjects_df = _subject_table(slices_df, volumes_df)
    history_df = pd.concat(history, ignore_index=True) if history else pd.DataFrame(columns=HISTORY_COLUMNS)
    _write_tables(root, experiments_df, subjects_df, slices_df, history_df, models)
    return GridResult(root, experiments_df, subjects_df, slices_df, history_df, models, runs=runs)


def _write_tables(root: Path, experiments: pd.DataFrame, subjects: pd.DataFrame, slices: pd.DataFrame,
                  history: pd.DataFrame, models: pd.DataFrame) -> None:
    """The merged CSVs and ``summary.json`` of the grid."""
    save_csv(experiments, root / "experiments.csv", index=False)
    save_csv(subjects, root / "subject_metrics.csv", index=False)
    save_csv(slices, root / "slice_label_metrics.csv", index=False)
    save_csv(history, root / "history.csv", index=False)
    finished = experiments[experiments["status"] == "finished"]
    write_json(root / "summary.json", {"n_experiments": len(experiments), "n_finished": len(finished),
                                       "models": models[["model_key", "model", "status"]].to_dict("records"),
                                       "train_minutes": round(float(finished["train_seconds"].sum()) / 60, 2)})


def _subject_table(slices: pd.DataFrame, volumes: pd.DataFrame) -> pd.DataFrame:
    """``aggregate.subject_table`` per experiment (its keys do not include the experiment)."""
    if slices.empty:
        return pd.DataFrame(columns=SUBJECT_COLUMNS)
    parts = []
    for rid, s in slices.groupby("experiment_id", sort=False):
        v = volumes[volumes["experiment_id"] == rid]
        t = aggregate.subject_table(s.drop(columns=["experiment_id"]), v.drop(columns=["experiment_id"]))
        t.insert(0, "experiment_id", rid)
        t["model_key"] = s["model_key"].iloc[0]
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def run_finetune(experiments: Sequence[Experiment], *, prepared_dir: Path, root: Path, repeats: int = 1,
                 only: Sequence[str] | None = None, train_only: bool = False, **kwargs: Any) -> FinetuneOutcome:
    """What ``mskseg finetune`` does: the whole grid, or (``train_only``, or launched by torchrun)
    only the training of the named runs in this process.

    Under torchrun (``WORLD_SIZE`` > 1) every rank trains the named runs together (DDP); scoring
    is left to a later single-process call. Otherwise :func:`run_grid` trains and scores.

    Parameters
    ----------
    experiments, prepared_dir, root, repeats, only : as for :func:`run_grid`.
    train_only : train the runs, do not score or collect them.
    kwargs : the other keyword arguments of :func:`run_grid` (those of :func:`train_runs` in
        train-only mode; ``evaluation`` and ``nproc_per_node`` are then not used).

    Returns
    -------
    FinetuneOutcome
        ``grid`` after a whole-grid call; ``trained`` (rank 0) after training only.
    """
    runs = grid_runs(experiments, repeats)
    run_ids = select_runs(runs, only)
    if train_only or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("evaluation", "nproc_per_node", "evaluate")}
        trained = train_runs(runs, run_ids, prepared_dir=prepared_dir, root=root, **kwargs)
        return FinetuneOutcome(trained=trained if int(os.environ.get("RANK", "0")) == 0 else {})
    return FinetuneOutcome(grid=run_grid(experiments, prepared_dir=prepared_dir, root=root, repeats=repeats,
                                         only=only, **kwargs))
