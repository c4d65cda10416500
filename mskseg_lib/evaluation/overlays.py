"""QC overlays of a zero-shot run: the samples to draw (image, prompt boxes, ground truth and
prediction in the model-input frame: the stored slice, stretched or padded as prepared) and the
writing of the drawn figures, one PNG per dataset, into the run's ``qc`` folder.

Drawing is ``mskseg_lib.plots.zero_shot`` (``plot_qc_overlays``); this module never imports it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mskseg_lib.atomic import save_figure
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.preprocess import geometry_of, mask_box_to_model, resize_slice
from mskseg_lib.data.slice_store import subject_stacks
from mskseg_lib.evaluation.prompting import gt_box_prompts
from mskseg_lib.evaluation.zero_shot import load_predictions

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def overlay_samples(run_dir: Path, subjects: pd.DataFrame, selection: pd.DataFrame, slice_scores: pd.DataFrame,
                    model_key: str, condition: str, per_dataset: int = 1, size_px: int = 256) -> list[dict[str, Any]]:
    """Per dataset, the ``per_dataset`` evaluated slices with the most labels, ready to plot.

    Parameters
    ----------
    run_dir : Path
        The zero-shot run folder (its saved predictions).
    subjects, selection : DataFrame
        The prepared subjects table and the run's selected slice rows.
    slice_scores : DataFrame
        The run's slice-label rows (``ZeroShotRun.slices``).
    model_key, condition : str
        Whose prediction, under which prompt condition.
    per_dataset : int
        Samples per dataset.
    size_px : int
        The model input size the samples are drawn in.

    Returns
    -------
    list of dict
        ``dataset, subject_id, slice_index, model, image`` (size_px, size_px) uint8, ``gt`` and
        ``pred`` (size_px, size_px) label maps, ``boxes`` (N, 4) in model pixels, ``label_names``
        and ``dice`` (mean over the slice's labels): what ``plots.zero_shot`` draws.
    """
    index = subjects.set_index(["dataset", "subject_id"])
    scores = slice_scores[(slice_scores["model_key"] == model_key) & (slice_scores["condition"] == condition)]
    dice = scores.groupby(["dataset", "subject_id", "slice_index"])["dice"].mean()
    out = []
    sel = selection.assign(n=selection["labels_present"].map(lambda s: len(json.loads(s))))
    for _dataset, g in sel.groupby("dataset", sort=True):
        for r in g.sort_values(["n", "subject_id", "slice_index"], ascending=[False, True, True]).head(per_dataset).itertuples():
            key = (r.dataset, r.subject_id, r.slice_index)
            if key not in dice.index:
                continue
            subject = {**index.loc[(r.dataset, r.subject_id)], "dataset": r.dataset, "subject_id": r.subject_id}
            images, masks = subject_stacks(subject, size_px)
            preds = load_predictions(run_dir, model_key, r.dataset, r.subject_id)
            pred = preds[condition][list(preds["slice_index"]).index(r.slice_index)]
            geom = geometry_of(r, size_px)
            boxes = [mask_box_to_model(p.box_px, geom).tolist() for p in gt_box_prompts(pd.Series(r._asdict()))]
            out.append({"dataset": r.dataset, "subject_id": r.subject_id, "slice_index": int(r.slice_index),
                        "model": str(scores["model"].iloc[0]) if "model" in scores else model_key,
                        "image": np.array(images[int(r.store_index)]), "gt": np.array(masks[int(r.store_index)]),
                        "pred": resize_slice(pred.astype(np.uint8), size_px, is_mask=True, resize_mode=geom.resize_mode),
                        "boxes": boxes,
                        "label_names": get_dataset(r.dataset).label_names(), "dice": float(dice.loc[key])})
    return out


def write_qc_overlays(figures: Mapping[str, "Figure"], folder: Path) -> list[Path]:
    """Save one figure per dataset as ``<folder>/<dataset>.png`` (atomically) and close it.

    Parameters
    ----------
    figures : mapping of str to Figure
        Dataset name -> its drawn QC panels (``plots.zero_shot.plot_qc_overlays``).
    folder : Path
        The run's ``qc`` folder (created).

    Returns
    -------
    list of Path
        The PNGs written, in dataset order.
    """
    paths = []
    for dataset in sorted(figures):
        paths.append(save_figure(figures[dataset], Path(folder) / f"{dataset}.png"))
        plt.close(figures[dataset])
    return paths
