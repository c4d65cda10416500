"""``mskseg video3d``: segment structures through a whole volume from a few prompts, in use
(no manual mask): a user's click list, or a detector's best box per structure.

* **Clicks** are voxel indices of the *input* file (``i, j, k`` as a viewer such as ITK-SNAP or
  3D Slicer shows them, zero-based), each with the label it belongs to and whether it is a
  positive (default) or negative click; or a 3D Slicer markup file (``.mrk.json``), whose
  points (LPS or RAS mm) are mapped to voxels through the input's affine. They are mapped onto the display slices the models see
  (``source_voxel_to_display``); clicks of one label on one slice form one prompt.
* **Detector seeds**: for each label, the detection with the highest score in the volume gives
  the prompted slice and its box.

SAM2 models propagate with the video predictor (clicks as points, detector seeds as boxes);
image-only models carry the prompted slice's mask slice to slice (``point_carry`` for clicks,
``box_carry`` for boxes). The label volume is written on the input's grid with its affine, next
to a JSON record of the prompts, the model, the settings, the versions and the timings.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from nibabel.orientations import io_orientation

from mskseg_lib import atomic
from mskseg_lib.autolabel.detector import DetectorSettings, load_detector
from mskseg_lib.autolabel.inputs import find_volumes, read_volume
from mskseg_lib.autolabel.pipeline import SliceBoxes, Slicing, detector_prompts, slicing
from mskseg_lib.data.catalog import DatasetSpec, get_dataset
from mskseg_lib.data.errors import DataError
from mskseg_lib.errors import UserError
from mskseg_lib.models.interface import pick_device
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.video3d import study
from mskseg_lib.video3d.predictor import choose_offload
from mskseg_lib.video3d.prompts import ObjectPrompt
from mskseg_lib.video3d.propagate import CarrySettings, SchemeRun, SliceEncoder, run_carry, run_video
from mskseg_lib.video3d.study import Video3dSettings, write_display_labels


class PromptSourceError(UserError, ValueError):
    """Neither or both of a click list and detector weights were given."""


def source_voxel_to_display(sl: Slicing, ijk: Sequence[int]) -> tuple[int, float, float]:
    """(slice index, x, y) on the display slices of a voxel index of the source array.

    Source -> canonical RAS index (the axis permutation and flips of ``to_canonical``), then the
    in-plane (row, col) of the canonical slice -> display (``to_display`` is ``np.rot90``: a
    pixel at (r, c) of an (R, C) slice shows at row C-1-c, column r).
    """
    shape = sl.source_shape[:3]
    ijk = [int(round(float(v))) for v in ijk]
    if len(ijk) != 3 or any(not 0 <= v < n for v, n in zip(ijk, shape)):
        raise ValueError(f"voxel {ijk} is outside the volume of shape {tuple(shape)}")
    ornt = io_orientation(sl.source_affine)
    canonical = [0, 0, 0]
    for axis, (target, flip) in enumerate(ornt):
        canonical[int(target)] = ijk[axis] if flip > 0 else shape[axis] - 1 - ijk[axis]
    k = canonical[sl.slice_axis]
    r, c = [canonical[a] for a in range(3) if a != sl.slice_axis]
    n_cols = [sl.image_u8.shape[a] for a in range(3) if a != sl.slice_axis][1]
    return int(k), float(r), float(n_cols - 1 - c)


def clicks_to_prompts(sl: Slicing, clicks: Sequence[Mapping[str, Any]], spec: DatasetSpec) -> list[ObjectPrompt]:
    """A click list (dicts with ``label``, ``i``, ``j``, ``k``, optional ``positive``) -> prompts."""
    known = spec.label_names()
    grouped: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    for n, c in enumerate(clicks):
        if not isinstance(c, Mapping):
            raise ValueError(f"click {n}: expected an object {{label, i, j, k[, positive]}}, got {c!r}")
        missing = {"label", "i", "j", "k"} - set(c)
        if missing:
            raise ValueError(f"click {n}: missing {', '.join(sorted(missing))} (need label, i, j, k)")
        try:
            label = int(c["label"])
        except (TypeError, ValueError):
            raise ValueError(f"click {n}: label {c['label']!r} is not an integer") from None
        if label not in known:
            raise ValueError(f"click {n}: label {label} is not a label of {spec.name} ({known})")
        try:
            k, x, y = source_voxel_to_display(sl, (c["i"], c["j"], c["k"]))
        except ValueError as exc:
            raise ValueError(f"click {n}: {exc}") from None
        grouped.setdefault((label, k), []).append((x, y, 1 if c.get("positive", True) else 0))
    out = []
    for (label, k), pts in sorted(grouped.items()):
        if not any(p[2] for p in pts):
            raise ValueError(f"label {label}, slice {k}: needs at least one positive click")
        arr = np.asarray(pts, np.float32)
        out.append(ObjectPrompt(label, k, arr[:, :2], arr[:, 2].astype(np.int32)))
    if len({p.label for p in out}) != len(out):
        raise ValueError("clicks of one label must all be on one slice (the prompted slice)")
    return out


def detector_seeds(boxes: Sequence[SliceBoxes]) -> list[ObjectPrompt]:
    """Per label, the highest-scoring detection of the volume: its slice and box."""
    best: dict[int, tuple[float, int, np.ndarray]] = {}
    for k, b in enumerate(boxes):
        for box, label, score in zip(b.boxes_px, b.labels, b.scores):
            if int(label) not in best or float(score) > best[int(label)][0]:
                best[int(label)] = (float(score), k, np.asarray(box, np.float32))
    return [ObjectPrompt(label, k, box=box) for label, (_, k, box) in sorted(best.items())]


def propagate(model: Any, sl: Slicing, seeds: Sequence[ObjectPrompt], carry: CarrySettings = CarrySettings(),
              offload_state_to_cpu: bool = False) -> tuple[SchemeRun, str]:
    """Video propagation for SAM2 models, carrying for image-only ones: (run, scheme used).

    Parameters
    ----------
    model : a ``VideoModel`` (``has_memory``: SAM2 with its video predictor).
    sl : the sliced volume.
    seeds : the prompts (all boxes or all points for carrying).
    carry : when carrying stops (image-only models).
    offload_state_to_cpu : keep SAM2's tracking state on the CPU.

    Returns
    -------
    (SchemeRun with (N, H, W) display-oriented labels, ``video``/``box_carry``/``point_carry``).
    """
    if not seeds:
        raise ValueError("no prompts: nothing to propagate")
    stack = np.stack([sl.display_slice(k) for k in range(sl.n_slices)])
    if model.has_memory:
        return run_video(model.predictor, stack, seeds, offload_state_to_cpu=offload_state_to_cpu,
                         autocast_bf16=model.segmenter.autocast_bf16), "video"
    kind = "box" if all(s.box is not None for s in seeds) else "point"
    if kind == "point" and any(s.box is not None for s in seeds):
        raise ValueError("image-only carrying needs all prompts as boxes or all as points")
    run = run_carry(SliceEncoder(model.segmenter, stack, sl.resize_mode), seeds, kind, **carry.as_record())
    return run, f"{kind}_carry"


def check_output_path(out_path: Path) -> Path:
    """The output must be a NIfTI file name (checked before any work is done)."""
    out_path = Path(out_path)
    if not out_path.name.endswith((".nii", ".nii.gz")):
        raise DataError(out_path, "the output must be a .nii or .nii.gz file")
    return out_path


def write_result(out_path: Path, sl: Slicing, run: SchemeRun, record: Mapping[str, Any],
                 labels: Mapping[int, str] | None = None) -> Path:
    """The label NIfTI on the source grid (with its ITK-SNAP and 3D Slicer label tables when
    ``labels`` maps value -> name), then its JSON record (``<name>.video3d.json``)."""
    out_path = check_output_path(out_path)
    write_display_labels(out_path, run.labels, sl, labels)
    stem = out_path.name[: -len(".nii.gz")] if out_path.name.endswith(".nii.gz") else out_path.stem
    atomic.write_json(out_path.with_name(f"{stem}.video3d.json"), {
        **record, "seconds": run.seconds, "encoded_slices": run.encoded_slices,
        "prompt_slices": {str(k): v for k, v in run.prompt_slices.items()},
        "voxels_per_label": {str(int(v)): int((run.labels == v).sum()) for v in np.unique(run.labels) if v},
        "written_utc_epoch_s": time.time()})
    return out_path


def read_clicks(path: Path, affine: np.ndarray | None = None, spec: DatasetSpec | None = None) -> list[dict]:
    """A JSON click list: ``[{"label": 1, "i": 40, "j": 120, "k": 80, "positive": true}, ...]``.

    A 3D Slicer markup file (``.mrk.json``, a JSON object with ``markups``) is read too when
    the input's ``affine`` (voxel -> RAS mm) and the dataset ``spec`` are given:
    :func:`slicer_markups_to_clicks`.
    """
    path = Path(path)
    try:
        clicks = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot read the click list: {exc}") from None
    if isinstance(clicks, Mapping) and "markups" in clicks and affine is not None and spec is not None:
        return slicer_markups_to_clicks(path, clicks, affine, spec)
    if not isinstance(clicks, list) or not clicks:
        raise DataError(path, "the click list must be a non-empty JSON list of {label, i, j, k[, positive]} "
                              "or a 3D Slicer markup file (.mrk.json)")
    return clicks


def _markup_label(candidates: Sequence[Any], names: Mapping[int, str]) -> int | None:
    """The first candidate that is a label value or a label name of the dataset."""
    by_name = {n.lower(): v for v, n in names.items()}
    for c in candidates:
        text = str(c if c is not None else "").strip()
        if text.lower() in by_name:
            return by_name[text.lower()]
        if text.lstrip("-").isdigit() and int(text) in names:
            return int(text)
    return None


def slicer_markups_to_clicks(path: Path, doc: Mapping[str, Any], affine: np.ndarray,
                             spec: DatasetSpec) -> list[dict]:
    """3D Slicer markup JSON -> the click list of :func:`read_clicks` (voxel indices of the input).

    Every control point of every markup is a click. Its ``position`` (mm, in the markup's
    ``coordinateSystem``: ``"LPS"``, Slicer's default and file convention, or ``"RAS"``) goes to
    RAS and through the inverse of the input's ``affine`` (voxel -> RAS mm) to the nearest
    voxel. Its label is the control point's ``label`` when that is a label name or value of the
    dataset (e.g. ``femur`` or ``1``), else the markup's ``name``; a point whose ``description``
    is ``negative`` is a negative click.

    Parameters
    ----------
    path : the markup file (named in errors).
    doc : its parsed JSON.
    affine : the input volume's 4x4 voxel -> RAS (mm) affine.
    spec : the dataset whose labels the points name.

    Returns
    -------
    list of dict
        ``{"label", "i", "j", "k", "positive"}`` per control point.
    """
    markups = doc.get("markups")
    if not isinstance(markups, list) or not markups:
        raise DataError(path, "a 3D Slicer markup file needs a non-empty 'markups' list")
    names = spec.label_names()
    ras_to_voxel = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    clicks = []
    for m, markup in enumerate(markups):
        if not isinstance(markup, Mapping):
            raise DataError(path, f"markups[{m}] is not an object")
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise DataError(path, f"markups[{m}]: coordinateSystem {system!r} is neither LPS nor RAS")
        for n, point in enumerate(markup.get("controlPoints") or []):
            try:
                position_mm = np.asarray(point["position"], dtype=np.float64).reshape(3)
            except (KeyError, TypeError, ValueError):
                raise DataError(path, f"markups[{m}].controlPoints[{n}]: no position [x, y, z]") from None
            ras_mm = position_mm * (np.array([-1.0, -1.0, 1.0]) if system == "LPS" else 1.0)
            ijk = ras_to_voxel @ np.append(ras_mm, 1.0)
            label = _markup_label([point.get("label"), markup.get("name")], names)
            if label is None:
                raise DataError(path, f"markups[{m}].controlPoints[{n}]: neither its label {point.get('label')!r} "
                                      f"nor the markup name {markup.get('name')!r} is a label of {spec.name} "
                                      f"({names})")
            clicks.append({"label": label, "i": int(np.rint(ijk[0])), "j": int(np.rint(ijk[1])),
                           "k": int(np.rint(ijk[2])),
                           "positive": str(point.get("description", "")).strip().lower() != "negative"})
    if not clicks:
        raise DataError(path, "the 3D Slicer markup file has no control points")
    return clicks


# ----------------------------------------------------------------------------------------------
# one file, as ``mskseg video3d`` runs it
# ----------------------------------------------------------------------------------------------
@dataclass
class SegmentedFile:
    """What :func:`segment_file` wrote: the label NIfTI, the scheme used and its run."""

    path: Path
    scheme: str
    run: SchemeRun


def _click_seeds(sl: Slicing, clicks_path: Path, spec: DatasetSpec) -> list[ObjectPrompt]:
    """Seeds from a JSON click list; a bad click names the file."""
    try:
        return clicks_to_prompts(sl, read_clicks(clicks_path, sl.source_affine, spec), spec)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(clicks_path, str(exc)) from None


def _detected_seeds(sl: Slicing, weights: Path, detector: DetectorSettings, device: torch.device,
                    spec: DatasetSpec, input_path: Path) -> list[ObjectPrompt]:
    """Seeds from the detector: each label's best-scoring box in the volume."""
    source = detector_prompts(load_detector(weights, detector, device), int(detector.image_size_px), len(spec.labels),
                              resize_mode=sl.resize_mode)
    seeds = detector_seeds(source([sl.display_slice(k) for k in range(sl.n_slices)], list(range(sl.n_slices))))
    if not seeds:
        raise DataError(input_path, "the detector found nothing in this volume: no prompt to propagate")
    return seeds


def _prompts_record(seeds: Sequence[ObjectPrompt]) -> list[dict[str, Any]]:
    return [{"label": s.label, "slice": s.frame, "points": None if s.points is None else s.points.tolist(),
             "point_labels": None if s.point_labels is None else s.point_labels.tolist(),
             "box": None if s.box is None else s.box.tolist()} for s in seeds]


def segment_file(input_path: Path, out_path: Path, dataset: str, model_key: str, *, clicks: Path | None = None,
                 detector_weights: Path | None = None, settings: Video3dSettings = Video3dSettings(),
                 detector: DetectorSettings = DetectorSettings(), models: ModelSettings | None = None,
                 run_record: Mapping[str, Any] | None = None) -> SegmentedFile:
    """Segment the structures of one volume from clicks or a detector and write a label NIfTI.

    SAM2 models propagate with the video predictor; image-only models carry the prompted slice's
    mask slice to slice. The labels are written on the input's grid with its affine, next to a
    JSON record (``<name>.video3d.json``: prompts, model, settings, versions, timings).

    Parameters
    ----------
    input_path : a NIfTI file or a DICOM series folder (one volume).
    out_path : the label NIfTI to write (``.nii`` or ``.nii.gz``).
    dataset : the dataset whose labels, plane and intensity clipping apply.
    model_key : zoo model (a SAM2 model tracks with its video predictor).
    clicks : a JSON click list (voxel indices of the input: :func:`read_clicks`) or a 3D Slicer
        markup file (``.mrk.json``, LPS or RAS: :func:`slicer_markups_to_clicks`); or
    detector_weights : a detector's ``best.pt``: each label is prompted with its best box.
    settings : carrying, offload and the dataset's clipping (``schemes`` and ``tissues`` unused).
    detector : the detector's image size and thresholds (with ``detector_weights``).
    models : where the zoo's weights are and how they run (default ``ModelSettings()``).
    run_record : provenance merged into the JSON record (e.g. profile and seed).

    Returns
    -------
    SegmentedFile with the path written, the scheme used (``video``, ``box_carry``,
    ``point_carry``) and the run (labels, seconds, slices encoded).
    """
    from mskseg_lib.provenance import collect_versions, git_info, utc_now_iso

    models = models or ModelSettings()
    if (clicks is None) == (detector_weights is None):
        raise PromptSourceError("give either a click list or detector weights (one of them)")
    started = utc_now_iso()
    out_path = check_output_path(Path(out_path))
    spec = get_dataset(dataset)
    items = find_volumes(input_path)
    if len(items) != 1:
        raise DataError(Path(input_path), f"expected one volume, found {len(items)}")
    sl = slicing(read_volume(items[0]), spec, settings.prepare.clip_percentiles_for(spec.name),
                 settings.prepare.resize_mode)
    device = pick_device(models.device)
    if clicks is not None:
        seeds, prompt_source = _click_seeds(sl, Path(clicks), spec), {"clicks": str(clicks)}
    else:
        seeds = _detected_seeds(sl, Path(detector_weights), detector, device, spec, Path(input_path))
        prompt_source = {"detector": str(detector_weights)}
    model = study.load_video_model(model_key, models, device)
    offload = choose_offload(settings.offload_state, device, sl.n_slices, len(seeds), int(model.segmenter.input_size_px))
    run, scheme = propagate(model, sl, seeds, settings.carry, offload)
    record = {"command": "video3d", **dict(run_record or {}), "input": str(input_path), "dataset": spec.name,
              "model": model_key, "model_identity": model.identity, "scheme": scheme, **prompt_source,
              "prompts": _prompts_record(seeds), "carry": settings.carry.as_record(), "offload_state_to_cpu": offload,
              "device": str(device), "started_utc": started, "git": git_info(), "versions": collect_versions()}
    return SegmentedFile(write_result(out_path, sl, run, record, spec.label_names()), scheme, run)
