"""YOLO detection export: images/labels train/val/test trees and a dataset YAML per dataset.

Each processed slice becomes a PNG (the prepared uint8 slice at ``yolo_image_size_px``, resized
as ``prepare.resize`` made it) and a label file with one line per instance box: ``class cx cy w
h`` normalised to the image, from the box's pixel edges (``x0`` to ``x1 + 1``). Under
``stretch`` these are the box's fractions of the original slice; under ``pad`` fractions of the
padded square. (The study's export measured centre-to-centre on its resized mask, one mask pixel
narrower.) Class ids are label value - 1 (YOLO classes start at 0), names from the catalog. The
whole tree is built in a temporary folder and swapped in, so a split change leaves no stale files.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from mskseg_lib.atomic import replace_folder, write_guard
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.preprocess import SliceGeometry, geometry_of, scale_box
from mskseg_lib.data.slice_store import load_stack


def yolo_lines(instance_boxes: dict[int, list[list[int]]], geom: SliceGeometry) -> list[str]:
    """Label lines for one slice; boxes are inclusive pixel boxes in the original slice.

    The box's pixel edges (``x0`` to ``x1 + 1``) are scaled to the model input per axis
    (``scale_box``), then normalised by the square's side.
    """
    lines = []
    s = geom.size_px
    for value, boxes in sorted(instance_boxes.items()):
        for x0, y0, x1, y1 in boxes:
            bx0, by0, bx1, by1 = scale_box([x0, y0, x1 + 1, y1 + 1], geom)
            cx, cy, w, h = (bx0 + bx1) / 2 / s, (by0 + by1) / 2 / s, (bx1 - bx0) / s, (by1 - by0) / s
            lines.append(f"{value - 1} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def export_yolo(prepared_dir: Path, slices: pd.DataFrame, out_dir: Path, image_size_px: int) -> Path:
    """Write ``out_dir/<dataset>/{images,labels}/{train,val,test}`` and ``<dataset>.yaml`` files.

    Parameters
    ----------
    prepared_dir : Path
        The prepared folder whose slice stacks are exported.
    slices : DataFrame
        The slice table (with ``split``) of the slices to export.
    out_dir : Path
        The export's root (replaced as a whole).
    image_size_px : int
        The stored model size exported (one of the prepared ``slice_sizes_px``).

    Returns
    -------
    Path
        ``out_dir``.
    """
    size = int(image_size_px)
    out_dir = Path(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with write_guard(out_dir, tmp):
            for dataset, g in slices.groupby("dataset", sort=False):
                spec = get_dataset(dataset)
                root = tmp / dataset
                for split in ("train", "val", "test"):
                    (root / "images" / split).mkdir(parents=True, exist_ok=True)
                    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
                for subject_id, gs in g.groupby("subject_id", sort=False):
                    images, _ = load_stack(prepared_dir, dataset, subject_id, size)
                    for row in gs.itertuples():
                        stem = f"{subject_id}_{row.slice_index:04d}"
                        geom = geometry_of(row, size)
                        cv2.imwrite(str(root / "images" / row.split / f"{stem}.png"), np.asarray(images[row.store_index]))
                        inst = {int(k): v for k, v in json.loads(row.instance_boxes_json).items()}
                        (root / "labels" / row.split / f"{stem}.txt").write_text("\n".join(yolo_lines(inst, geom)) + "\n")
                meta = {"path": str((out_dir / dataset).resolve()), "train": "images/train", "val": "images/val",
                        "test": "images/test", "names": {lab.value - 1: lab.name for lab in spec.labels}}
                (tmp / f"{dataset}.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
            replace_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
