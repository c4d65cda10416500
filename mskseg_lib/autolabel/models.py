"""The segmenters AutoLabel runs: which zoo and finetuned models, and which one a user gets.

* :func:`study_models`: notebook 06's comparison: each zoo model whose weights are present, and
  from notebook 03's grid the best finetuned model per dataset (validation Dice) without and
  with box-shift augmentation, each applied to the datasets it is best for; a table says which
  models run and why the others do not.
* :func:`choose_segmenter`: ``mskseg autolabel``'s model: the one asked for, or the first of a
  list whose weights are present.

Each model is a :class:`~mskseg_lib.autolabel.study.StudyModel`: loaded only when first needed,
with an identity (weights file, encoder input) that enters the study's fingerprints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from mskseg_lib.autolabel.pipeline import file_key
from mskseg_lib.autolabel.study import StudyModel, best_finetuned
from mskseg_lib.data.errors import DataError
from mskseg_lib.models.checkpoints import checkpoints_dir
from mskseg_lib.models.registry import get_spec
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import load_model, model_availability

__all__ = ["MODEL_TABLE_COLUMNS", "choose_segmenter", "finetuned_study_models", "study_models", "zoo_study_models"]

MODEL_TABLE_COLUMNS = ["model", "kind", "datasets", "status", "detail"]


def zoo_study_models(model_keys: Sequence[str], models: ModelSettings) -> tuple[list[StudyModel], list[dict]]:
    """Zero-shot zoo models of the comparison: those whose weights are present, and a table row
    for every model asked for (``available`` or why not).

    Parameters
    ----------
    model_keys : zoo names.
    models : where the weights are and how they run.

    Returns
    -------
    (models that can run, one row per model asked for: model, kind, datasets, status, detail).
    """
    out, rows = [], []
    for r in model_availability(list(model_keys), models).itertuples():
        rows.append({"model": f"{r.model} zero-shot", "kind": "zero-shot", "datasets": "all", "status": r.status,
                     "detail": r.detail or r.checkpoint})
        if r.status == "available":
            key = str(r.model_key)
            out.append(StudyModel(key, f"{r.model} zero-shot", (lambda k=key: load_model(k, models)),
                                  identity={"checkpoint": r.checkpoint, "file": file_key(Path(r.checkpoint)),
                                            "autocast_bf16": models.autocast_bf16,
                                            "input_normalisation": models.input_normalisation}))
    return out, rows


def finetuned_study_models(grid: Any, datasets: Sequence[str], models: ModelSettings) -> tuple[list[StudyModel], list[dict]]:
    """The best finetuned model per dataset of notebook 03's grid, without and with box shift.

    Parameters
    ----------
    grid : a ``finetuning.runner.GridResult`` (its ``experiments``, ``history``, ``runs`` and
        ``root``).
    datasets : the datasets AutoLabel scores.
    models : where the initial models' weights are.

    Returns
    -------
    (one model per chosen experiment, applied to the datasets it is best for; table rows, one
    per model and one per dataset without a finished experiment).
    """
    from mskseg_lib.finetuning.evaluate import finetuned_segmenter
    from mskseg_lib.finetuning.run_folder import run_dir_of

    best = best_finetuned(grid.experiments, grid.history, datasets)
    runs = dict(getattr(grid, "runs", {}) or {}) if not best.empty else {}
    out, rows = [], []
    for (eid, shifted), g in best.groupby(["experiment_id", "box_shift"], sort=True):
        if eid not in runs:
            rows.append({"model": eid, "kind": "finetuned", "datasets": ",".join(g["dataset"]),
                         "status": "not run: experiment not in this profile's grid", "detail": ""})
            continue
        exp, rep = runs[eid]
        run_dir = run_dir_of(grid.root, exp, rep)
        label = f"{get_spec(exp.model_key).display_name} finetuned{' + box shift' if shifted else ''}"
        out.append(StudyModel(f"finetuned-{eid}", label,
                              (lambda e=exp, d=run_dir: finetuned_segmenter(e, d, models=models)),
                              datasets=tuple(g["dataset"]),
                              identity={"weights": file_key(run_dir / "model_best.pt"),
                                        "input_normalisation": models.input_normalisation}))
        rows.append({"model": label, "kind": "finetuned", "datasets": ",".join(g["dataset"]), "status": "available",
                     "detail": eid})
    for shifted in (False, True):
        have = set(best.loc[best["box_shift"] == shifted, "dataset"])
        for d in datasets:
            if d not in have:
                rows.append({"model": f"finetuned{' + box shift' if shifted else ''}", "kind": "finetuned",
                             "datasets": d, "status": "not run: no finished experiment trained on this dataset",
                             "detail": ""})
    return out, rows


def study_models(model_keys: Sequence[str], models: ModelSettings | None = None, *, datasets: Sequence[str] = (),
                 grid: Any | None = None) -> tuple[list[StudyModel], pd.DataFrame]:
    """The segmenters of notebook 06's comparison and a table saying which run and why.

    Parameters
    ----------
    model_keys : zero-shot zoo models (those without weights are listed as not run).
    models : where the weights are and how they run (default ``ModelSettings()``).
    datasets : the datasets scored (for the finetuned models).
    grid : notebook 03's ``GridResult``; None leaves the finetuned models out.

    Returns
    -------
    (models to run, table with columns model, kind, datasets, status, detail).
    """
    models = models or ModelSettings()
    out, rows = zoo_study_models(model_keys, models)
    if grid is not None:
        more, more_rows = finetuned_study_models(grid, datasets, models)
        out, rows = out + more, rows + more_rows
    return out, pd.DataFrame(rows, columns=MODEL_TABLE_COLUMNS)


def choose_segmenter(model_keys: Sequence[str], models: ModelSettings | None = None) -> str:
    """The zoo model ``mskseg autolabel`` runs: the only one given, or the first with its weights.

    Parameters
    ----------
    model_keys : one zoo name (used as given: a missing file is reported when it loads), or
        several in order of preference.
    models : where the weights are.

    Returns
    -------
    The zoo name. Raises ``DataError`` naming the checkpoints folder when none has its weights.
    """
    models = models or ModelSettings()
    keys = list(model_keys)
    if len(keys) == 1:
        return keys[0]
    avail = model_availability(keys, models)
    ok = avail[avail["status"] == "available"]
    if ok.empty:
        raise DataError(checkpoints_dir(models), f"none of the models {', '.join(keys)} has its checkpoint here")
    return str(ok["model_key"].iloc[0])
