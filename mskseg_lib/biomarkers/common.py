"""What every biomarker shares: the result shape, input checks and the empty-mask rule.

A biomarker takes an integer label volume (0 = background), its voxel spacing in mm, and a
``labels`` mapping from structure name to the label value(s) that make it up (femoral cartilage
may be ``{"femoral": (1, 2)}`` when lateral and medial are labelled apart), plus an image or map
where it needs one. It returns a :class:`BiomarkerResult`: one row per (structure, slice) and one
row per structure, with the unit in every value column's name (``thickness_mm``, ``t2_ms``...).

A structure that is absent gives NaN with ``reason == "empty mask"``, never a 0 that would read
as a measurement; a structure that is present but cannot be measured on a slice gives NaN with
the reason in words. Rows that were measured have ``reason == ""``.

Bad input (wrong dimensionality, non-positive spacing, mismatched shapes, label value 0...)
raises a ``ValueError`` that names the problem, before any numpy code can fail obscurely.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

EMPTY_MASK = "empty mask"
OK = ""

Labels = Mapping[str, "int | Sequence[int]"]


@dataclass(frozen=True)
class BiomarkerResult:
    """Per-slice and per-subject values of one biomarker.

    ``per_slice``: one row per structure and slice where the structure is present, columns
    ``structure``, ``slice_index``, the value column(s), counts, ``reason``.
    ``per_subject``: one row per requested structure (present or not), columns ``structure``,
    the value column(s), ``n_slices``, ``reason``. ``value_column`` names the main value.
    """

    per_slice: pd.DataFrame
    per_subject: pd.DataFrame
    value_column: str

    def value(self, structure: str) -> float:
        """The per-subject value of one structure (NaN if it could not be measured)."""
        rows = self.per_subject[self.per_subject["structure"] == structure]
        if rows.empty:
            known = ", ".join(map(str, self.per_subject["structure"]))
            raise KeyError(f"no structure {structure!r} in this result; structures: {known}")
        return float(rows[self.value_column].iloc[0])


# ----------------------------------------------------------------------------- input checks
def check_label_volume(label_volume: np.ndarray, ndim: int = 3) -> np.ndarray:
    """The label volume as an integer array, or a ValueError saying what is wrong with it.

    Float arrays are accepted when every value is a whole number (NIfTI masks read with
    ``get_fdata`` arrive as float64); anything else (fractions, NaN) is refused.

    Parameters
    ----------
    label_volume : array of ``ndim`` dimensions
        Integer labels (0 = background); bool or whole-number float also accepted.
    ndim : int
        Required number of dimensions (3 for a volume, 2 for a slice).

    Returns
    -------
    ndarray
        The same shape, an integer dtype (bool -> uint8, float -> int64, integers unchanged).
    """
    arr = np.asarray(label_volume)
    if arr.ndim != ndim:
        raise ValueError(f"label volume must be {ndim}D, got {arr.ndim}D with shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind in "iu":
        return arr
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError("label volume must hold whole-number labels; got non-integer or NaN values")
        return arr.astype(np.int64)
    raise ValueError(f"label volume must be an integer array, got dtype {arr.dtype}")


def check_spacing(spacing_mm: Sequence[float], ndim: int = 3) -> tuple[float, ...]:
    """Voxel spacing as a tuple of ``ndim`` positive finite floats.

    Parameters
    ----------
    spacing_mm : sequence of float
        Spacing of each array axis in mm.
    ndim : int
        Number of axes it must cover.

    Returns
    -------
    tuple of float
        ``ndim`` spacings in mm; a ValueError names the problem otherwise.
    """
    try:
        values = tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise ValueError(f"spacing_mm must be {ndim} numbers (mm), got {spacing_mm!r}") from None
    if len(values) != ndim:
        raise ValueError(f"spacing_mm must have {ndim} values (one per axis), got {len(values)}: {values}")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing_mm must be positive and finite, got {values}")
    return values


def check_slice_axis(slice_axis: int, ndim: int = 3) -> int:
    """The slice axis as a non-negative index (negative indices count from the end).

    Parameters
    ----------
    slice_axis : int
        Axis index in ``[-ndim, ndim)``.
    ndim : int
        Dimensions of the volume.

    Returns
    -------
    int
        The axis in ``[0, ndim)``; a ValueError for a non-integer or out-of-range axis.
    """
    if isinstance(slice_axis, bool) or not isinstance(slice_axis, (int, np.integer)):
        raise ValueError(f"slice_axis must be an integer axis index, got {slice_axis!r}")
    if not -ndim <= int(slice_axis) < ndim:
        raise ValueError(f"slice_axis {slice_axis} is out of range for a {ndim}D volume")
    return int(slice_axis) % ndim


def check_same_shape(reference: np.ndarray, other: np.ndarray, what: str) -> None:
    """Raise a ValueError if ``other`` is not on the label volume's grid (same shape).

    Parameters
    ----------
    reference : ndarray
        The label volume.
    other : ndarray
        An image or map that must share its grid.
    what : str
        Name of ``other`` in the message (e.g. ``"t2 map"``).
    """
    if tuple(np.shape(other)) != tuple(np.shape(reference)):
        raise ValueError(f"{what} shape {tuple(np.shape(other))} does not match the label volume shape "
                         f"{tuple(np.shape(reference))}")


def normalise_labels(labels: Labels) -> dict[str, tuple[int, ...]]:
    """``{"name": 3}`` or ``{"name": [1, 2]}`` -> ``{"name": (3,)}`` / ``{"name": (1, 2)}``.

    Parameters
    ----------
    labels : mapping
        Structure name -> one label value or several (integers > 0).

    Returns
    -------
    dict
        Structure name -> sorted tuple of distinct label values; a ValueError for an empty mapping,
        a structure without values, a non-integer value or the background value 0.
    """
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError("labels must be a non-empty mapping of structure name -> label value(s)")
    out: dict[str, tuple[int, ...]] = {}
    for name, values in labels.items():
        seq = [values] if isinstance(values, (int, np.integer)) else list(values)
        if not seq:
            raise ValueError(f"structure {name!r} has no label values")
        ints = []
        for v in seq:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"label values must be integers; structure {name!r} has {v!r}")
            if int(v) == 0:
                raise ValueError(f"label value 0 is background and cannot make up structure {name!r}")
            ints.append(int(v))
        out[str(name)] = tuple(sorted(set(ints)))
    return out


def labels_from_names(label_names: Mapping[int | str, str]) -> dict[str, int]:
    """Invert a ``{value: name}`` map into the ``{name: value}`` form biomarkers take.

    Parameters
    ----------
    label_names : mapping
        Label value (int, or str as in the subjects table's ``label_names`` JSON) -> name.

    Returns
    -------
    dict
        Name -> integer label value.
    """
    return {str(name): int(value) for value, name in label_names.items()}


# ----------------------------------------------------------------------------- geometry helpers
def structure_mask(label_volume: np.ndarray, values: Iterable[int]) -> np.ndarray:
    """Boolean mask of the voxels whose label is any of ``values``.

    Parameters
    ----------
    label_volume : ndarray, any shape
        Integer labels.
    values : iterable of int
        The label values that make up the structure.

    Returns
    -------
    bool ndarray of ``label_volume``'s shape.
    """
    return np.isin(label_volume, np.fromiter(values, dtype=np.int64))


def in_plane_axes(slice_axis: int, ndim: int = 3) -> tuple[int, ...]:
    """The axes of a slice: every axis but ``slice_axis``.

    Parameters
    ----------
    slice_axis : int
        The axis slices are taken along.
    ndim : int
        Dimensions of the volume.

    Returns
    -------
    tuple of int
        The ``ndim - 1`` other axes in increasing order.
    """
    return tuple(a for a in range(ndim) if a != slice_axis)


def in_plane_spacing(spacing_mm: Sequence[float], slice_axis: int) -> tuple[float, float]:
    """Pixel spacing of a slice: the spacing of the two axes other than ``slice_axis``.

    Parameters
    ----------
    spacing_mm : sequence of 3 float
        Voxel spacing in mm per array axis.
    slice_axis : int
        The axis slices are taken along.

    Returns
    -------
    (float, float)
        Spacing in mm of the slice's first and second axis (array order).
    """
    a, b = in_plane_axes(slice_axis, len(spacing_mm))
    return float(spacing_mm[a]), float(spacing_mm[b])


def present_slices(mask: np.ndarray, slice_axis: int) -> np.ndarray:
    """Indices of the slices (along ``slice_axis``) where ``mask`` has any voxel.

    Parameters
    ----------
    mask : bool ndarray
        A structure mask.
    slice_axis : int
        The axis slices are taken along.

    Returns
    -------
    int ndarray (n,)
        Slice indices in increasing order.
    """
    other = in_plane_axes(slice_axis, mask.ndim)
    return np.flatnonzero(mask.any(axis=other))


def take_slice(volume: np.ndarray, slice_axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``slice_axis`` in the volume's own orientation (no display rotation).

    Parameters
    ----------
    volume : ndarray (3D)
        Labels, image or map.
    slice_axis, index : int
        Axis and slice number.

    Returns
    -------
    2D ndarray: the two other axes in array order.
    """
    return np.take(volume, index, axis=slice_axis)


def bounding_box(mask: np.ndarray, margin: Sequence[int] | int = 0) -> tuple[slice, ...]:
    """The smallest box holding ``mask``, grown by ``margin`` voxels and clipped to the array.

    Parameters
    ----------
    mask : bool ndarray (non-empty)
        The voxels to enclose.
    margin : int or sequence of int
        Voxels added on each side, one value for every axis or one per axis.

    Returns
    -------
    tuple of slice
        One ``slice`` per axis, usable as ``array[box]``.
    """
    margins = [int(margin)] * mask.ndim if isinstance(margin, (int, np.integer)) else [int(m) for m in margin]
    box = []
    for ax in range(mask.ndim):
        any_other = mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax))
        idx = np.flatnonzero(any_other)
        box.append(slice(max(0, idx[0] - margins[ax]), min(mask.shape[ax], idx[-1] + 1 + margins[ax])))
    return tuple(box)


# ----------------------------------------------------------------------------- tables
def frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame with exactly ``columns`` (also when there are no rows).

    Parameters
    ----------
    rows : list of dict
        The rows.
    columns : sequence of str
        Column order; a ``slice_index`` column is made int64.

    Returns
    -------
    DataFrame
    """
    df = pd.DataFrame(rows, columns=list(columns))
    if "slice_index" in df:
        df["slice_index"] = df["slice_index"].astype("int64")
    return df


def empty_row(structure: str, value_columns: Sequence[str], count_columns: Sequence[str] = (),
              reason: str = EMPTY_MASK, **extra: object) -> dict:
    """A per-subject row for a structure that could not be measured: NaN values, zero counts.

    Parameters
    ----------
    structure : str
        Structure name.
    value_columns, count_columns : sequence of str
        Columns set to NaN and to 0.
    reason : str
        Why there is no value (default: ``"empty mask"``).
    **extra
        Further columns of the row.

    Returns
    -------
    dict
        The row, ``reason`` last.
    """
    row: dict = {"structure": structure}
    row.update({c: float("nan") for c in value_columns})
    row.update({c: 0 for c in count_columns})
    row.update(extra)
    row["reason"] = reason
    return row
