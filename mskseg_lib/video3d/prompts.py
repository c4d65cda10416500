"""The study's prompt schemes, made from a label volume (slices first, display orientation).

Evaluation prompts come from the manual mask; in use they come from a detector or a click list
(``click_prompts``). Coordinates are slice pixels, x = column and y = row, boxes inclusive
``[x0, y0, x1, y1]`` (the convention of :mod:`mskseg_lib.data.boxes`).

* **Point inside a structure**: its centroid on the slice when the centroid falls inside the
  structure, otherwise the structure's pixel nearest to the centroid. A bent bone (a femur's
  condyles on a sagittal slice, a C-shaped cortex) can have its centroid outside itself, and a
  positive click on background would prompt the wrong thing.
* **Prompted slice** (the study's "middle slice"): one slice for all structures, so that the
  negative points of one structure are the positive points of the others. It is the slice
  holding the most of the chosen structures, ties broken by closeness to the centre of their
  joint slice extent. A structure absent from it is prompted on its own central slice (the
  slice nearest the centre of its own extent), without negatives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from mskseg_lib.data.boxes import mask_box

SCHEMES: dict[str, str] = {
    "points_per_slice": "per-slice point at each structure's centroid (image predictor, no memory)",
    "boxes_per_slice": "per-slice box from each structure's extent (image predictor, no memory)",
    "point_video": "one positive point per structure on the prompted slice, propagated (video predictor)",
    "points_neg_video": "as point_video plus negative points on the other structures (video predictor)",
    "box_carry": "box on the prompted slice; each slice's predicted mask gives the next slice's box (no memory)",
    "point_carry": "point on the prompted slice; each slice's predicted mask gives the next slice's point (no memory)",
}
VIDEO_SCHEMES = ("point_video", "points_neg_video")
PER_SLICE_SCHEMES = ("points_per_slice", "boxes_per_slice")
CARRY_SCHEMES = ("box_carry", "point_carry")


@dataclass
class ObjectPrompt:
    """The prompt of one structure on one slice."""

    label: int
    frame: int
    points: np.ndarray | None = None  # (P, 2) xy
    point_labels: np.ndarray | None = None  # (P,) 1 positive, 0 negative
    box: np.ndarray | None = None  # (4,) inclusive xyxy

    def __post_init__(self) -> None:
        if self.points is None and self.box is None:
            raise ValueError(f"label {self.label}, slice {self.frame}: a prompt needs points or a box")
        if self.points is not None:
            self.points = np.asarray(self.points, np.float32).reshape(-1, 2)
            self.point_labels = np.asarray(self.point_labels, np.int32).reshape(-1)
            if len(self.point_labels) != len(self.points):
                raise ValueError(f"label {self.label}: {len(self.points)} points but {len(self.point_labels)} labels")
        if self.box is not None:
            self.box = np.asarray(self.box, np.float32).reshape(4)


def check_stack(labels: np.ndarray, what: str = "label volume") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise ValueError(f"{what}: expected (slices, rows, cols), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what}: expected integer labels, got {arr.dtype}")
    return arr


def interior_point(mask: np.ndarray) -> np.ndarray:
    """(x, y) of the centroid if it lies in ``mask``, else of the mask pixel nearest to it."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("interior_point: empty mask")
    cy, cx = rows.mean(), cols.mean()
    iy, ix = int(round(cy)), int(round(cx))
    if 0 <= iy < mask.shape[0] and 0 <= ix < mask.shape[1] and mask[iy, ix]:
        return np.array([cx, cy], np.float32)
    i = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
    return np.array([cols[i], rows[i]], np.float32)


def present_slices(labels: np.ndarray, value: int) -> np.ndarray:
    """Indices of the slices where ``value`` occurs."""
    return np.flatnonzero((np.asarray(labels) == value).reshape(labels.shape[0], -1).any(axis=1))


def central_slice(slices: np.ndarray) -> int:
    """The slice of ``slices`` nearest the centre of their extent (the lower one on a tie)."""
    centre = (slices.min() + slices.max()) / 2.0
    return int(slices[np.argmin(np.abs(slices - centre))])


