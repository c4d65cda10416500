"""Per-label cleanup of predicted label maps, as the AutoLabel pipeline applies it.

Per slice and per label, in this order:

1. **Small components**: isolated pieces below ``min_component_px`` pixels are removed (8-connected),
   the specks a box-prompted decoder leaves at box corners.
2. **Closing** with an elliptical kernel of the label's size (``kernel_px``: 7x7 for fine
   structures such as cartilage and nerve up to 15x15 for coarse ones such as bone and fat, in
   pixels of the original slice): fills holes and notches narrower than the kernel.
3. **Gaussian blur of the same size and re-threshold at 0.5**: smooths the staircase edges of a
   mask decoded at low resolution and upsampled. It also removes parts thinner than about a
   third of the kernel, which is why the kernel is per label and why notebook 06 reports the
   Dice cost of post-processing on vs off.

**Overlap rule.** Each label is cleaned on its own, so closing can make two labels claim one
pixel. A pixel keeps the label it had before post-processing when that label still claims it;
otherwise it goes to the claiming label with the smallest area on the slice (nested MSK anatomy:
the inner, smaller structure wins, as in :mod:`mskseg_lib.evaluation.masks`).

Optionally, **largest 3D component** per label (26-connected) removes detections on slices far
from the structure. Labels that the catalog marks ``multi_instance`` (paired muscles, meniscal
horns) are several objects by anatomy and are left alone.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import cv2
import numpy as np
from scipy import ndimage

from mskseg_lib.data.catalog import DatasetSpec
from mskseg_lib.data.preprocess import remove_small_components
from mskseg_lib.errors import UserError

#: the study's kernels (pixels of the original slice, full-resolution matrices): 7x7 for fine
#: structures up to 15x15 for coarse ones
STUDY_KERNEL_PX: dict[str, int] = {"cartilage": 7, "nerve": 7, "muscle": 11, "bone": 15, "fat": 15}


class PostprocessError(UserError, ValueError):
    """A post-processing setting is wrong (an even kernel, a label or tissue class without one)."""


@dataclass(frozen=True)
class PostprocessSettings:
    """The cleanup of the module docstring; the defaults are the study's (full matrices).

    ``kernel_px`` maps tissue class -> odd kernel size (closing and blur, pixels of the
    original slice); ``kernel_px_by_label`` maps a label name -> kernel and overrides its
    tissue class. ``min_component_px``: smaller isolated pieces are removed (per slice and
    label). ``largest_component_3d`` keeps only each label's largest 3D component.
    """

    enabled: bool = True
    min_component_px: int = 100
    kernel_px: Mapping[str, int] = field(default_factory=lambda: dict(STUDY_KERNEL_PX))
    kernel_px_by_label: Mapping[str, int] = field(default_factory=dict)
    largest_component_3d: bool = False

    def as_record(self) -> dict[str, Any]:
        """JSON-ready dict in the layout of the profile's ``autolabel.postprocess``."""
        return {**dataclasses.asdict(self), "kernel_px": dict(self.kernel_px),
                "kernel_px_by_label": dict(self.kernel_px_by_label)}

    def switched(self, enabled: bool) -> "PostprocessSettings":
        """The same settings, switched on or off."""
        return dataclasses.replace(self, enabled=bool(enabled))


def check_kernel(kernel_px: int, what: str = "kernel") -> int:
    """A closing/blur kernel must be an odd integer >= 1 (1 = no closing, no blur)."""
    k = int(kernel_px)
    if k != kernel_px or k < 1 or k % 2 == 0:
        raise PostprocessError(f"{what} must be an odd integer >= 1, got {kernel_px!r}")
    return k


def label_kernels(spec: DatasetSpec, settings: PostprocessSettings) -> dict[int, int]:
    """Label value -> kernel size from ``kernel_px`` (by tissue class) and ``kernel_px_by_label``.

    Raises ``PostprocessError`` for a label name the dataset does not have, a tissue class
    without a kernel, or a kernel that is not an odd integer >= 1.

    Parameters
    ----------
    spec : the dataset (its labels' names, values and tissue classes).
    settings : ``kernel_px`` and ``kernel_px_by_label``.

    Returns
    -------
    dict label value -> odd kernel size in pixels of the original slice.
    """
    by_tissue = dict(settings.kernel_px)
    by_label = dict(settings.kernel_px_by_label)
    names = {lab.name for lab in spec.labels}
    unknown = sorted(set(by_label) - names)
    if unknown:
        raise PostprocessError(f"autolabel.postprocess.kernel_px_by_label: {', '.join(unknown)} not labels of "
                         f"{spec.name} (labels: {', '.join(sorted(names))})")
    out = {}
    for lab in spec.labels:
        if lab.name in by_label:
            out[lab.value] = check_kernel(by_label[lab.name], f"kernel_px_by_label.{lab.name}")
        elif lab.tissue_class in by_tissue:
            out[lab.value] = check_kernel(by_tissue[lab.tissue_class], f"kernel_px.{lab.tissue_class}")
        else:
            raise PostprocessError(f"autolabel.postprocess.kernel_px has no kernel for tissue class "
                             f"{lab.tissue_class!r} (label {lab.name} of {spec.name})")
    return out


