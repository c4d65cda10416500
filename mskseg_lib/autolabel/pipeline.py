"""AutoLabel: label whole volumes with no human prompt (detector boxes -> segmenter -> 3D NIfTI).

For one volume:

1. Reorient to canonical RAS (flips/permutations only), clip intensities to uint8 as
   ``prepare`` does, and take slices along the dataset's acquisition plane in display
   orientation; resized as ``prepare.resize`` says (``Slicing.resize_mode``), these are exactly
   the images the detector was trained on (the YOLO export).
2. **Prompts** per slice from one or more *prompt sources*: the detector (``detector_prompts``)
   or, for comparison in notebook 06, the manual mask (``mask_prompts``). Boxes are inclusive
   pixel boxes ``[x0, y0, x1, y1]`` of the slice (the convention of :mod:`mskseg_lib.data.boxes`).
3. **Segmentation**: every slice that has at least one box is encoded once; all boxes of all
   sources are decoded from that one embedding in one call. Each source's logits become a label
   map at the slice's original size (:func:`mskseg_lib.evaluation.masks.logits_to_label_map`:
   instances merged, overlaps to the smaller structure).
4. **Post-processing** per label (:mod:`mskseg_lib.autolabel.postprocess`), optional.
5. Back to the source's voxel order; written with the source's affine and matrix size.

``autolabel`` runs this over a list of volumes: a NIfTI ``<name>.nii.gz`` and a
``<name>.detections.json`` per volume (written last, so its presence with the same fingerprint
means the volume is done and a rerun skips it), review overlays of every Nth slice, and a run
report. A volume that cannot be read is reported and skipped. Under ``torchrun`` each rank
takes every ``WORLD_SIZE``-th volume (:mod:`mskseg_lib.distributed`); rank 0 writes the merged
report. :func:`mskseg_lib.autolabel.run.label_volumes` puts this together for a user: it picks the
segmenter, loads the detector and pins each rank to its device.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform
from tqdm.auto import tqdm

from mskseg_lib import atomic
from mskseg_lib import distributed as dist
from mskseg_lib.autolabel.inputs import VolumeInput, read_volume
from mskseg_lib.autolabel.postprocess import PostprocessSettings, label_kernels, postprocess_volume
from mskseg_lib.data import raw_io
from mskseg_lib.data.bad_inputs import STAGE_SKIPPED_COLUMNS
from mskseg_lib.data.boxes import slice_boxes
from mskseg_lib.data.catalog import DatasetSpec
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.label_tables import write_label_tables
from mskseg_lib.data.preprocess import (
    STUDY_CLIP_PERCENTILES,
    SliceGeometry,
    clip_to_uint8,
    display_slice,
    from_display,
    mask_box_to_model,
    resize_slice,
    unscale_box,
)
from mskseg_lib.data.volume import RAS_ORNT, Volume, to_canonical
from mskseg_lib.evaluation.embedding_cache import EmbeddingCache, encode_through_store
from mskseg_lib.evaluation.masks import logits_to_label_map
from mskseg_lib.models.interface import Prompts, Segmenter
from mskseg_lib.provenance import fingerprint as provenance_fingerprint

log = logging.getLogger(__name__)

# bumped when a change to this pipeline or to post-processing changes its outputs: part of every
# volume's fingerprint, so finished volumes are relabelled rather than reused
PIPELINE_VERSION = 2
BOX_CONVENTION = ("inclusive pixel boxes [x0, y0, x1, y1] (x = column, y = row) of the slice in display "
                  "orientation (canonical RAS slice rotated by to_display), as drawn on the overlays")


# ----------------------------------------------------------------------------------------------
# prompts
# ----------------------------------------------------------------------------------------------
@dataclass
class SliceBoxes:
    """The box prompts of one slice: inclusive pixel boxes of the original-size display slice."""

    boxes_px: np.ndarray  # (N, 4) float [x0, y0, x1, y1], x = column, y = row
    labels: np.ndarray  # (N,) label values (YOLO class + 1)
    scores: np.ndarray  # (N,) detector confidence; 1 for manual boxes

    @staticmethod
    def empty() -> "SliceBoxes":
        return SliceBoxes(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.labels)


class PromptSource(Protocol):
    """Boxes for a batch of slices: ``(display slices, canonical slice indices) -> boxes``."""

    name: str

    def __call__(self, images: Sequence[np.ndarray], indices: Sequence[int]) -> list[SliceBoxes]: ...


class Detector(Protocol):
    """What the pipeline needs of a detector (see :mod:`mskseg_lib.autolabel.detector`)."""

    name: str

    def detect(self, images: np.ndarray) -> list[Any]: ...  # objects with boxes_xyxy, class_ids, scores


@dataclass
class detector_prompts:  # noqa: N801 - used like a function returning a prompt source
    """Prompt source running ``detector`` on each slice resized as in the YOLO export.

    Detector boxes are continuous pixel edges of the detector's input; they are mapped back to
    the original slice (``unscale_box``: per axis under ``stretch``) and made inclusive
    (right/bottom edge - 1), the inverse of how the export wrote its labels. ``resize_mode``
    must be the export's (``prepare.resize``).
    """

    detector: Detector
    image_size_px: int
    n_labels: int
    batch_size: int = 16
    name: str = "detector"
    resize_mode: str = "stretch"

    def __call__(self, images: Sequence[np.ndarray], indices: Sequence[int]) -> list[SliceBoxes]:
        out: list[SliceBoxes] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch = np.stack([resize_slice(im, self.image_size_px, resize_mode=self.resize_mode) for im in chunk])
            for im, det in zip(chunk, self.detector.detect(batch)):
                out.append(self._to_slice(im.shape, det))
        return out

    def _to_slice(self, shape: tuple[int, int], det: Any) -> SliceBoxes:
        boxes = np.asarray(det.boxes_xyxy, np.float64).reshape(-1, 4)
        classes = np.asarray(det.class_ids, np.int64).reshape(-1)
        scores = np.asarray(det.scores, np.float32).reshape(-1)
        keep = (classes >= 0) & (classes < self.n_labels)  # a class the dataset does not have: dropped
        if not len(boxes) or not keep.any():
            return SliceBoxes.empty()
        boxes, classes, scores = boxes[keep], classes[keep], scores[keep]
        geom = SliceGeometry(shape[0], shape[1], self.image_size_px, self.resize_mode)
        orig = unscale_box(boxes, geom)
        orig[:, 2:] -= 1.0
        orig[:, [0, 2]] = np.clip(orig[:, [0, 2]], 0, shape[1] - 1)
        orig[:, [1, 3]] = np.clip(orig[:, [1, 3]], 0, shape[0] - 1)
        orig[:, 2] = np.maximum(orig[:, 2], orig[:, 0])
        orig[:, 3] = np.maximum(orig[:, 3], orig[:, 1])
        return SliceBoxes(orig.astype(np.float32), classes + 1, scores)


@dataclass
class mask_prompts:  # noqa: N801
    """Prompt source from a manual label volume (canonical, same grid): the ground-truth boxes.

    One box per label, and one per connected piece for labels the catalog marks multi-instance,
    as in the zero-shot evaluation (``zero_shot.instance_prompts``).
    """

    labels_canonical: np.ndarray
    slice_axis: int
    spec: DatasetSpec
    instance_prompts: bool = True
    name: str = "gt_box"

    def __call__(self, images: Sequence[np.ndarray], indices: Sequence[int]) -> list[SliceBoxes]:
        multi = {lab.value for lab in self.spec.labels if lab.multi_instance}
        out = []
        for k in indices:
            boxes, inst, _ = slice_boxes(display_slice(self.labels_canonical, self.slice_axis, k))
            rows, values = [], []
            for v in sorted(boxes):
                pieces = inst[v] if self.instance_prompts and v in multi else [boxes[v]]
                rows.extend(pieces)
                values.extend([v] * len(pieces))
            if not rows:
                out.append(SliceBoxes.empty())
            else:
                out.append(SliceBoxes(np.asarray(rows, np.float32), np.asarray(values, np.int64),
                                      np.ones(len(rows), np.float32)))
        return out


# ----------------------------------------------------------------------------------------------
# one volume
# ----------------------------------------------------------------------------------------------
@dataclass
class VolumeLabels:
    """The raw (not post-processed) prediction of one prompt source, canonical orientation."""

    source: str
    labels: np.ndarray  # canonical grid, uint8/int16
    boxes: dict[int, SliceBoxes]  # canonical slice index -> its prompts (slices with boxes only)


@dataclass
class Slicing:
    """A volume prepared for slicing: canonical uint8 data, slice axis, how to go back."""

    canonical: Volume
    image_u8: np.ndarray
    slice_axis: int
    source_affine: np.ndarray
    source_shape: tuple[int, ...]
    resize_mode: str = "stretch"  # how slices reach the model (``prepare.resize``)

    @property
    def n_slices(self) -> int:
        return int(self.image_u8.shape[self.slice_axis])

    def display_slice(self, k: int) -> np.ndarray:
        return display_slice(self.image_u8, self.slice_axis, k)

    def to_source(self, canonical_labels: np.ndarray) -> np.ndarray:
        """Canonical label array back to the source's voxel order (the inverse of to_canonical)."""
        transform = ornt_transform(RAS_ORNT, io_orientation(self.source_affine))
        out = np.ascontiguousarray(apply_orientation(canonical_labels, transform))
        if out.shape != self.source_shape[:3]:
            raise AssertionError(f"reorientation gave {out.shape}, source is {self.source_shape[:3]}")
        return out

    def source_slice(self, k: int) -> tuple[int, int]:
        """(source axis, source index) of canonical slice ``k``."""
        ornt = io_orientation(self.source_affine)
        axis = int(np.flatnonzero(ornt[:, 0] == self.slice_axis)[0])
        flipped = ornt[axis, 1] < 0
        return axis, (self.n_slices - 1 - k) if flipped else k


