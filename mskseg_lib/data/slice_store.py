"""Model-ready slices on disk: one uint8 stack per subject and model size, memory-mapped.

The study stored every slice as a float64 array of 25 MB. Here a subject's processed slices
are one ``(n, size, size)`` uint8 ``.npy`` stack for images and one for masks (64 KiB per
256 px slice, 1 MiB per 1024 px slice), opened with ``mmap_mode="r"`` so reading one slice
touches only its pages. ``measure_storage`` reports bytes and load time per slice.
"""
from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.prepare import subject_dir


@lru_cache(maxsize=64)
def _open_version(path: str, mtime_ns: int, size: int) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def _open(path: str) -> np.ndarray:
    """The memory-mapped stack at ``path``; a re-prepared (replaced) file is opened afresh."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return np.load(path, mmap_mode="r")  # raises the clear "No such file" error
    return _open_version(path, st.st_mtime_ns, st.st_size)


_open.cache_clear = _open_version.cache_clear  # type: ignore[attr-defined]


def load_stack(cfg: dict, dataset: str, subject_id: str, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (images, masks) stacks of one subject at ``size_px``."""
    d = subject_dir(cfg, dataset, subject_id)
    return _open(str(d / f"slices_{size_px}_image.npy")), _open(str(d / f"slices_{size_px}_mask.npy"))


def load_slice(cfg: dict, dataset: str, subject_id: str, store_index: int, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image, mask) pair as in-memory uint8 arrays."""
    images, masks = load_stack(cfg, dataset, subject_id, size_px)
    return np.array(images[store_index]), np.array(masks[store_index])


def qc_samples(cfg: dict, slices: pd.DataFrame, per_dataset: int = 1, size_px: int = 256, seed: int = 0) -> list[dict]:
    """Slices for a QC montage: per dataset, the slices with the most labels (ties by seed)."""
    out = []
    rng = np.random.default_rng(seed)
    for dataset, g in slices.groupby("dataset", sort=False):
        n_labels = g["labels_present"].map(lambda s: len(json.loads(s)))
        order = g.assign(n=n_labels.values, r=rng.random(len(g))).sort_values(["n", "r"], ascending=[False, True])
        for _, row in order.head(per_dataset).iterrows():
            image, mask = load_slice(cfg, dataset, row["subject_id"], int(row["store_index"]), size_px)
            out.append({"dataset": dataset, "subject_id": row["subject_id"], "slice_index": int(row["slice_index"]),
                        "image": image, "mask": mask, "label_names": get_dataset(dataset).label_names()})
    return out


def measure_storage(cfg: dict, subjects: pd.DataFrame, size_px: int, n_reads: int = 200, seed: int = 0) -> dict:
    """Bytes per stored slice (image + mask) and mean seconds to load one random slice pair."""
    col_i, col_m = f"slices_{size_px}_image", f"slices_{size_px}_mask"
    n_slices = int(subjects["n_processed_slices"].sum())
    total = sum(Path(p).stat().st_size for p in subjects[col_i]) + sum(Path(p).stat().st_size for p in subjects[col_m])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(subjects), n_reads)
    _open.cache_clear()
    t0 = time.perf_counter()
    for i in picks:
        row = subjects.iloc[int(i)]
        k = int(rng.integers(0, row["n_processed_slices"]))
        load_slice(cfg, row["dataset"], row["subject_id"], k, size_px)
    seconds = (time.perf_counter() - t0) / n_reads
    return {"size_px": size_px, "slices": n_slices, "bytes_total": total,
            "bytes_per_slice": total / max(n_slices, 1), "load_seconds_per_slice": seconds,
            "float64_bytes_per_slice_1024": 1024 * 1024 * 8 * 3}