def clean_label_mask(mask: np.ndarray, kernel_px: int, min_component_px: int) -> np.ndarray:
    """Steps 1-3 on one boolean 2D mask; returns a new boolean mask."""
    k = check_kernel(kernel_px)
    m = remove_small_components(np.asarray(mask, bool), int(min_component_px), connectivity=2)
    if k == 1 or not m.any():
        return m
    m8 = m.astype(np.uint8)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    # replicate the edge: a structure cut by the field of view continues beyond it, so neither the
    # closing nor the blur may erode it at the image border
    padded = cv2.copyMakeBorder(m8, k, k, k, k, cv2.BORDER_REPLICATE)
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, element)
    blurred = cv2.GaussianBlur(closed.astype(np.float32), (k, k), 0)
    return (blurred > 0.5)[k:-k, k:-k]


def resolve_overlaps(before: np.ndarray, cleaned: Mapping[int, np.ndarray]) -> np.ndarray:
    """Label map from per-label cleaned masks with the module's overlap rule."""
    out = np.zeros(before.shape, dtype=before.dtype)
    if not cleaned:
        return out
    values = sorted(cleaned, key=lambda v: (int(cleaned[v].sum()), v), reverse=True)
    for v in values:  # largest first, smaller ones painted over it
        out[cleaned[v]] = v
    for v, m in cleaned.items():  # a pixel still claimed by its original label keeps it
        keep = m & (before == v)
        out[keep] = v
    return out


def postprocess_slice(labels: np.ndarray, kernels: Mapping[int, int], min_component_px: int) -> np.ndarray:
    """Clean every label of one 2D label map; labels without a kernel entry raise KeyError."""
    labels = np.asarray(labels)
    values = [int(v) for v in np.unique(labels) if v != 0]
    cleaned = {v: clean_label_mask(labels == v, kernels[v], min_component_px) for v in values}
    cleaned = {v: m for v, m in cleaned.items() if m.any()}
    return resolve_overlaps(labels, cleaned)


def largest_component_3d(labels: np.ndarray, skip_values: set[int] | frozenset[int] = frozenset()) -> np.ndarray:
    """Keep each label's largest 26-connected component (labels in ``skip_values`` untouched)."""
    out = np.asarray(labels).copy()
    structure = ndimage.generate_binary_structure(out.ndim, out.ndim)
    for v in np.unique(out):
        if v == 0 or int(v) in skip_values:
            continue
        comp, n = ndimage.label(out == v, structure=structure)
        if n > 1:
            sizes = np.bincount(comp.ravel())[1:]
            out[(comp > 0) & (comp != int(np.argmax(sizes)) + 1)] = 0
    return out


def postprocess_volume(labels: np.ndarray, slice_axis: int, spec: DatasetSpec,
                       settings: PostprocessSettings) -> np.ndarray:
    """The whole cleanup of a 3D label volume, slice by slice along ``slice_axis``.

    Parameters
    ----------
    labels : 3D integer label volume (0 = background).
    slice_axis : the array axis slices are taken along.
    spec : the dataset (label values, tissue classes, multi-instance labels).
    settings : the cleanup; when ``enabled`` is false the labels come back unchanged.

    Returns
    -------
    A new label volume of the same shape and dtype.
    """
    out = np.asarray(labels).copy()
    if not settings.enabled:
        return out
    kernels = label_kernels(spec, settings)
    min_px = int(settings.min_component_px)
    moved = np.moveaxis(out, slice_axis, 0)
    for k in range(moved.shape[0]):
        if moved[k].any():
            moved[k] = postprocess_slice(moved[k], kernels, min_px)
    if settings.largest_component_3d:
        multi = frozenset(lab.value for lab in spec.labels if lab.multi_instance)
        out = largest_component_3d(out, multi)
    return out