def slicing(volume: Volume, spec: DatasetSpec, clip_percentiles: tuple[float, float] = STUDY_CLIP_PERCENTILES,
            resize_mode: str = "stretch") -> Slicing:
    """Canonical RAS data clipped to uint8 like ``prepare``, sliced along the dataset's plane;
    ``resize_mode`` (``prepare.resize``) is how its slices are resized for the segmenter."""
    canonical = to_canonical(volume)
    return Slicing(canonical, clip_to_uint8(canonical.data, clip_percentiles), spec.slice_axis_canonical,
                   np.asarray(volume.affine, np.float64), tuple(volume.data.shape), resize_mode)


def segment_volume(sl: Slicing, segmenter: Segmenter, sources: Sequence[PromptSource], *,
                   encode_batch_size: int = 1, progress: bool = False,
                   desc: str = "", cache: EmbeddingCache | None = None
                   ) -> tuple[dict[str, VolumeLabels], dict[str, float]]:
    """Steps 2-3 for every source: ``({source: VolumeLabels}, timings)``.

    A slice is encoded only if some source gives it a box, and then once for all sources; with
    the run's embedding store (``cache``) a slice another stage encoded with this model is read.
    """
    t = {"detect_s": 0.0, "encode_s": 0.0, "decode_s": 0.0}
    n, size = sl.n_slices, segmenter.input_size_px
    displays = [sl.display_slice(k) for k in range(n)]
    t0 = time.perf_counter()
    per_source = {src.name: src(displays, list(range(n))) for src in sources}
    t["detect_s"] = time.perf_counter() - t0
    dtype = np.uint8
    out = {name: VolumeLabels(name, np.zeros(sl.image_u8.shape, dtype), {}) for name in per_source}
    todo = [k for k in range(n) if any(len(per_source[s][k]) for s in per_source)]
    moved = {name: np.moveaxis(v.labels, sl.slice_axis, 0) for name, v in out.items()}
    step = max(1, encode_batch_size)
    bar = tqdm(total=len(todo), desc=desc or "slices", unit="slice", disable=not progress, leave=False)
    for start in range(0, len(todo), step):
        ks = todo[start:start + step]
        geoms = [SliceGeometry(*displays[k].shape, size, sl.resize_mode) for k in ks]
        t0 = time.perf_counter()
        embs, _ = encode_through_store(segmenter, np.stack([resize_slice(displays[k], size, resize_mode=sl.resize_mode)
                                                            for k in ks]), [g.resized_shape for g in geoms], step, cache)
        t["encode_s"] += time.perf_counter() - t0
        for k, geom, emb in zip(ks, geoms, embs):
            parts = [(name, per_source[name][k]) for name in per_source if len(per_source[name][k])]
            boxes = np.concatenate([mask_box_to_model(b.boxes_px, geom) for _, b in parts]).astype(np.float32)
            t0 = time.perf_counter()
            logits = segmenter.decode(emb, Prompts(boxes=boxes))  # inference mode inside
            t["decode_s"] += time.perf_counter() - t0
            i = 0
            for name, b in parts:
                part = logits[i:i + len(b)]
                i += len(b)
                label_map = logits_to_label_map(part, [int(v) for v in b.labels], geom)
                moved[name][k] = from_display(label_map.astype(dtype))
                out[name].boxes[k] = b
        bar.update(len(ks))
    bar.close()
    t["encoded_slices"] = float(len(todo))
    return out, t


