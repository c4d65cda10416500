"""Training samples: one (slice, ground-truth box) pair per sample, read from the slice store.

A sample is one structure on one slice: its box prompt (one per label, or per connected piece
of a ``multi_instance`` label, exactly as the zero-shot prompts) and its binary target mask at
the model's input size. Training subjects are chosen per dataset with a seeded permutation and
the first ``n`` taken, so the 5-subject set is inside the 10-subject set (a size curve then
measures size, not which subjects were drawn). Box-shift augmentation moves every side of the
box by up to ``box_shift_px`` original-slice pixels, seeded per (seed, epoch, sample), so a
resumed or a distributed run draws the same boxes as an uninterrupted single-process one.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from mskseg_lib.data.boxes import jitter_box
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.preprocess import SliceGeometry, scale_box
from mskseg_lib.evaluation.prompting import gt_box_prompts, stable_rng
from mskseg_lib.evaluation.zero_shot import load_stack_or_raise


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


def build_samples(subjects: pd.DataFrame, slices: pd.DataFrame, max_slices_per_subject: int,
                  size_px: int) -> pd.DataFrame:
    """One row per (slice, box) of the chosen subjects: where to read it and its box."""
    keys = set(zip(subjects["dataset"], subjects["subject_id"]))
    chosen = slices[[k in keys for k in zip(slices["dataset"], slices["subject_id"])]]
    chosen = spread_slices(chosen, max_slices_per_subject)
    subj = subjects.set_index(["dataset", "subject_id"])
    multi = {(d, lab.value) for d in chosen["dataset"].unique() for lab in get_dataset(d).labels if lab.multi_instance}
    paths = {key: _stack_paths(subj.loc[key], key[0], key[1], size_px)  # checked once per subject
             for key in dict.fromkeys(zip(chosen["dataset"], chosen["subject_id"]))}
    rows = []
    for row in chosen.itertuples(index=False):
        image_path, mask_path = paths[(row.dataset, row.subject_id)]
        for p in gt_box_prompts(row._asdict()):
            rows.append({"dataset": row.dataset, "subject_id": row.subject_id, "slice_index": int(row.slice_index),
                         "store_index": int(row.store_index), "rows_px": int(row.rows_px), "cols_px": int(row.cols_px),
                         "label": p.label, "instance": p.instance, "box_px": list(p.box_px),
                         "multi_instance": (row.dataset, p.label) in multi,
                         "image_path": image_path, "mask_path": mask_path})
    return pd.DataFrame(rows)


def _stack_paths(subject: pd.Series, dataset: str, subject_id: str, size_px: int) -> tuple[str, str]:
    load_stack_or_raise({**subject.to_dict(), "dataset": dataset, "subject_id": subject_id}, size_px)
    return str(subject[f"slices_{size_px}_image"]), str(subject[f"slices_{size_px}_mask"])


class BoxSampleDataset(torch.utils.data.Dataset):
    """Samples as tensors: ``image`` (S, S) uint8, ``box`` (4,) model px, ``target`` (S, S) float.

    ``set_epoch`` changes the box-shift draw (and nothing else). For multi-instance labels the
    target is the label inside the piece's own (unshifted) box, so a box around the left
    psoas is not asked to segment the right one; other labels keep their whole mask.
    """

    def __init__(self, samples: pd.DataFrame, size_px: int, box_shift_px: float = 0.0, seed: int = 0):
        self.samples = samples.reset_index(drop=True)
        self.size_px = int(size_px)
        self.box_shift_px = float(box_shift_px)
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
        s = self.samples.iloc[i]
        return SliceGeometry(int(s["rows_px"]), int(s["cols_px"]), self.size_px)

    def box_px(self, i: int) -> list[float]:
        """The (possibly shifted) box of sample ``i`` this epoch, in original-slice pixels."""
        s = self.samples.iloc[i]
        box = list(s["box_px"])
        if self.box_shift_px > 0:
            rng = stable_rng(self.seed, "box_shift", self.epoch, s["dataset"], s["subject_id"], s["slice_index"],
                             s["label"], s["instance"])
            box = jitter_box(box, self.box_shift_px, rng, (int(s["rows_px"]), int(s["cols_px"])))
        return box

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples.iloc[i]
        geom = self.geometry(i)
        k = int(s["store_index"])
        mask = np.asarray(self._stack(s["mask_path"])[k])
        target = mask == int(s["label"])
        if target.shape != (self.size_px, self.size_px):
            raise ValueError(f"{s['mask_path']}: slice {k} has shape {target.shape}, expected "
                             f"({self.size_px}, {self.size_px}); re-run prepare")
        if bool(s.get("multi_instance", False)):
            target &= piece_region(list(s["box_px"]), geom)
        return {"index": i, "image": torch.from_numpy(np.array(self._stack(s["image_path"])[k])),
                "valid_hw": geom.resized_shape,
                "box": torch.as_tensor(scale_box(self.box_px(i), geom), dtype=torch.float32),
                "target": torch.from_numpy(target.astype(np.float32))}


def piece_region(box_px: list[float], geom: SliceGeometry) -> np.ndarray:
    """Model-size mask of the model pixels covered by the original pixels of an inclusive box
    (original pixel x spans model pixels [x * scale, (x + 1) * scale)), with a 1 px margin."""
    x0, y0, x1, y1 = box_px
    lo = scale_box([x0, y0], geom)
    hi = scale_box([x1 + 1, y1 + 1], geom)
    region = np.zeros((geom.size_px, geom.size_px), bool)
    region[max(int(np.floor(lo[1])) - 1, 0):int(np.ceil(hi[1])) + 1,
           max(int(np.floor(lo[0])) - 1, 0):int(np.ceil(hi[0])) + 1] = True
    return region


def embedding_key(sample: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(sample["dataset"]), str(sample["subject_id"]), int(sample["store_index"]))
