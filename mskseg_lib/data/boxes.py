"""Box prompts from masks: one box per label, and one per connected instance of a label.

Boxes are ``[x_min, y_min, x_max, y_max]`` in pixel indices of the slice (x = column,
y = row), inclusive of the last foreground pixel: the convention of MedSAM's box prompts.
A label split into several pieces on a slice (two menisci horns, left and right psoas) gets
one box around everything and one box per piece; evaluation picks the per-instance boxes for
multi-instance labels.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

Box = list[int]


def mask_box(mask: np.ndarray) -> Box | None:
    """Tight box around the non-zero pixels of a 2D mask, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def instance_boxes(mask: np.ndarray, connectivity: int = 2) -> list[Box]:
    """One box per connected component (8-connected by default), largest first."""
    structure = ndimage.generate_binary_structure(2, connectivity)
    lab, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return []
    sizes = np.bincount(lab.ravel())[1:]
    objects = ndimage.find_objects(lab)
    out = []
    for idx in np.argsort(-sizes, kind="stable"):
        sl = objects[idx]
        out.append([int(sl[1].start), int(sl[0].start), int(sl[1].stop - 1), int(sl[0].stop - 1)])
    return out


def slice_boxes(labels_2d: np.ndarray) -> tuple[dict[int, Box], dict[int, list[Box]], dict[int, int]]:
    """Per label value: its box, its instance boxes and its pixel count on one slice."""
    boxes: dict[int, Box] = {}
    inst: dict[int, list[Box]] = {}
    counts: dict[int, int] = {}
    values, n = np.unique(labels_2d, return_counts=True)
    for value, count in zip(values.tolist(), n.tolist()):
        if value == 0:
            continue
        m = labels_2d == value
        boxes[value] = mask_box(m)
        inst[value] = instance_boxes(m)
        counts[value] = int(count)
    return boxes, inst, counts


def jitter_box(box: Box, shift_px: float, rng: np.random.Generator, shape: tuple[int, int]) -> Box:
    """Move each side by a uniform random amount in [-shift_px, shift_px] (prompting error),
    keeping the box inside the image and non-degenerate."""
    x0, y0, x1, y1 = (np.asarray(box, float) + rng.uniform(-shift_px, shift_px, 4)).tolist()
    h, w = shape
    x0, x1 = sorted((float(np.clip(x0, 0, w - 1)), float(np.clip(x1, 0, w - 1))))
    y0, y1 = sorted((float(np.clip(y0, 0, h - 1)), float(np.clip(y1, 0, h - 1))))
    return [int(round(x0)), int(round(y0)), int(round(max(x1, x0 + 1))), int(round(max(y1, y0 + 1)))]