# ----------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------
def _palette(n: int) -> np.ndarray:
    """n distinct BGR colours (tab10-like, repeated)."""
    base = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                     [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]], np.uint8)
    rgb = base[np.arange(max(n, 1)) % len(base)]
    return rgb[:, ::-1]


def overlay_image(image: np.ndarray, labels: np.ndarray, boxes: SliceBoxes | None, n_labels: int,
                  alpha: float = 0.45, upscale: int = 2) -> np.ndarray:
    """BGR review image: the slice, labels blended in colour, boxes as rectangles."""
    colours = _palette(n_labels + 1)
    bgr = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_GRAY2BGR).astype(np.float32)
    for v in np.unique(labels):
        if v == 0:
            continue
        m = labels == v
        bgr[m] = (1 - alpha) * bgr[m] + alpha * colours[(int(v) - 1) % len(colours)]
    out = cv2.resize(bgr.astype(np.uint8), None, fx=upscale, fy=upscale, interpolation=cv2.INTER_NEAREST)
    if boxes is not None:
        for (x0, y0, x1, y1), v in zip(boxes.boxes_px, boxes.labels):
            c = tuple(int(x) for x in colours[(int(v) - 1) % len(colours)])
            top_left = (int(x0 * upscale), int(y0 * upscale))
            bottom_right = (int((x1 + 1) * upscale) - 1, int((y1 + 1) * upscale) - 1)
            cv2.rectangle(out, top_left, bottom_right, c, 1)
    return out


