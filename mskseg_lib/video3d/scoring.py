"""Scores of a propagated volume: 3D Dice per structure and combined, and slice Dice against the
distance from the prompted slice (where propagation drifts).

* Per structure: 3D Dice over the whole volume (MONAI, via ``evaluation.metrics.label_metrics``)
  and the volumes in cm3.
* Combined: 3D Dice of all scored structures taken together (the union of their voxels, label
  identity ignored), the study's single number per volume.
* Slices: for each structure, each slice where the manual or the predicted mask has it, the 2D
  Dice (0 when only one of them has it) and the offset from the structure's prompted slice.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.evaluation.metrics import label_metrics


def dice_binary(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two boolean arrays; NaN when both are empty (nothing to score)."""
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    total = int(p.sum()) + int(g.sum())
    if total == 0:
        return float("nan")
    return 2.0 * float((p & g).sum()) / total


def structure_scores(pred: np.ndarray, gt: np.ndarray, values: Sequence[int], names: Mapping[int, str],
                     spacing_mm: Sequence[float]) -> pd.DataFrame:
    """One row per structure present in ``gt`` plus a ``combined`` row (label 0)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and manual mask {gt.shape} differ in shape")
    scored = [int(v) for v in values if (gt == v).any()]
    if not scored:
        raise ValueError(f"none of the structures {list(values)} is in the manual mask")
    voxel_cm3 = float(np.prod(spacing_mm)) / 1000.0
    per = label_metrics(pred, gt, scored)
    rows = [{"structure": names.get(v, str(v)), "label": v, "dice": per[v]["dice"],
             "gt_volume_cm3": per[v]["gt_px"] * voxel_cm3, "pred_volume_cm3": per[v]["pred_px"] * voxel_cm3}
            for v in scored]
    g_all, p_all = np.isin(gt, scored), np.isin(pred, scored)
    rows.append({"structure": "combined", "label": 0, "dice": dice_binary(p_all, g_all),
                 "gt_volume_cm3": float(g_all.sum()) * voxel_cm3, "pred_volume_cm3": float(p_all.sum()) * voxel_cm3})
    return pd.DataFrame(rows)


def slice_scores(pred: np.ndarray, gt: np.ndarray, values: Sequence[int], names: Mapping[int, str],
                 prompt_slices: Mapping[int, int]) -> pd.DataFrame:
    """Slice Dice per structure (slices first) with the offset from its prompted slice."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and manual mask {gt.shape} differ in shape")
    rows = []
    for v in values:
        v = int(v)
        if v not in prompt_slices:
            continue
        g = (gt == v).reshape(gt.shape[0], -1)
        p = (pred == v).reshape(pred.shape[0], -1)
        gs, ps, inter = g.sum(1), p.sum(1), (g & p).sum(1)
        for k in np.flatnonzero((gs + ps) > 0):
            rows.append({"structure": names.get(v, str(v)), "label": v, "slice_index": int(k),
                         "offset": int(k) - int(prompt_slices[v]), "dice": 2.0 * inter[k] / (gs[k] + ps[k]),
                         "gt_px": int(gs[k]), "pred_px": int(ps[k])})
    return pd.DataFrame(rows, columns=["structure", "label", "slice_index", "offset", "dice", "gt_px", "pred_px"])
