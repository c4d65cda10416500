"""Whole-volume predictions: every labelled slice of a subject segmented and put back in 3D.

Biomarkers (cartilage thickness, tissue volume, disc height, relaxation times) are measured per
subject, so they need the prediction on every slice the manual mask labels, not the sample of
slices that scoring uses. The zero-shot engine does the work (ground-truth boxes, one embedding
per slice, the shared embedding cache, resumable run folders); this module asks it for all
slices of the chosen subjects and reassembles the per-slice predictions it saves into label
volumes in the prepared (canonical) geometry, with the manual mask's affine.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mskseg_lib.data import raw_io
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.label_tables import write_label_tables
from mskseg_lib.data.preprocess import from_display
from mskseg_lib.evaluation.zero_shot import SliceSelection, ZeroShotRun, ZeroShotSettings, load_predictions, run_zero_shot
from mskseg_lib.models.interface import Segmenter

CONDITION = "gt_box"


def all_slices_selection(datasets: Sequence[str], split: str | Sequence[str],
                         max_subjects_per_dataset: int = 0) -> SliceSelection:
    """Every labelled slice of the chosen subjects (no per-subject cap)."""
    return SliceSelection(split=split if isinstance(split, str) else tuple(split), datasets=tuple(datasets),
                          max_subjects_per_dataset=max_subjects_per_dataset, max_slices_per_subject=0)


def exact_box_settings(settings: ZeroShotSettings, cache_embeddings: bool | None = None) -> ZeroShotSettings:
    """``settings`` with only the exact ground-truth boxes and no HD95: what whole volumes need.

    ``cache_embeddings`` overrides the setting (None keeps it); a finetuned encoder's embeddings
    go to their own store folder (``<key>-<weights digest>``), never the initial model's.
    """
    extra = {} if cache_embeddings is None else {"cache_embeddings": cache_embeddings}
    return dataclasses.replace(settings, conditions=({"name": CONDITION, "jitter_px": 0},), hd95=False, **extra)


def predict_volumes(prepared_dir: Path, run_dir: Path, model_key: str, datasets: Sequence[str],
                    split: str | Sequence[str], settings: ZeroShotSettings | None = None, *,
                    max_subjects_per_dataset: int = 0, cache_embeddings: bool | None = None,
                    cache_dir: Path | None = None, profile: Mapping[str, Any] | None = None,
                    model_loader: Callable[[str], Segmenter] | None = None, progress: bool = True,
                    on_bad_input: str = "skip") -> ZeroShotRun:
    """Segment every labelled slice of the selected subjects with ground-truth boxes (resumable).

    Parameters
    ----------
    prepared_dir, run_dir : Path
        The prepared data and the run folder (as in ``run_zero_shot``).
    model_key : str
        Zoo name (or the key ``model_loader`` answers to).
    datasets : sequence of str
    split : str or sequence of str
        ``"test"``, several splits or ``"all"``.
    settings : ZeroShotSettings, optional
        Seed, model settings, preparation record; its conditions are replaced by the exact
        boxes (``CONDITION``) and HD95 is off.
    max_subjects_per_dataset : int
        0 = every subject of the split.
    cache_embeddings : bool, optional
        Overrides ``settings.cache_embeddings`` (False for a finetuned encoder).
    cache_dir, profile, model_loader, progress, on_bad_input : as in ``run_zero_shot``.

    Returns
    -------
    ZeroShotRun
        Its run folder holds one predicted stack per subject; ``assemble_volume`` puts one back in
        3D. ``skipped`` lists the subjects whose input files were bad (they have no prediction).
    """
    return run_zero_shot(prepared_dir, run_dir, [model_key],
                         all_slices_selection(datasets, split, max_subjects_per_dataset),
                         exact_box_settings(settings or ZeroShotSettings(), cache_embeddings),
                         cache_dir=cache_dir, profile=profile, progress=progress, model_loader=model_loader,
                         on_bad_input=on_bad_input)


def assemble_volume(run_dir: Path, model_key: str, subject: Mapping[str, Any],
                    condition: str = CONDITION) -> tuple[np.ndarray, np.ndarray]:
    """(predicted label volume, affine) of one subject, on the grid of its prepared mask.

    Slices without a prediction (unlabelled in the manual mask, so never prompted) are 0. A
    subject the run skipped (or did not reach) has no predictions: a ``DataError`` names the file.
    """
    mask = raw_io.read_array("nifti", Path(subject["mask_nifti"]), "mask")
    shape = mask.data.shape
    try:
        stacks = load_predictions(Path(run_dir), model_key, str(subject["dataset"]), str(subject["subject_id"]))
    except FileNotFoundError as exc:
        raise DataError(exc.filename or run_dir, "no prediction for this subject (skipped by the run, see its "
                                                 "skipped.csv, or not run yet)") from None
    if condition not in stacks:
        raise KeyError(f"{subject['dataset']}/{subject['subject_id']}: no {condition!r} prediction in {run_dir} "
                       f"(has {sorted(k for k in stacks if k != 'slice_index')})")
    axis = int(subject["slice_axis"])
    volume = np.zeros(shape, np.int16)
    moved = np.moveaxis(volume, axis, 0)  # a view: writing into it fills ``volume``
    for k, pred in zip(stacks["slice_index"].astype(int), stacks[condition]):
        canonical = from_display(np.asarray(pred))
        if canonical.shape != moved.shape[1:]:
            raise ValueError(f"{subject['dataset']}/{subject['subject_id']}: prediction of slice {k} has shape "
                             f"{canonical.shape}, the mask's slices {moved.shape[1:]}")
        moved[k] = canonical
    return volume, mask.affine


def write_volume(path: Path, volume: np.ndarray, affine: np.ndarray,
                 labels: Mapping[int, str] | None = None) -> Path:
    """The predicted label volume as NIfTI (atomic write).

    With ``labels`` (value -> name, e.g. ``DatasetSpec.label_names()``) the ITK-SNAP and 3D
    Slicer label tables (``<stem>.itksnap.txt``, ``<stem>.ctbl``) are written beside it.
    """
    dtype = np.uint8 if volume.max(initial=0) < 256 and volume.min(initial=0) >= 0 else np.int16
    out = raw_io.write_nifti(Path(path), volume.astype(dtype), affine)
    if labels is not None:
        write_label_tables(out, labels)
    return out