def write_overlays(sl: Slicing, labels_canonical: np.ndarray, boxes: Mapping[int, SliceBoxes], every_n: int,
                   folder: Path, n_labels: int) -> list[Path]:
    """Overlay PNGs of slices 0, N, 2N, ... (canonical order), each written atomically."""
    if every_n <= 0:
        return []
    paths = []
    for k in range(0, sl.n_slices, every_n):
        img = overlay_image(sl.display_slice(k), display_slice(labels_canonical, sl.slice_axis, k),
                            boxes.get(k), n_labels)
        path = Path(folder) / f"slice_{k:04d}.png"
        with atomic.atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), img):
                raise OSError(f"{path}: could not write the overlay image")
        paths.append(path)
    return paths


def detections_record(sl: Slicing, spec: DatasetSpec, boxes: Mapping[int, SliceBoxes]) -> list[dict[str, Any]]:
    """JSON-ready per-slice detections: slice in canonical and source terms, boxes, labels, scores."""
    names = spec.label_names()
    rows = []
    for k in sorted(boxes):
        b = boxes[k]
        axis, index = sl.source_slice(k)
        rows.append({"slice_index_canonical": int(k), "source_axis": axis, "source_index": int(index),
                     "boxes_xyxy_px": np.round(b.boxes_px, 2).tolist(), "label_values": [int(v) for v in b.labels],
                     "label_names": [names.get(int(v), str(v)) for v in b.labels],
                     "scores": np.round(b.scores, 4).tolist()})
    return rows


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {"labels": out_dir / f"{name}.nii.gz", "detections": out_dir / f"{name}.detections.json",
            "overlays": out_dir / "overlays" / name}


