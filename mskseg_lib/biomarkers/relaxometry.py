"""Compositional biomarkers: mean T2 / T1rho per cartilage compartment, and the T2 fit itself.

``relaxation_time`` averages a relaxation map (ms) inside each compartment, as the study does.
Map values are clipped to 0-100 ms first (as in the study: fluid partial volume and failed fits
would otherwise dominate a mean); non-finite values (undefined fits) are left out and counted.

* Per slice: the mean of the compartment's voxels on that slice; and a ``total`` row, the mean
  of the compartments' slice means over the compartments present on that slice (the study's
  "overall total value ... averaging results across all relevant regions for a given slice").
* Per subject (the study's definition, ``<q>_ms``): the mean of the slice means over the slices
  where the compartment has a value (each slice counts once, however many voxels it has); the
  ``total`` is the mean of the slice totals.
* Labelled variant ``<q>_voxel_weighted_ms``: the mean over all the compartment's voxels (slices
  with more cartilage weigh more; for ``total``, over the union of the compartments). This is
  the mean of the map over the structure, which is what the synthetic cohort stores as truth.

``fit_monoexponential`` (alias ``fit_t2_monoexponential``) fits ``S(t) = S0 exp(-t / T)`` to a
series of images at times ``t`` (echo or T2-preparation times for T2, spin-lock times for
T1rho), vectorised over voxels: a weighted linear least-squares fit of ``ln S`` against ``t``
with weights ``S^2`` (the inverse variance of ``ln S`` under additive noise, which keeps the
noisy late echoes from dragging the fit). Echoes at or below ``min_signal`` are left out of a
voxel's fit; a voxel with fewer than two usable echoes, or a non-decaying fit, gets NaN.

Echo layout: the project's raw files store multi-echo series with the echo axis *last*
(``(X, Y, Z, E)``, see :mod:`mskseg_lib.data.volume` and ``cohort.compositional_series``), but
other code may hold them echo-first; ``echo_axis`` is therefore a required keyword, checked
against the number of echo times.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from mskseg_lib.biomarkers.common import (
    OK,
    BiomarkerResult,
    Labels,
    check_label_volume,
    check_same_shape,
    check_slice_axis,
    check_spacing,
    empty_row,
    frame,
    normalise_labels,
    structure_mask,
)

CLIP_MS = (0.0, 100.0)
NO_VALID = "no finite map values in the mask"
DEFAULT_MIN_SIGNAL_FRACTION = 0.02


TOTAL = "total"


def _columns(q: str) -> tuple[list[str], list[str]]:
    per_slice = ["structure", "slice_index", f"{q}_ms", f"{q}_sd_ms", "n_structures", "n_voxels", "n_excluded",
                 "n_clipped", "reason"]
    per_subject = ["structure", f"{q}_ms", f"{q}_voxel_weighted_ms", f"{q}_sd_ms", "n_slices", "n_voxels",
                   "n_excluded", "n_clipped", "reason"]
    return per_slice, per_subject


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else np.nan


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else np.nan


def relaxation_time(label_volume: np.ndarray, map_ms: np.ndarray, spacing_mm: Sequence[float], labels: Labels,
                    slice_axis: int = 2, quantity: str = "t2", clip_ms: tuple[float, float] = CLIP_MS,
                    total: bool = True) -> BiomarkerResult:
    """Mean relaxation time per compartment: per slice, and per subject as the mean of the slice
    means (the study), with the voxel-weighted mean beside it; plus a ``total`` row.

    Parameters
    ----------
    label_volume : (X, Y, Z) int ndarray
        Labels (0 = background).
    map_ms : (X, Y, Z) float ndarray
        T2 or T1rho map in ms on the label volume's grid.
    spacing_mm : sequence of 3 float
        Voxel spacing in mm (checked for the common interface; a mean needs no geometry).
    labels : mapping
        Compartment name -> label value(s).
    slice_axis : int
        The acquisition plane's axis.
    quantity : str
        ``"t2"`` or ``"t1rho"``: names the value columns (``t2_ms``, ``t2_voxel_weighted_ms``,
        ``t2_sd_ms``...).
    clip_ms : (float, float)
        Map values are clipped to this range before averaging (the study: 0-100 ms).
    total : bool
        Add the ``total`` rows (per slice the mean over the compartments on it; per subject the
        mean of those); False leaves the name free for a structure.

    Returns
    -------
    BiomarkerResult
        ``per_slice`` and ``per_subject`` tables in ms, with ``n_voxels``, ``n_excluded``
        (non-finite map values inside the mask) and ``n_clipped`` (values moved into ``clip_ms``);
        an absent compartment is NaN with reason ``"empty mask"``.
    """
    vol = check_label_volume(label_volume)
    check_spacing(spacing_mm)
    axis = check_slice_axis(slice_axis)
    structures = normalise_labels(labels)
    if total and TOTAL in structures:
        raise ValueError(f"{TOTAL!r} is reserved for the mean over compartments; rename that structure or pass "
                         f"total=False")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(quantity)):
        raise ValueError(f"quantity must be a short lower-case name like 't2' or 't1rho', got {quantity!r}")
    values_map = np.asarray(map_ms)
    check_same_shape(vol, values_map, "relaxation map")
    if values_map.dtype.kind not in "iuf":
        raise ValueError(f"relaxation map must be numeric, got dtype {values_map.dtype}")
    lo, hi = (float(c) for c in clip_ms)
    if not lo < hi:
        raise ValueError(f"clip_ms must be (low, high) with low < high, got {clip_ms}")
    q = str(quantity)
    slice_cols, subject_cols = _columns(q)
    slice_rows, subject_rows = [], []
    moved_map = np.moveaxis(values_map.astype(np.float64), axis, 0)
    value_cols = [f"{q}_ms", f"{q}_voxel_weighted_ms", f"{q}_sd_ms"]
    count_cols = ["n_slices", "n_voxels", "n_excluded", "n_clipped"]
    slice_means: dict[int, list[float]] = {}  # slice -> the compartments' means on it (for the total)
    union = np.zeros(moved_map.shape, dtype=bool)

    def measure(name: str, mask: np.ndarray, n_structures: int, per_slice_value=None) -> None:
        """Rows of one structure; ``per_slice_value(k, clipped)`` overrides the slice value (total)."""
        if not mask.any():
            subject_rows.append(empty_row(name, value_cols, count_cols))
            return
        pooled, means = [], []
        n_excluded = n_clipped = 0
        for k in np.flatnonzero(mask.any(axis=(1, 2))):
            raw = moved_map[k][mask[k]]
            finite = raw[np.isfinite(raw)]
            clipped = np.clip(finite, lo, hi)
            n_ex, n_cl = int(raw.size - finite.size), int(np.count_nonzero(clipped != finite))
            n_excluded += n_ex
            n_clipped += n_cl
            pooled.append(clipped)
            value = _mean(clipped) if per_slice_value is None else per_slice_value(int(k))
            means.append(value)
            if per_slice_value is None and np.isfinite(value):
                slice_means.setdefault(int(k), []).append(value)
            slice_rows.append({"structure": name, "slice_index": int(k), f"{q}_ms": value, f"{q}_sd_ms": _sd(clipped),
                               "n_structures": n_structures if per_slice_value is None
                               else len(slice_means.get(int(k), [])),
                               "n_voxels": int(raw.size), "n_excluded": n_ex, "n_clipped": n_cl,
                               "reason": OK if np.isfinite(value) else NO_VALID})
        allv = np.concatenate(pooled)
        means_arr = np.asarray(means, dtype=np.float64)
        means_arr = means_arr[np.isfinite(means_arr)]
        subject_rows.append({"structure": name, f"{q}_ms": _mean(means_arr), f"{q}_voxel_weighted_ms": _mean(allv),
                             f"{q}_sd_ms": _sd(allv), "n_slices": int(means_arr.size), "n_voxels": int(mask.sum()),
                             "n_excluded": n_excluded, "n_clipped": n_clipped,
                             "reason": OK if means_arr.size else NO_VALID})

    for name, label_values in structures.items():
        mask = np.moveaxis(structure_mask(vol, label_values), axis, 0)
        union |= mask
        measure(name, mask, 1)
    if total:
        measure(TOTAL, union, len(structures),
                per_slice_value=lambda k: float(np.mean(slice_means[k])) if slice_means.get(k) else np.nan)
    return BiomarkerResult(frame(slice_rows, slice_cols), frame(subject_rows, subject_cols), f"{q}_ms")


def fit_monoexponential(signals: np.ndarray, times_ms: Sequence[float], *, echo_axis: int,
                        mask: np.ndarray | None = None, min_signal: float | None = None) -> np.ndarray:
    """Relaxation-time map from a decay series ``S(t) = S0 exp(-t / T)`` (log-linear least squares).

    Parameters
    ----------
    signals : ndarray
        One image per time along ``echo_axis`` (any spatial shape).
    times_ms : sequence of float
        The preparation / echo / spin-lock times in ms, one per image.
    echo_axis : int
        Axis of ``signals`` holding the times.
    mask : bool ndarray, optional
        Restricts the fit (the spatial shape); NaN elsewhere.
    min_signal : float, optional
        Echoes at or below it are not used; by default 2 % of the 99th percentile of the
        shortest-time image inside the mask (background noise would otherwise be fitted as a decay).

    Returns
    -------
    float32 ndarray of the spatial shape
        T in ms; NaN where the fit is undefined (fewer than two usable echoes or no decay, slope >= 0).
    """
    s = np.asarray(signals)
    if s.dtype.kind not in "iuf":
        raise ValueError(f"signals must be numeric, got dtype {s.dtype}")
    if s.ndim < 2:
        raise ValueError(f"signals must have an echo axis and at least one spatial axis, got shape {s.shape}")
    if isinstance(echo_axis, bool) or not isinstance(echo_axis, (int, np.integer)) or not -s.ndim <= echo_axis < s.ndim:
        raise ValueError(f"echo_axis must be an axis index of the {s.ndim}D signals, got {echo_axis!r}")
    axis = int(echo_axis) % s.ndim
    t = np.asarray(times_ms, dtype=np.float64)
    if t.ndim != 1 or t.size != s.shape[axis]:
        raise ValueError(f"times_ms must be 1D with one time per echo: {s.shape[axis]} echoes along axis {echo_axis} "
                         f"of shape {s.shape}, got times of shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.unique(t).size < 2:
        raise ValueError(f"times_ms must be finite, non-negative and hold at least two distinct times, got {t.tolist()}")
    s = np.moveaxis(s, axis, -1).astype(np.float64)
    spatial = s.shape[:-1]
    if mask is None:
        sel = np.ones(spatial, dtype=bool)
    else:
        sel = np.asarray(mask, dtype=bool)
        if sel.shape != spatial:
            raise ValueError(f"mask shape {sel.shape} does not match the spatial shape {spatial} of the echoes")
    y = s[sel]  # (n_voxels, n_echoes)
    out = np.full(spatial, np.nan, dtype=np.float32)
    if y.size == 0:
        return out
    if min_signal is None:
        first = y[:, int(np.argmin(t))]
        first = first[np.isfinite(first)]
        min_signal = DEFAULT_MIN_SIGNAL_FRACTION * float(np.percentile(first, 99)) if first.size else 0.0
    usable = np.isfinite(y) & (y > float(min_signal))
    w = np.where(usable, y, 0.0) ** 2
    logy = np.log(np.where(usable, y, 1.0))
    sw, swx, swy = w.sum(1), w @ t, (w * logy).sum(1)
    swxx, swxy = w @ (t * t), (w * logy * t[None, :]).sum(1)
    denom = sw * swxx - swx ** 2
    enough = (usable.sum(1) >= 2) & (denom > 1e-12 * np.maximum(sw * swxx, 1e-300))
    slope = np.where(enough, (sw * swxy - swx * swy) / np.where(enough, denom, 1.0), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(slope < 0, -1.0 / slope, np.nan)
    out[sel] = tau.astype(np.float32)
    return out


fit_t2_monoexponential = fit_monoexponential

__all__ = ["relaxation_time", "fit_monoexponential", "fit_t2_monoexponential", "CLIP_MS", "TOTAL"]
