"""The trivial detector a trained one must beat: per label, the training set's mean box.

``mean_box_baseline`` predicts, on every image of a split, one box per label at that label's
mean training box (YOLO's normalised centre x, centre y, width, height averaged over every
training instance), all at one confidence, and scores them at IoU 0.5 (ultralytics' IoU, the
threshold of ``detector.evaluate_detector``'s mAP50), so the two numbers are comparable: a
detector that has learned nothing beyond where structures usually are scores what this scores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mskseg_lib.autolabel.detector import _scan_export, export_yaml_path
from mskseg_lib.data.errors import DataError


def _boxes(label: Path | None) -> np.ndarray:
    """(K, 5) class, cx, cy, w, h (normalised) of a YOLO label file; empty when absent."""
    if label is None or not Path(label).is_file():
        return np.zeros((0, 5))
    rows = [line.split() for line in Path(label).read_text().splitlines() if line.strip()]
    try:
        return np.asarray(rows, float).reshape(-1, 5)
    except ValueError:
        raise DataError(Path(label), "not a YOLO label file (lines of: class cx cy w h)") from None


def _xyxy(b: np.ndarray) -> np.ndarray:
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)


def mean_boxes(labels: list[Path | None]) -> dict[int, np.ndarray]:
    """Class id -> its mean (cx, cy, w, h) over every instance in these label files."""
    allb = np.concatenate([_boxes(p) for p in labels] or [np.zeros((0, 5))])
    return {int(c): allb[allb[:, 0] == c, 1:].mean(0) for c in np.unique(allb[:, 0])}


def mean_box_baseline(prepared_dir: Path, dataset: str, split: str = "test") -> pd.DataFrame:
    """mAP50 of the mean-box predictor on ``split``: one row per class, then ``all`` (the mean over
    classes with instances), columns dataset, split, class_id, class_name, mAP50_mean_box.

    Every prediction has the same confidence, so the precision-recall curve is one point
    (recall R, precision P) and the interpolated AP is the rectangle under it, ``P x R`` (what
    ultralytics' AP gives when ties are broken against the predictor; breaking them in its
    favour would make the number depend on file order).
    """
    from ultralytics.utils.metrics import box_iou

    export = _scan_export(export_yaml_path(prepared_dir, dataset))
    means = mean_boxes([lab for _, lab in export.files["train"]])
    hits = {c: 0 for c in means}
    preds = {c: 0 for c in means}
    instances: dict[int, int] = {}
    for _, lab in export.files[split]:
        gt = _boxes(lab)
        for c in gt[:, 0].astype(int):
            instances[int(c)] = instances.get(int(c), 0) + 1
        for c, box in means.items():
            preds[c] += 1
            truth = gt[gt[:, 0] == c]
            if len(truth):  # one prediction matches at most one instance
                iou = box_iou(torch.tensor(_xyxy(box[None])), torch.tensor(_xyxy(truth[:, 1:])))
                hits[c] += int(bool((iou >= 0.5).any()))
    rows, valid = [], []
    for cid, name in sorted(export.names.items()):
        n = instances.get(cid, 0)
        ap = np.nan
        if n:
            ap = (hits.get(cid, 0) / preds[cid]) * (hits.get(cid, 0) / n) if preds.get(cid) else 0.0
            valid.append(ap)
        rows.append({"class_id": cid, "class_name": name, "mAP50_mean_box": ap})
    rows.append({"class_id": -1, "class_name": "all", "mAP50_mean_box": float(np.mean(valid)) if valid else np.nan})
    df = pd.DataFrame(rows)
    df.insert(0, "split", split)
    df.insert(0, "dataset", dataset)
    return df