def file_key(path: Path) -> str:
    """Size and modification time of a file, or of every file in a series folder."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, "file not found")
    files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for q in files:
        st = q.stat()
        h.update(f"{q.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def fingerprint(item: VolumeInput, settings: Mapping[str, Any]) -> str:
    """Identity of one volume's result: its input files and every setting that shapes it."""
    payload = {"input": file_key(item.path), "settings": settings}
    return provenance_fingerprint(payload)


def is_done(item: VolumeInput, out_dir: Path, fp: str) -> bool:
    paths = output_paths(out_dir, item.name)
    if not (paths["labels"].exists() and paths["detections"].exists()):
        return False
    try:
        return json.loads(paths["detections"].read_text()).get("fingerprint") == fp
    except (OSError, json.JSONDecodeError):
        return False


@dataclass(frozen=True)
class AutolabelSettings:
    """Everything the pipeline needs besides the models; the defaults are the study's.

    ``detector_image_size_px`` is the YOLO export's image size (the detector sees slices resized
    to it); ``clip_percentiles`` and ``resize_mode`` must be what ``prepare`` used for the
    dataset (``prepare.clip_percentiles``, ``prepare.resize``), so the detector and the segmenter
    see slices as they were trained on. ``overlay_every_n``: a review PNG of every Nth slice
    (0 = none); ``encode_batch_size``: slices per image-encoder call.
    """

    spec: DatasetSpec
    detector_image_size_px: int = 1024
    clip_percentiles: tuple[float, float] = STUDY_CLIP_PERCENTILES
    postprocess: PostprocessSettings = PostprocessSettings()
    overlay_every_n: int = 5
    encode_batch_size: int = 1
    resize_mode: str = "stretch"

    def __post_init__(self) -> None:
        if self.postprocess.enabled:  # a bad kernel setting fails here, not once per volume
            label_kernels(self.spec, self.postprocess)

    def as_record(self) -> dict[str, Any]:
        return {"pipeline_version": PIPELINE_VERSION, "dataset": self.spec.name,
                "detector_image_size_px": self.detector_image_size_px,
                "clip_percentiles": list(self.clip_percentiles), "resize_mode": self.resize_mode,
                "postprocess": self.postprocess.as_record(),
                "overlay_every_n": self.overlay_every_n}


