"""Run the whole grid: train every experiment (resuming), score it, and gather the tables.

``run_grid(cfg)`` is what notebook 03 and ``mskseg finetune`` call. Per experiment and repeat:
skip when the initial model's checkpoint is missing (reported as such), train in this process
or, with ``finetune.distributed.nproc_per_node > 1``, through ``torchrun`` (one process per
GPU), then score it. Results are merged into ``runs_dir/finetune/<tag>/``:
``experiments.csv`` (definitions, status, epochs, times), ``subject_metrics.csv``,
``slice_label_metrics.csv`` and ``history.csv``, for finetuned models and their zero-shot
baselines alike (``experiment_id`` ``zero_shot:<model>``), plus ``summary.json`` and a manifest.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import torch
import yaml

from mskseg_lib.atomic import save_csv, write_json, write_text
from mskseg_lib.data.tables import load_tables
from mskseg_lib.evaluation import aggregate
from mskseg_lib.evaluation.zero_shot import collect_results
from mskseg_lib.finetuning.engine import finetune_root, is_finished, run_dir_of, train_run
from mskseg_lib.finetuning.evaluate import FINETUNED_KEY, evaluate_run, evaluate_zero_shot, zero_shot_dir
from mskseg_lib.finetuning.grid import Experiment, expand_grid, experiments_frame
from mskseg_lib.finetuning.report import zero_shot_id
from mskseg_lib.models.interface import Segmenter
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.zoo import model_availability
from mskseg_lib.provenance import write_manifest

log = logging.getLogger(__name__)


@dataclass
class GridResult:
    root: Path
    experiments: pd.DataFrame  # one row per (experiment, repeat): definition, status, times
    subjects: pd.DataFrame  # subject Dice per experiment (and zero-shot baseline), dataset, condition
    slices: pd.DataFrame  # slice-label Dice rows, same keys
    history: pd.DataFrame  # per experiment and epoch
    models: pd.DataFrame  # initial models: model_key, model, status
    timings: dict[str, float] = field(default_factory=dict)


def launch_torchrun(cfg: Mapping[str, Any], run_id: str, nproc: int) -> None:
    """Train one experiment with ``torchrun --standalone --nproc_per_node nproc`` (blocking)."""
    root = finetune_root(cfg)
    profile_file = root / "profile.yaml"
    write_text(profile_file, yaml.safe_dump(json.loads(json.dumps(dict(cfg), default=str)), sort_keys=False))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "mskseg_lib", "finetune", "--profile", str(profile_file), "--experiment", run_id, "--train-only"]
    log.info("launching %s", " ".join(cmd))
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun training of {run_id} failed with exit code {done.returncode}")


def _read_run(run_dir: Path) -> dict[str, Any]:
    p = run_dir / "run.json"
    return json.loads(p.read_text()) if p.exists() else {}


def run_grid(cfg: Mapping[str, Any], *, progress: bool = True, only: list[str] | None = None,
             segmenter_factory: Callable[[str, torch.device], Segmenter] | None = None,
             evaluate: bool = True) -> GridResult:
    """Train and score the profile's grid (resumable); ``only`` restricts to these run ids.

    ``segmenter_factory(model_key, device)`` replaces the zoo (tests use tiny models); then
    every model counts as available.
    """
    t0 = time.perf_counter()
    f = cfg["finetune"]
    root = finetune_root(cfg)
    root.mkdir(parents=True, exist_ok=True)
    subjects, _ = load_tables(cfg)
    experiments = expand_grid(cfg, sorted(subjects["dataset"].unique()))
    model_keys = list(dict.fromkeys(e.model_key for e in experiments))
    if segmenter_factory is None:
        models = model_availability(cfg, model_keys)
    else:
        models = pd.DataFrame([{"model_key": k, "model": k, "status": "available", "checkpoint": "", "detail": ""}
                               for k in model_keys])
    available = set(models.loc[models["status"] == "available", "model_key"])
    table = experiments_frame(experiments, f["repeats"])
    by_id = {e.run_id(r): (e, r) for e in experiments for r in range(1, f["repeats"] + 1)}
    nproc = int(f["distributed"]["nproc_per_node"])
    statuses = []
    todo = [rid for rid in table["experiment_id"] if only is None or rid in only]
    for rid in todo:
        exp, repeat = by_id[rid]
        run_dir = run_dir_of(cfg, exp, repeat)
        if exp.model_key not in available:
            statuses.append({"experiment_id": rid, "status": "not run: checkpoint missing"})
            continue
        if not is_finished(run_dir):
            if nproc > 1 and segmenter_factory is None:
                launch_torchrun(cfg, rid, nproc)
            else:
                factory = (lambda dev, k=exp.model_key: segmenter_factory(k, dev)) if segmenter_factory else None
                train_run(cfg, exp, repeat, run_dir=run_dir, segmenter_factory=factory, progress=progress)
        if evaluate:
            base = (lambda k=exp.model_key: segmenter_factory(k, torch.device("cpu"))) if segmenter_factory else None
            evaluate_run(cfg, exp, run_dir, progress=progress, base_factory=base)
        statuses.append({"experiment_id": rid, "status": "finished"})
    if evaluate:
        for key in sorted(available):
            loader = (lambda k: segmenter_factory(k, torch.device("cpu"))) if segmenter_factory else None
            evaluate_zero_shot(cfg, key, root, progress=progress, model_loader=loader)
    result = collect_grid(cfg, experiments, models)
    result.timings["total_s"] = round(time.perf_counter() - t0, 3)
    write_manifest(root / "manifest.json", profile=cfg["profile"], seed=cfg["seed"], config=dict(cfg),
                   timings=result.timings, extra={"n_experiments": len(result.experiments),
                                                  "models": models.to_dict("records")})
    return result


def collect_grid(cfg: Mapping[str, Any], experiments: list[Experiment], models: pd.DataFrame) -> GridResult:
    """Everything finished so far, as tables (also written as CSV next to the runs)."""
    f = cfg["finetune"]
    root = finetune_root(cfg)
    table = experiments_frame(experiments, f["repeats"])
    by_id = {e.run_id(r): (e, r) for e in experiments for r in range(1, f["repeats"] + 1)}
    available = set(models.loc[models["status"] == "available", "model_key"])
    rows, slices, volumes, history = [], [], [], []
    for rid in table["experiment_id"]:
        exp, repeat = by_id[rid]
        run_dir = run_dir_of(cfg, exp, repeat)
        info = _read_run(run_dir)
        status = info.get("status", "pending") if exp.model_key in available else "not run: checkpoint missing"
        n_subj = info.get("n_train_subjects", {})
        rows.append({"experiment_id": rid, "status": status, "epochs_run": info.get("epochs_run", 0),
                     "best_epoch": info.get("best_epoch", 0), "stop_reason": info.get("stop_reason", ""),
                     "train_seconds": info.get("train_seconds", float("nan")),
                     "seconds_per_epoch": info.get("seconds_per_epoch", float("nan")),
                     "n_train_samples": info.get("n_train_samples", 0),
                     "n_train_subjects_max": max(n_subj.values()) if n_subj else 0,
                     "run_dir": str(run_dir)})
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
    experiments_df = table.merge(pd.DataFrame(rows), on="experiment_id", how="left")
    slices_df = pd.concat(slices, ignore_index=True) if slices else pd.DataFrame()
    volumes_df = pd.concat(volumes, ignore_index=True) if volumes else pd.DataFrame()
    subjects_df = _subject_table(slices_df, volumes_df)
    history_df = pd.concat(history, ignore_index=True) if history else pd.DataFrame(
        columns=["experiment_id", "epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds"])
    save_csv(experiments_df, root / "experiments.csv", index=False)
    save_csv(subjects_df, root / "subject_metrics.csv", index=False)
    save_csv(slices_df, root / "slice_label_metrics.csv", index=False)
    save_csv(history_df, root / "history.csv", index=False)
    finished = experiments_df[experiments_df["status"] == "finished"]
    write_json(root / "summary.json", {"n_experiments": len(experiments_df), "n_finished": len(finished),
                                      "models": models[["model_key", "model", "status"]].to_dict("records"),
                                      "train_minutes": round(float(finished["train_seconds"].sum()) / 60, 2)})
    return GridResult(root, experiments_df, subjects_df, slices_df, history_df, models)


def _subject_table(slices: pd.DataFrame, volumes: pd.DataFrame) -> pd.DataFrame:
    """``aggregate.subject_table`` per experiment (its keys do not include the experiment)."""
    if slices.empty:
        return pd.DataFrame(columns=["experiment_id", "model_key", "condition", "dataset", "subject_id",
                                     "dice_mean_slice", "iou_mean_slice", "dice_3d", "n_slices"])
    parts = []
    for rid, s in slices.groupby("experiment_id", sort=False):
        v = volumes[volumes["experiment_id"] == rid]
        t = aggregate.subject_table(s.drop(columns=["experiment_id"]), v.drop(columns=["experiment_id"]))
        t.insert(0, "experiment_id", rid)
        t["model_key"] = s["model_key"].iloc[0]
        parts.append(t)
    return pd.concat(parts, ignore_index=True)
