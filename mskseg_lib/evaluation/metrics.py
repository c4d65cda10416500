"""Dice, IoU and HD95 per label with MONAI, with explicit rules for empty masks.

Only labels present in the ground truth of a slice are prompted, so they are the ones scored.
A scored label the model missed entirely has Dice 0 and IoU 0 (MONAI with
``ignore_empty=True`` returns NaN only when the *ground truth* is empty, which is how a label
absent from a slice is kept out of the means). HD95 is NaN when the prediction is empty (no
surface to measure), reported as such, never as 0 or infinity.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou


def one_hot(label_map: np.ndarray, values: list[int]) -> torch.Tensor:
    """(…spatial) label map -> (1, L, …spatial) float one-hot for the given label values."""
    t = torch.as_tensor(np.asarray(label_map).astype(np.int64))
    return torch.stack([(t == v) for v in values])[None].float()


def label_metrics(pred: np.ndarray, gt: np.ndarray, values: list[int], spacing_mm: tuple[float, ...] | None = None,
                  hd95: bool = False) -> dict[int, dict[str, float]]:
    """Per label value: dice, iou, gt_px, pred_px (and hd95_mm). Works in 2D and 3D."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    y_pred, y = one_hot(pred, values), one_hot(gt, values)
    dice = compute_dice(y_pred, y, include_background=True, ignore_empty=True)[0]
    iou = compute_iou(y_pred, y, include_background=True, ignore_empty=True)[0]
    out: dict[int, dict[str, float]] = {}
    gt_px = y.sum(dim=tuple(range(2, y.ndim)))[0]
    pred_px = y_pred.sum(dim=tuple(range(2, y.ndim)))[0]
    for i, v in enumerate(values):
        out[v] = {"dice": float(dice[i]), "iou": float(iou[i]), "gt_px": int(gt_px[i]), "pred_px": int(pred_px[i])}
    if hd95:
        for i, v in enumerate(values):
            if out[v]["pred_px"] == 0 or out[v]["gt_px"] == 0:
                out[v]["hd95_mm"] = float("nan")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d = compute_hausdorff_distance(y_pred[:, i:i + 1], y[:, i:i + 1], include_background=True,
                                               percentile=95, spacing=list(spacing_mm) if spacing_mm else None)
            out[v]["hd95_mm"] = float(d.reshape(-1)[0])
    return out