def label_one(item: VolumeInput, out_dir: Path, segmenter: Segmenter, source: PromptSource,
              settings: AutolabelSettings, model_ids: Mapping[str, Any], *, progress: bool = False,
              cache: EmbeddingCache | None = None) -> dict[str, Any]:
    """Label one volume and write its outputs; returns its report row. With an embedding store
    (``cache``), slices another stage encoded with this model are read, not encoded."""
    t0 = time.perf_counter()
    spec = settings.spec
    if getattr(source, "resize_mode", settings.resize_mode) != settings.resize_mode:
        raise ValueError(f"prompt source {source.name!r} resizes slices by {source.resize_mode!r} but prepare "
                         f"(and the detector's export) used {settings.resize_mode!r}")
    volume = read_volume(item)
    sl = slicing(volume, spec, settings.clip_percentiles, settings.resize_mode)
    raw, timings = segment_volume(sl, segmenter, [source], encode_batch_size=settings.encode_batch_size,
                                  progress=progress, desc=item.name, cache=cache)
    pred = raw[source.name]
    t1 = time.perf_counter()
    labels = postprocess_volume(pred.labels, sl.slice_axis, spec, settings.postprocess)
    timings["postprocess_s"] = time.perf_counter() - t1
    paths = output_paths(out_dir, item.name)
    shutil.rmtree(paths["overlays"], ignore_errors=True)  # no stale PNGs from an earlier setting
    write_overlays(sl, labels, pred.boxes, settings.overlay_every_n, paths["overlays"], len(spec.labels))
    raw_io.write_nifti(paths["labels"], sl.to_source(labels), sl.source_affine)
    write_label_tables(paths["labels"], spec.label_names())
    timings["total_s"] = time.perf_counter() - t0
    fp = fingerprint(item, {**settings.as_record(), **model_ids})
    atomic.write_json(paths["detections"], {
        "fingerprint": fp, "volume": item.name, "input": str(item.path), "dataset": spec.name,
        "source_shape": list(sl.source_shape), "source_affine": sl.source_affine.tolist(),
        "label_names": {str(v): n for v, n in spec.label_names().items()}, "box_convention": BOX_CONVENTION,
        "models": dict(model_ids), "settings": settings.as_record(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "slices": detections_record(sl, spec, pred.boxes)})
    voxels = {str(int(v)): int(c) for v, c in zip(*np.unique(labels, return_counts=True)) if v}
    return {"volume": item.name, "input": str(item.path), "status": "labelled", "message": "",
            "n_slices": sl.n_slices, "n_boxes": int(sum(len(b) for b in pred.boxes.values())),
            "voxels_per_label": json.dumps(voxels), **{k: round(v, 3) for k, v in timings.items()}}


# ----------------------------------------------------------------------------------------------
# many volumes, many ranks
# ----------------------------------------------------------------------------------------------
#: the slowest rank may label for hours: torch's default 30 min would time the others out
GROUP_TIMEOUT = datetime.timedelta(days=2)


def join_ranks(device: torch.device | None = None) -> dist.DistContext:
    """This process's place among torchrun's ranks (a single process outside torchrun).

    The group is gloo (CPU side, so it works the same with GPUs) with a two-day timeout; a CUDA
    ``device`` becomes ``cuda:LOCAL_RANK``. Join early: a broken rendezvous shows at once, not
    after hours of labelling.

    Parameters
    ----------
    device : where this process labels (None: CPU).

    Returns
    -------
    DistContext with rank, world size and the pinned device.
    """
    return dist.start(device or torch.device("cpu"), backend="gloo", timeout=GROUP_TIMEOUT)


@dataclass
class AutolabelReport:
    """What :func:`autolabel` did: one row per volume (rank 0: every rank's) and this process's rank."""

    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    rank: int = 0
    dataset: str = ""  # the settings' dataset, written in the skipped list

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def skipped(self) -> pd.DataFrame:
        """The failed volumes as a skipped list (``stage, dataset, subject_id, path, problem``;
        ``subject_id`` is the volume's name), as written to ``skipped.csv``."""
        return skipped_table(self.rows, self.dataset)


def skipped_table(rows: Sequence[Mapping[str, Any]], dataset: str = "") -> pd.DataFrame:
    """Report rows that failed -> the stages' skipped list (:mod:`mskseg_lib.data.bad_inputs`)."""
    return pd.DataFrame([{"stage": "autolabel", "dataset": dataset, "subject_id": r["volume"],
                          "path": r.get("path") or r["input"], "problem": r.get("problem") or r["message"]}
                         for r in rows if r["status"] == "failed"], columns=STAGE_SKIPPED_COLUMNS)


def _label_or_report(item: VolumeInput, out_dir: Path, segmenter: Segmenter, source: PromptSource,
                     settings: AutolabelSettings, model_ids: Mapping[str, Any], progress: bool,
                     on_error: Callable[[VolumeInput, Exception], None] | None,
                     cache: EmbeddingCache | None = None) -> dict[str, Any]:
    """One volume's report row: skipped when done, labelled, or failed with the reason.

    A ``DataError`` gives the file and problem (``path``, ``problem``); any other error its type,
    message and traceback. Nothing is written for a failed volume, so a rerun tries it again.
    """
    try:
        if is_done(item, out_dir, fingerprint(item, {**settings.as_record(), **model_ids})):
            return {"volume": item.name, "input": str(item.path), "status": "skipped (done)", "message": ""}
        return label_one(item, out_dir, segmenter, source, settings, model_ids, progress=progress, cache=cache)
    except Exception as exc:  # noqa: BLE001 - one bad volume must not stop the batch
        message = str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"
        row = {"volume": item.name, "input": str(item.path), "status": "failed", "message": message}
        if isinstance(exc, DataError):
            row.update(path=str(exc.path), problem=str(exc.problem))
        else:
            row["traceback"] = traceback.format_exc(limit=8)
        if on_error is not None:
            on_error(item, exc)
        log.warning("autolabel: skipped %s: %s", item.name, message)
        return row


def _merge_reports(out_dir: Path, ctx: dist.DistContext, settings: AutolabelSettings,
                   model_ids: Mapping[str, Any], run_record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Rank 0: every rank's rows into ``autolabel_report.json`` and ``autolabel_report.csv``."""
    merged, seconds = [], {}
    for r in range(ctx.world_size):
        part = json.loads((out_dir / f".autolabel_rank{r}.json").read_text())
        merged.extend(part["rows"])
        seconds[str(r)] = part["seconds"]
    merged.sort(key=lambda x: x["volume"])
    atomic.save_csv(pd.DataFrame(merged), out_dir / "autolabel_report.csv", index=False)
    atomic.save_csv(skipped_table(merged, settings.spec.name), out_dir / "skipped.csv")
    atomic.write_json(out_dir / "autolabel_report.json", {
        **dict(run_record or {}), "world_size": ctx.world_size, "seconds_per_rank": seconds,
        "settings": settings.as_record(), "models": dict(model_ids), "volumes": merged,
        "n_labelled": sum(r["status"] == "labelled" for r in merged),
        "n_skipped_done": sum(r["status"].startswith("skipped") for r in merged),
        "n_failed": sum(r["status"] == "failed" for r in merged)})
    return merged


def autolabel(items: Sequence[VolumeInput], out_dir: Path, segmenter: Segmenter, source: PromptSource,
              settings: AutolabelSettings, *, model_ids: Mapping[str, Any] | None = None,
              ctx: dist.DistContext | None = None, progress: bool = True, run_record: Mapping[str, Any] | None = None,
              on_error: Callable[[VolumeInput, Exception], None] | None = None,
              cache: EmbeddingCache | None = None) -> AutolabelReport:
    """Label this rank's share of ``items`` into ``out_dir``; skip volumes already done.

    A volume that fails (``DataError``: unreadable, truncated, non-finite; or any other error,
    recorded with its type and traceback) is reported as ``failed`` and the run carries on.
    Each rank writes ``.autolabel_rank<r>.json`` even when interrupted by an error; rank 0 then
    waits for all and writes ``autolabel_report.json`` and ``autolabel_report.csv``.

    Parameters
    ----------
    items : the volumes (:func:`mskseg_lib.autolabel.inputs.find_volumes`), in the same order on
        every rank.
    out_dir : where each volume's ``<name>.nii.gz``, ``<name>.detections.json`` and overlays go.
    segmenter : a loaded zoo (or finetuned) segmenter.
    source : the prompt source, usually :class:`detector_prompts`.
    settings : the pipeline's settings for the dataset.
    model_ids : what identifies the models (checkpoint digests, detector weights): part of each
        volume's fingerprint, so other models relabel.
    ctx : this process's rank (:func:`join_ranks`); None joins here and leaves at the end.
    progress : a progress bar per rank.
    run_record : provenance merged into ``autolabel_report.json`` (command, versions, ...).
    on_error : called with (volume, exception) for each failed volume.
    cache : an embedding store (e.g. the run's, when the volumes are ones the study already
        encoded); None: every slice is encoded.

    Returns
    -------
    AutolabelReport: this rank's rows, or on rank 0 every rank's rows.
    """
    joined_here = ctx is None
    ctx = ctx or join_ranks()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_ids = dict(model_ids or {})
    report = AutolabelReport(out_dir, rank=ctx.rank, dataset=settings.spec.name)
    mine = dist.share(items, ctx)
    t0 = time.perf_counter()
    bar = tqdm(mine, desc=f"autolabel rank {ctx.rank}" if ctx.distributed else "autolabel",
               unit="volume", disable=not progress)
    try:
        for item in bar:
            row = _label_or_report(item, out_dir, segmenter, source, settings, model_ids,
                                   progress and len(mine) == 1, on_error, cache)
            row["rank"] = ctx.rank
            report.rows.append(row)
    finally:  # the other ranks wait for this file and this barrier, whatever happened here
        atomic.write_json(out_dir / f".autolabel_rank{ctx.rank}.json",
                          {"rank": ctx.rank, "world_size": ctx.world_size, "rows": report.rows,
                           "seconds": round(time.perf_counter() - t0, 3)})
        dist.barrier(ctx)
    if ctx.is_main:
        report.rows = _merge_reports(out_dir, ctx, settings, model_ids, run_record)
    dist.barrier(ctx)
    if joined_here:
        dist.stop(ctx)
    return report
