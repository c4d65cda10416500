"""Scores of a propagated volume: 3D Dice per structure and combined, and slice Dice against the
distance from the prompted slice (where propagation drifts).

* Per structure: 3D Dice over the whole volume (``evaluation.metrics.label_metrics``) and the
  volumes in cm3.
* ``combined``: 3D Dice of the union of the study's combined structures (the SAM2 knee study
  reports femur only, tibia only and "femur and tibia combined": the union of the femur and
  tibia voxels, label identity ignored; the patella, prompted there only as a negative point,
  is not part of it). A volume with none of those structures (the spine) gets the union of
  all its scored structures instead; ``union_of`` always names what was joined.
* ``all_structures`` (an extra, labelled row, only where it differs from ``combined``): the
  union of every scored structure (for the knee: femur, tibia and patella).
* Slices: for each structure, each slice where the manual or the predicted mask has it, the 2D
  Dice (0 when only one of them has it) and the offset from the structure's prompted slice.

Every Dice here is the project's one Dice, ``evaluation.metrics.dice`` (NaN when both masks are
empty, 0 when only one is).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.evaluation.metrics import dice, label_metrics

#: the study's "combined" structures (SAM2 knee video study: femur and tibia)
STUDY_COMBINED = ("femur", "tibia")
COMBINED = "combined"
ALL_STRUCTURES = "all_structures"


def union_row(pred: np.ndarray, gt: np.ndarray, values: Sequence[int], names: Mapping[int, str],
              voxel_cm3: float, structure: str) -> dict:
    """One score row for the union of ``values`` (labels ignored inside the union)."""
    g, p = np.isin(gt, list(values)), np.isin(pred, list(values))
    return {"structure": structure, "label": 0, "dice": dice(p, g),
            "gt_volume_cm3": float(g.sum()) * voxel_cm3, "pred_volume_cm3": float(p.sum()) * voxel_cm3,
            "union_of": ", ".join(names.get(v, str(v)) for v in values)}


def structure_scores(pred: np.ndarray, gt: np.ndarray, values: Sequence[int], names: Mapping[int, str],
                     spacing_mm: Sequence[float], combined: Sequence[str] = STUDY_COMBINED) -> pd.DataFrame:
    """3D Dice per structure present in ``gt``, a ``combined`` row and, where it differs, an
    ``all_structures`` row.

    Parameters
    ----------
    pred, gt : (N, H, W) or any matching shape, integer label volumes.
    values : label values to score (those absent from ``gt`` are skipped).
    names : label value -> structure name.
    spacing_mm : voxel size, for the volumes in cm3.
    combined : structure names whose union is the ``combined`` row (default: the study's femur
        and tibia). Those present in ``gt`` are joined; when none is, every scored structure is.

    Returns
    -------
    DataFrame with structure, label (0 for union rows), dice, gt_volume_cm3, pred_volume_cm3,
    union_of (the joined structures' names; "" on per-structure rows).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and manual mask {gt.shape} differ in shape")
    scored = [int(v) for v in values if (gt == v).any()]
    if not scored:
        raise ValueError(f"none of the structures {list(values)} is in the manual mask")
    voxel_cm3 = float(np.prod(spacing_mm)) / 1000.0
    per = label_metrics(pred, gt, scored)
    rows = [{"structure": names.get(v, str(v)), "label": v, "dice": per[v]["dice"],
             "gt_volume_cm3": per[v]["gt_px"] * voxel_cm3, "pred_volume_cm3": per[v]["pred_px"] * voxel_cm3,
             "union_of": ""} for v in scored]
    wanted = set(combined)
    joined = [v for v in scored if names.get(v, str(v)) in wanted] or scored
    rows.append(union_row(pred, gt, joined, names, voxel_cm3, COMBINED))
    if joined != scored:
        rows.append(union_row(pred, gt, scored, names, voxel_cm3, ALL_STRUCTURES))
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
        gs, ps, per_slice = g.sum(1), p.sum(1), dice(p, g, axis=1)
        for k in np.flatnonzero((gs + ps) > 0):
            rows.append({"structure": names.get(v, str(v)), "label": v, "slice_index": int(k),
                         "offset": int(k) - int(prompt_slices[v]), "dice": float(per_slice[k]),
                         "gt_px": int(gs[k]), "pred_px": int(ps[k])})
    return pd.DataFrame(rows, columns=["structure", "label", "slice_index", "offset", "dice", "gt_px", "pred_px"])
