"""Training samples as the study's code draws them: one slice, one randomly drawn label.

The study's training set (``mskSAM2Dataset`` in ``src/finetuning/datamodule/npy_dataset.py`` of
gabbieHoyer/AutoMedLabel, MedSAM's convention) has one item per slice. Each time a slice is
read, one label present on it is drawn at random; for labels with instance boxes (here the
catalog's ``multi_instance`` labels: paired muscles, meniscal horns, nerve roots) one connected
piece of that label is drawn too, and the target is that piece only. The target is the binary
mask on a square "mask grid" (``finetune.training.mask_grid_px``, 256 as the study's current
code: the low-resolution logits of SAM, MedSAM and SAM2 at 1024 px input), made by a
nearest-neighbour resize of the stored model-size mask. The box is the tight box of the target
on that grid, optionally shifted outward (``shift_box_outward``: each side by a uniform integer
0..``box_shift_grid_px`` grid pixels, clipped to the slice), then scaled by input / grid to the
model's input (x4 for 1024-px models, x1 for 256-px LiteMedSAM).

Draws (label, piece, shift) are seeded per (seed, epoch, slice), each from its own stream, so
a resumed or a distributed run draws exactly what an uninterrupted single process draws, and
runs with and without box shift see the same labels. An epoch is one pass over the training
slices (one sample per slice), as in the study.

Training subjects are chosen per dataset with a seeded permutation and the first ``n`` taken,
so the 5-subject set is inside the 10-subject set (a size curve then measures size, not which
subjects were drawn).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from mskseg_lib.data.boxes import mask_box, shift_box_outward
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.preprocess import SliceGeometry, geometry_of, resize_slice
from mskseg_lib.data.slice_store import subject_stacks
from mskseg_lib.evaluation.prompting import stable_rng

log = logging.getLogger(__name__)
PIECE_CONNECTIVITY = 2  # 8-connected pieces, as the zero-shot instance boxes (data.boxes.instance_boxes)


def choose_subjects(subjects: pd.DataFrame, datasets: tuple[str, ...] | list[str], split: str,
                    n_subjects: str | int, seed: int) -> pd.DataFrame:
    """Per dataset, the first ``n`` subjects of a seeded permutation of its ``split`` (all if fewer)."""
    parts = []
    for dataset in datasets:
        pool = subjects[(subjects["dataset"] == dataset) & (subjects["split"] == split)].sort_values("subject_id")
        if pool.empty:
            raise ValueError(f"finetune: dataset {dataset} has no {split} subjects (check prepare.split_fractions)")
        order = stable_rng(seed, "train_subjects", dataset).permutation(len(pool))
        n = len(pool) if str(n_subjects) == "all" else min(int(n_subjects), len(pool))
        parts.append(pool.iloc[np.sort(order[:n])])
    return pd.concat(parts, ignore_index=True)


def spread_slices(slices: pd.DataFrame, per_subject: int) -> pd.DataFrame:
    """At most ``per_subject`` labelled slices per subject, evenly spaced through the volume."""
    if per_subject <= 0:
        return slices
    parts = []
    for _, g in slices.sort_values("slice_index").groupby(["dataset", "subject_id"], sort=True):
        idx = np.unique(np.round(np.linspace(0, len(g) - 1, min(per_subject, len(g)))).astype(int))
        parts.append(g.iloc[idx])
    return pd.concat(parts, ignore_index=True) if parts else slices.iloc[:0]


def grid_mask(mask: np.ndarray, mask_grid_px: int) -> np.ndarray:
    """A square model-size label slice ``(S, S)`` on the ``(G, G)`` mask grid (nearest neighbour,
    centre-aligned, as ``prepare`` resizes masks); returned unchanged when ``S == G``."""
    m = np.asarray(mask)
    if m.shape == (mask_grid_px, mask_grid_px):
        return m
    return resize_slice(m, mask_grid_px, is_mask=True, resize_mode="stretch")


def build_samples(subjects: pd.DataFrame, slices: pd.DataFrame, max_slices_per_subject: int,
                  size_px: int, mask_grid_px: int) -> pd.DataFrame:
    """One row per training slice of the chosen subjects: where to read it and what can be drawn.

    Parameters
    ----------
    subjects, slices : DataFrame
        The prepared ``subjects`` and ``slices`` tables (``data.tables.load_tables``).
    max_slices_per_subject : int
        Labelled slices per subject, evenly spaced (0 = all).
    size_px : int
        The model's input size (which stored slice stack to read).
    mask_grid_px : int
        Side of the square mask grid.

    Returns
    -------
    DataFrame with dataset, subject_id, slice_index, store_index, rows_px, cols_px, resize_mode,
    ``labels`` (label values present on the slice's grid mask, the draw's choices),
    ``multi_labels`` (those of them drawn piece by piece), image_path, mask_path. A slice on
    which no label survives the resize to the grid is left out (and counted in the log).
    """
    keys = set(zip(subjects["dataset"], subjects["subject_id"]))
    chosen = slices[[k in keys for k in zip(slices["dataset"], slices["subject_id"])]]
    chosen = spread_slices(chosen, max_slices_per_subject)
    subj = subjects.set_index(["dataset", "subject_id"])
    multi = {d: {lab.value for lab in get_dataset(d).labels if lab.multi_instance} for d in chosen["dataset"].unique()}
    rows, dropped = [], 0
    for (dataset, subject_id), g in chosen.groupby(["dataset", "subject_id"], sort=False):
        image_path, mask_path = _stack_paths(subj.loc[(dataset, subject_id)], dataset, subject_id, size_px)
        masks = np.load(mask_path, mmap_mode="r")
        for row in g.itertuples(index=False):
            labels = present_labels(np.asarray(masks[int(row.store_index)]), mask_grid_px)
            if not labels:
                dropped += 1
                continue
            rows.append({"dataset": dataset, "subject_id": subject_id, "slice_index": int(row.slice_index),
                         "store_index": int(row.store_index), "rows_px": int(row.rows_px), "cols_px": int(row.cols_px),
                         "resize_mode": str(getattr(row, "resize_mode", "stretch")),
                         "labels": labels, "multi_labels": sorted(set(labels) & multi[dataset]),
                         "image_path": image_path, "mask_path": mask_path})
    if dropped:
        log.info("finetune: %d slice(s) have no label left on the %d-px mask grid and are not used", dropped,
                 mask_grid_px)
    columns = ["dataset", "subject_id", "slice_index", "store_index", "rows_px", "cols_px", "resize_mode",
               "labels", "multi_labels", "image_path", "mask_path"]
    return pd.DataFrame(rows, columns=columns)


def present_labels(model_mask: np.ndarray, mask_grid_px: int) -> list[int]:
    """Label values (> 0) present on a model-size label slice once it is on the mask grid."""
    return [int(v) for v in np.unique(grid_mask(model_mask, mask_grid_px)) if v != 0]


def _stack_paths(subject: pd.Series, dataset: str, subject_id: str, size_px: int) -> tuple[str, str]:
    subject_stacks({**subject.to_dict(), "dataset": dataset, "subject_id": subject_id}, size_px)
    return str(subject[f"slices_{size_px}_image"]), str(subject[f"slices_{size_px}_mask"])


def draw_target(grid_labels: np.ndarray, choices: list[int], multi_labels: list[int], *, seed: int, epoch: int,
                key: tuple) -> tuple[int, int, np.ndarray]:
    """The study's draw on one slice: a label, and for a multi-instance label one piece of it.

    Parameters
    ----------
    grid_labels : (G, G) int array
        The slice's label mask on the grid.
    choices : list of int
        Labels that may be drawn (those present on ``grid_labels``).
    multi_labels : list of int
        Labels drawn piece by piece (8-connected components).
    seed, epoch : int
        With ``key`` (dataset, subject, slice), seed the draws.

    Returns
    -------
    (label, piece, target): the label value, the piece index (0 for single-instance labels)
    and the (G, G) bool target: the label's mask, or the drawn piece only.
    """
    label = int(choices[int(stable_rng(seed, "label", epoch, *key).integers(len(choices)))])
    target = grid_labels == label
    piece = 0
    if label in multi_labels:
        lab, n = ndimage.label(target, structure=ndimage.generate_binary_structure(2, PIECE_CONNECTIVITY))
        if n > 1:
            piece = int(stable_rng(seed, "piece", epoch, *key).integers(n))
        target = lab == piece + 1
    return label, piece, target


class BoxSampleDataset(torch.utils.data.Dataset):
    """One sample per slice: ``image`` (S, S) uint8, ``box`` (4,) model px, ``target`` (G, G) float.

    Parameters
    ----------
    samples : DataFrame
        ``build_samples``' rows.
    size_px : int
        The model's input size S.
    mask_grid_px : int
        The mask grid G: targets (and the loss) live on it; boxes are computed on it.
    box_shift_grid_px : int
        N: each box side moves outward by a uniform integer 0..N grid pixels, redrawn each epoch.
    seed : int
        Seeds every draw, with the epoch (``set_epoch``) and the slice.
    """

    def __init__(self, samples: pd.DataFrame, size_px: int, mask_grid_px: int, box_shift_grid_px: int = 0,
                 seed: int = 0):
        self.samples = samples.reset_index(drop=True)
        self.size_px = int(size_px)
        self.mask_grid_px = int(mask_grid_px)
        self.box_shift_grid_px = int(box_shift_grid_px)
        if self.mask_grid_px < 1 or self.box_shift_grid_px < 0:
            raise ValueError(f"mask_grid_px must be >= 1 and box_shift_grid_px >= 0, got {mask_grid_px}, "
                             f"{box_shift_grid_px}")
        self.seed = int(seed)
        self.epoch = 0
        self._stacks: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _stack(self, path: str) -> np.ndarray:
        if path not in self._stacks:
            self._stacks[path] = np.load(path, mmap_mode="r")
        return self._stacks[path]

    def geometry(self, i: int) -> SliceGeometry:
        return geometry_of(self.samples.iloc[i], self.size_px)

    def _key(self, s: Mapping[str, Any]) -> tuple:
        return (s["dataset"], s["subject_id"], int(s["slice_index"]))

    def draw(self, i: int) -> dict[str, Any]:
        """This epoch's draw for sample ``i``: label, piece, target, exact and shifted grid box."""
        s = self.samples.iloc[i]
        k = int(s["store_index"])
        mask = np.asarray(self._stack(s["mask_path"])[k])
        if mask.shape != (self.size_px, self.size_px):
            raise ValueError(f"{s['mask_path']}: slice {k} has shape {mask.shape}, expected "
                             f"({self.size_px}, {self.size_px}); re-run prepare")
        grid = grid_mask(mask, self.mask_grid_px)
        choices = [v for v in s["labels"] if (grid == v).any()]
        if not choices:
            raise ValueError(f"{s['mask_path']}: slice {k} has none of its labels {list(s['labels'])} on the "
                             f"{self.mask_grid_px}-px grid (the slice store changed; re-run prepare)")
        label, piece, target = draw_target(grid, choices, list(s["multi_labels"]), seed=self.seed, epoch=self.epoch,
                                           key=self._key(s))
        exact = [float(v) for v in mask_box(target)]
        box = exact
        if self.box_shift_grid_px > 0:
            rows, cols = geometry_of(s, self.mask_grid_px).resized_shape  # the slice's extent on the grid
            rng = stable_rng(self.seed, "box_shift", self.epoch, *self._key(s))
            box = shift_box_outward(exact, self.box_shift_grid_px, rng, (cols - 1, rows - 1))
        return {"label": label, "piece": piece, "target": target, "box_grid": exact, "shifted_box_grid": box}

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples.iloc[i]
        d = self.draw(i)
        scale = self.size_px / self.mask_grid_px  # grid px -> model px (x4 at 1024 with the 256 grid)
        return {"index": i, "image": torch.from_numpy(np.array(self._stack(s["image_path"])[int(s["store_index"])])),
                "valid_hw": self.geometry(i).resized_shape, "label": d["label"],
                "box": torch.as_tensor(np.asarray(d["shifted_box_grid"]) * scale, dtype=torch.float32),
                "target": torch.from_numpy(d["target"].astype(np.float32))}


def embedding_key(sample: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(sample["dataset"]), str(sample["subject_id"]), int(sample["store_index"]))