def prompt_slice(labels: np.ndarray, values: Sequence[int]) -> int:
    """The one slice for all structures: most of ``values`` present, then nearest the centre."""
    stack = check_stack(labels)
    present = {v: present_slices(stack, v) for v in values}
    present = {v: s for v, s in present.items() if s.size}
    if not present:
        raise ValueError(f"none of the labels {list(values)} occurs in the volume")
    everywhere = np.concatenate(list(present.values()))
    centre = (everywhere.min() + everywhere.max()) / 2.0
    counts = np.zeros(stack.shape[0], int)
    for s in present.values():
        counts[s] += 1
    best = np.flatnonzero(counts == counts.max())
    return int(best[np.argmin(np.abs(best - centre))])


def single_slice_prompts(labels: np.ndarray, values: Sequence[int], negatives: bool) -> list[ObjectPrompt]:
    """Schemes 3 and 4: one positive point per structure on the prompted slice; with
    ``negatives``, the other structures' points on that slice as negative points."""
    stack = check_stack(labels)
    common = prompt_slice(stack, values)
    out = []
    for v in values:
        where = present_slices(stack, v)
        if where.size == 0:
            continue
        frame = common if common in where else central_slice(where)
        pos = interior_point(stack[frame] == v)
        points, point_labels = [pos], [1]
        if negatives:
            for other in values:
                if other != v and (stack[frame] == other).any():
                    points.append(interior_point(stack[frame] == other))
                    point_labels.append(0)
        out.append(ObjectPrompt(int(v), int(frame), np.stack(points), np.asarray(point_labels)))
    return out


def per_slice_prompts(labels: np.ndarray, values: Sequence[int], kind: str) -> dict[int, list[ObjectPrompt]]:
    """Schemes 1 and 2: on every slice where a structure occurs, a point at its centroid
    (``kind="point"``) or its bounding box (``kind="box"``). {slice: prompts}."""
    if kind not in ("point", "box"):
        raise ValueError(f"per-slice prompts are 'point' or 'box', got {kind!r}")
    stack = check_stack(labels)
    out: dict[int, list[ObjectPrompt]] = {}
    for v in values:
        for k in present_slices(stack, v):
            m = stack[k] == v
            if kind == "point":
                p = ObjectPrompt(int(v), int(k), interior_point(m)[None], np.ones(1))
            else:
                p = ObjectPrompt(int(v), int(k), box=np.asarray(mask_box(m), np.float32))
            out.setdefault(int(k), []).append(p)
    return dict(sorted(out.items()))


def seed_prompts(labels: np.ndarray, values: Sequence[int], kind: str) -> list[ObjectPrompt]:
    """The first prompt of the carrying schemes: a box or a point per structure on the
    prompted slice (the same slice and point as the video schemes)."""
    pts = single_slice_prompts(labels, values, negatives=False)
    if kind == "point":
        return pts
    stack = check_stack(labels)
    return [ObjectPrompt(p.label, p.frame, box=np.asarray(mask_box(stack[p.frame] == p.label), np.float32)) for p in pts]


def click_prompts(clicks: Iterable[Mapping]) -> list[ObjectPrompt]:
    """A user's click list -> prompts: dicts with ``label``, ``slice``, ``x``, ``y`` and
    optionally ``positive`` (default true). Clicks of one label on one slice form one prompt."""
    grouped: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    for i, c in enumerate(clicks):
        missing = {"label", "slice", "x", "y"} - set(c)
        if missing:
            raise ValueError(f"click {i}: missing {', '.join(sorted(missing))}")
        grouped.setdefault((int(c["label"]), int(c["slice"])), []).append(
            (float(c["x"]), float(c["y"]), 1 if c.get("positive", True) else 0))
    out = []
    for (label, frame), pts in sorted(grouped.items()):
        if not any(p[2] for p in pts):
            raise ValueError(f"label {label}, slice {frame}: clicks need at least one positive point")
        arr = np.asarray(pts, np.float32)
        out.append(ObjectPrompt(label, frame, arr[:, :2], arr[:, 2].astype(np.int32)))
    return out
