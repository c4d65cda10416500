"""Model-ready slices on disk: one uint8 stack per subject and model size, memory-mapped.

The study stored every slice as a float64 array of 25 MB. Here a subject's processed slices
are one ``(n, size, size)`` uint8 ``.npy`` stack for images and one for masks (64 KiB per
256 px slice, 1 MiB per 1024 px slice), opened with ``mmap_mode="r"`` so reading one slice
touches only its pages. ``measure_storage`` reports bytes and load time per slice.

This module owns the layout of a prepared subject (``subject_dir``, ``stack_path``); it reads
only files, never the profile: callers pass the prepared folder, or a subjects-table row that
names its stacks (``subject_stacks``).
"""
from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.errors import DataError

SUBJECTS_FOLDER = "subjects"


def subject_dir(prepared_dir: Path, dataset: str, subject_id: str) -> Path:
    """Folder of one prepared subject: ``<prepared_dir>/subjects/<dataset>/<subject_id>``."""
    return Path(prepared_dir) / SUBJECTS_FOLDER / dataset / subject_id


def stack_path(folder: Path, size_px: int, kind: str) -> Path:
    """The ``slices_<size>_<kind>.npy`` stack (``kind``: ``image`` or ``mask``) in a subject folder."""
    return Path(folder) / f"slices_{size_px}_{kind}.npy"


@lru_cache(maxsize=64)
def _open_version(path: str, mtime_ns: int, size: int) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def _open(path: str) -> np.ndarray:
    """The memory-mapped ``(n, size, size)`` stack at ``path``; a re-prepared (replaced) file is
    opened afresh. A missing, unreadable or wrongly shaped stack raises a ``DataError`` naming it."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        raise DataError(path, "slice stack not found (rerun prepare)") from None
    try:
        stack = _open_version(path, st.st_mtime_ns, st.st_size)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"not a readable .npy slice stack ({type(exc).__name__}: {exc}); rerun prepare") from None
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise DataError(path, f"slice stack has shape {stack.shape}; expected (n, size, size) (rerun prepare)")
    return stack


_open.cache_clear = _open_version.cache_clear  # type: ignore[attr-defined]


def load_stack(prepared_dir: Path, dataset: str, subject_id: str, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped stacks of one subject at ``size_px``.

    Parameters
    ----------
    prepared_dir : Path
        The folder ``prepare_all`` wrote (holding ``subjects/``).
    dataset, subject_id : str
        The subject.
    size_px : int
        One of the prepared model sizes.

    Returns
    -------
    images, masks : (n_slices, size_px, size_px) uint8 arrays, memory-mapped read-only
        The subject's processed slices in ``store_index`` order.
    """
    d = subject_dir(prepared_dir, dataset, subject_id)
    return _open(str(stack_path(d, size_px, "image"))), _open(str(stack_path(d, size_px, "mask")))


def subject_stacks(subject: Mapping[str, Any], size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (images, masks) stacks named in one row of the subjects table.

    The row's ``slices_<size>_image``/``_mask`` columns hold the paths, so no folder is needed.
    A size that was not prepared raises a ``DataError`` saying how to add it.

    Returns
    -------
    images, masks : (n_slices, size_px, size_px) uint8 arrays, memory-mapped read-only
    """
    col = f"slices_{size_px}_image"
    if col not in subject or not isinstance(subject[col], str):
        image = subject.get("image_nifti")
        where = Path(image).parent if isinstance(image, str) else Path(f"{subject['dataset']}/{subject['subject_id']}")
        raise DataError(where, f"no {size_px} px slices were prepared; add {size_px} to prepare.slice_sizes_px "
                               "and rerun prepare")
    return _open(subject[col]), _open(subject[f"slices_{size_px}_mask"])


def load_slice(prepared_dir: Path, dataset: str, subject_id: str, store_index: int,
               size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image, mask) pair as in-memory ``(size_px, size_px)`` uint8 arrays."""
    images, masks = load_stack(prepared_dir, dataset, subject_id, size_px)
    return np.array(images[store_index]), np.array(masks[store_index])


def qc_samples(prepared_dir: Path, slices: pd.DataFrame, per_dataset: int = 1, size_px: int = 256,
               seed: int = 0) -> list[dict]:
    """Slices for a QC montage: per dataset, the slices with the most labels (ties by seed).

    Returns
    -------
    list of dict
        ``dataset``, ``subject_id``, ``slice_index``, ``image`` and ``mask`` ((size_px, size_px)
        uint8) and ``label_names`` ({value: name}) per chosen slice, datasets in table order.
    """
    out = []
    rng = np.random.default_rng(seed)
    for dataset, g in slices.groupby("dataset", sort=False):
        n_labels = g["labels_present"].map(lambda s: len(json.loads(s)))
        order = g.assign(n=n_labels.values, r=rng.random(len(g))).sort_values(["n", "r"], ascending=[False, True])
        for _, row in order.head(per_dataset).iterrows():
            image, mask = load_slice(prepared_dir, dataset, row["subject_id"], int(row["store_index"]), size_px)
            out.append({"dataset": dataset, "subject_id": row["subject_id"], "slice_index": int(row["slice_index"]),
                        "image": image, "mask": mask, "label_names": get_dataset(dataset).label_names()})
    return out


def measure_storage(subjects: pd.DataFrame, size_px: int, n_reads: int = 200, seed: int = 0) -> dict:
    """Bytes per stored slice (image + mask) and mean seconds to load one random slice pair.

    Parameters
    ----------
    subjects : DataFrame
        The prepared subjects table (its ``slices_<size>_*`` columns name the stacks).
    size_px : int
        The model size measured.
    n_reads, seed : int
        Random slice pairs read (from a cold cache) and the seed choosing them.

    Returns
    -------
    dict
        ``size_px``, ``slices``, ``bytes_total``, ``bytes_per_slice``, ``load_seconds_per_slice``
        and, for comparison, ``float64_bytes_per_slice_1024`` (the study's storage).
    """
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
        images, masks = subject_stacks(row, size_px)
        np.array(images[k]), np.array(masks[k])
    seconds = (time.perf_counter() - t0) / n_reads
    return {"size_px": size_px, "slices": n_slices, "bytes_total": total,
            "bytes_per_slice": total / max(n_slices, 1), "load_seconds_per_slice": seconds,
            "float64_bytes_per_slice_1024": 1024 * 1024 * 8 * 3}
