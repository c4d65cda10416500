"""The one Dice (and IoU) of the project, with an explicit empty-mask rule, and per-label scores.

``dice(pred, gt)`` is 2|P∩G| / (|P| + |G|) of two boolean masks (or of every slice of a stack,
with ``axis``). Empty masks:

* ground truth and prediction both empty: undefined; the value is the named argument
  ``both_empty`` (default NaN, so it stays out of every mean);
* one of them empty, the other not: 0 (a missed structure, or a structure predicted where the
  ground truth has none).

Every scorer of the project uses it: the zero-shot engine and AutoLabel (through
``label_metrics``), the video3d study's slice and union scores and its carrying rule, and the
figures. The study's code scores with MONAI's ``DiceMetric(ignore_empty=True)``, which is NaN
whenever the ground truth is empty (also when something was predicted); like this project it
prompts only the labels present in the ground truth of a slice, so a scored label never has an
empty ground truth and the two rules agree on every score either computes. The arithmetic is
MONAI's (counts, then ``2 * intersection / total`` in float32), so the values equal those of
``monai.metrics.compute_dice`` bit for bit. HD95 comes from MONAI and is NaN when either mask is
empty (no surface to measure), never 0 or infinity.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

__all__ = ["dice", "hd95_mm", "iou", "label_metrics", "mean_label_dice"]


def _overlap_counts(pred: np.ndarray, gt: np.ndarray,
                    axis: int | tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection, |P|, |G|) pixel counts of two same-shape masks, reduced over ``axis``."""
    p, g = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    return (np.count_nonzero(p & g, axis=axis), np.count_nonzero(p, axis=axis), np.count_nonzero(g, axis=axis))


def _ratio(numerator: np.ndarray, denominator: np.ndarray, both_empty: float) -> float | np.ndarray:
    """numerator / denominator in float32 (MONAI's arithmetic); ``both_empty`` where it is 0 / 0."""
    num = np.asarray(numerator, dtype=np.float32)
    den = np.asarray(denominator, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1), np.float32(both_empty)).astype(np.float64)
    return float(out) if out.ndim == 0 else out


def dice(pred: np.ndarray, gt: np.ndarray, *, axis: int | tuple[int, ...] | None = None,
         both_empty: float = math.nan) -> float | np.ndarray:
    """Dice coefficient 2|P∩G| / (|P| + |G|) of a predicted and a ground-truth mask.

    Parameters
    ----------
    pred, gt : array_like of bool (or 0/1), any matching shape
        The masks (e.g. ``label_map == v``); a 2D slice, a 3D volume or an (N, H, W) stack.
    axis : int or tuple of int, optional
        Axes counted over. None (default): all of them, one value. ``axis=(1, 2)`` on an
        (N, H, W) stack: one Dice per slice, shape (N,).
    both_empty : float
        The value where both masks are empty (Dice undefined). Default NaN: left out of means.
        Where only one mask is empty the Dice is 0.

    Returns
    -------
    float or ndarray of float64
        In [0, 1] (or ``both_empty``); an array of the reduced shape when ``axis`` keeps axes.
    """
    inter, n_pred, n_gt = _overlap_counts(pred, gt, axis)
    return _ratio(2 * inter, n_pred + n_gt, both_empty)


def iou(pred: np.ndarray, gt: np.ndarray, *, axis: int | tuple[int, ...] | None = None,
        both_empty: float = math.nan) -> float | np.ndarray:
    """Intersection over union |P∩G| / |P∪G| of two masks, with :func:`dice`'s empty-mask rule.

    Parameters
    ----------
    pred, gt : array_like of bool, any matching shape
    axis : int or tuple of int, optional
        As in :func:`dice`.
    both_empty : float
        The value where both masks are empty (default NaN); one empty mask gives 0.

    Returns
    -------
    float or ndarray of float64
        In [0, 1] (or ``both_empty``).
    """
    inter, n_pred, n_gt = _overlap_counts(pred, gt, axis)
    return _ratio(inter, n_pred + n_gt - inter, both_empty)


def mean_label_dice(pred: np.ndarray, gt: np.ndarray, values: Sequence[int] | None = None) -> float:
    """Mean over labels of each label's :func:`dice` on one slice (or volume).

    Parameters
    ----------
    pred, gt : ndarray of int, same shape
        Label maps, 0 = background.
    values : sequence of int, optional
        Labels averaged; default: every label present in either map (so a label predicted where
        the ground truth has none counts as 0).

    Returns
    -------
    float
        The mean Dice; NaN when there is no label to average.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if values is None:
        values = sorted(set(np.unique(gt[gt > 0]).tolist()) | set(np.unique(pred[pred > 0]).tolist()))
    scores = [dice(pred == v, gt == v) for v in values]
    return float(np.nanmean(scores)) if scores and not np.all(np.isnan(scores)) else math.nan


def label_metrics(pred: np.ndarray, gt: np.ndarray, values: Sequence[int], spacing_mm: tuple[float, ...] | None = None,
                  hd95: bool = False, *, both_empty: float = math.nan) -> dict[int, dict[str, float]]:
    """Dice, IoU, pixel counts (and HD95) of each label of a multi-class prediction.

    Works in 2D (one slice) and 3D (a volume or a stack of slices: the "3D Dice" counts every
    voxel of the stack). Labels are scored with :func:`dice` and :func:`iou`, so a label absent
    from both maps gets ``both_empty`` (NaN) and a label in only one of them 0.

    Parameters
    ----------
    pred, gt : ndarray of int, same shape (H, W) or (N, H, W)
        Label maps, 0 = background.
    values : sequence of int
        Label values to score (usually those present in ``gt``).
    spacing_mm : tuple of float, optional
        Pixel (voxel) size in mm per axis of ``pred``, for HD95; None: pixels.
    hd95 : bool
        Also compute the 95th-percentile Hausdorff distance (MONAI), in mm with ``spacing_mm``.
    both_empty : float
        Dice and IoU of a label absent from both maps (default NaN).

    Returns
    -------
    dict
        ``{value: {"dice", "iou", "gt_px", "pred_px"[, "hd95_mm"]}}``; the counts are pixels
        (voxels in 3D); ``hd95_mm`` is NaN when either mask of the label is empty.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    out: dict[int, dict[str, float]] = {}
    for v in values:
        p, g = pred == v, gt == v
        out[v] = {"dice": dice(p, g, both_empty=both_empty), "iou": iou(p, g, both_empty=both_empty),
                  "gt_px": int(np.count_nonzero(g)), "pred_px": int(np.count_nonzero(p))}
        if hd95:
            out[v]["hd95_mm"] = hd95_mm(p, g, spacing_mm)
    return out


def hd95_mm(pred: np.ndarray, gt: np.ndarray, spacing_mm: tuple[float, ...] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance of two boolean masks (MONAI).

    Parameters
    ----------
    pred, gt : ndarray of bool, same shape (H, W) or (N, H, W)
    spacing_mm : tuple of float, optional
        Pixel size per axis in mm (None: distances in pixels).

    Returns
    -------
    float
        The distance in mm (pixels without ``spacing_mm``); NaN when either mask is empty.
    """
    import torch
    from monai.metrics import compute_hausdorff_distance

    if not np.any(pred) or not np.any(gt):
        return math.nan
    y_pred = torch.as_tensor(np.asarray(pred, dtype=np.float32))[None, None]
    y = torch.as_tensor(np.asarray(gt, dtype=np.float32))[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95,
                                       spacing=list(spacing_mm) if spacing_mm else None)
    return float(d.reshape(-1)[0])
