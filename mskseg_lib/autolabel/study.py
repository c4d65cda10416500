"""Notebook 06: how much Dice is lost when a detector, not a person, draws the box prompts.

For the test subjects of the chosen datasets and every available segmenter (the zero-shot zoo
plus the best finetuned model per dataset with and without box-shift augmentation, chosen on
validation Dice), each whole volume is segmented twice from the same embeddings: prompted with
the ground-truth boxes of the manual mask (``gt_box``) and with the dataset's detector
(``detector``). Both are scored against the manual mask with and without post-processing:

* slice Dice: mean over the labels present on each manually labelled slice (a label the
  prediction misses scores 0; labels absent from the manual slice are not scored, as MONAI's
  ``DiceMetric(ignore_empty=True)`` in the study's evaluation code leaves them out);
* subject Dice (``dice``, the study's definition, tables S69-S71): the mean of the subject's
  slice Dice values ("Dice ... on a slice-by-slice basis ... aggregated to determine the mean
  Dice score at the subject level"); the dataset level is the mean over subjects;
* ``dice_3d`` (an extra column, not the study's): 3D Dice per label over the whole volume, so
  detector boxes on slices without any manual label count as false positives, averaged over
  the subject's labels.

Each (model, dataset, subject) is stored as it finishes under ``<root>/scores`` (the profile's
root is ``<runs_dir>/autolabel/<tag>``) with a fingerprint of everything that shapes it, so a rerun
picks up where it stopped and a changed setting recomputes.
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mskseg_lib import atomic
from mskseg_lib.autolabel.detector import DetectorSettings
from mskseg_lib.autolabel.pipeline import (
    PIPELINE_VERSION,
    PromptSource,
    SliceBoxes,
    Slicing,
    detector_prompts,
    file_key,
    mask_prompts,
    segment_volume,
    slicing,
)
from mskseg_lib.autolabel.postprocess import PostprocessSettings, postprocess_volume
from mskseg_lib.data import raw_io
from mskseg_lib.data.bad_inputs import SKIPPED, SkippedInputs, check_on_bad_input, empty_skipped
from mskseg_lib.data.catalog import DatasetSpec, get_dataset
from mskseg_lib.data.errors import DataError
from mskseg_lib.data.prepare import PrepareSettings
from mskseg_lib.data.preprocess import display_slice
from mskseg_lib.errors import UserError
from mskseg_lib.evaluation.embedding_cache import EmbeddingCache
from mskseg_lib.evaluation.metrics import label_metrics
from mskseg_lib.models.interface import Segmenter
from mskseg_lib.provenance import fingerprint

PROMPTS = ("gt_box", "detector")
#: the study's five AutoLabel datasets, in figure 6b's order (top-down)
STUDY_DATASETS = ("Thigh_2D_T1ax_Clinical_Anatomical_50", "Shoulder_3D_CUBE_Research_Anatomical_28",
                  "Spine_2D_T1sag_Clinical_Anatomical_23", "Knee_3D_DESS_Research_Anatomical_86",
                  "Spine_2D_T1ax_Clinical_Anatomical_59")


@dataclass
class StudyModel:
    """A segmenter of the comparison: its row label, how to load it, where it applies."""

    key: str  # file-safe id: "lite_medsam", "finetuned-<experiment id>"
    label: str  # shown in tables and figures
    load: Callable[[], Segmenter]
    datasets: tuple[str, ...] | None = None  # None: every dataset (zero-shot)
    identity: dict = field(default_factory=dict)  # checkpoint digest etc., part of the fingerprint


class SelectionError(UserError, ValueError):
    """A dataset asked for is not among the prepared ones."""


@dataclass(frozen=True)
class StudySettings:
    """How notebook 06 segments and scores each subject; the defaults are the study's.

    ``detector`` gives the detector's input size (the YOLO export's) and its inference
    thresholds; ``prepare`` must be how the data were prepared (intensity clipping per dataset,
    resize mode), so the slices match the export and the prepared masks. ``instance_prompts``:
    one ground-truth box per connected piece of multi-instance labels, as the zero-shot
    evaluation prompts them. ``encode_batch_size``: slices per image-encoder call.
    """

    detector: DetectorSettings = DetectorSettings()
    postprocess: PostprocessSettings = PostprocessSettings()
    instance_prompts: bool = True
    encode_batch_size: int = 1
    prepare: PrepareSettings = PrepareSettings()

    def clip_for(self, dataset: str) -> tuple[float, float]:
        """The intensity clipping (percentiles of non-zero voxels) ``prepare`` used for ``dataset``."""
        return self.prepare.clip_percentiles_for(dataset)

    @property
    def resize_mode(self) -> str:
        """How ``prepare`` resized slices for the models and the YOLO export."""
        return self.prepare.resize_mode


def select_subjects(subjects: pd.DataFrame, datasets: Sequence[str] | str = "all", splits: Sequence[str] | str = "test",
                    max_per_dataset: int = 0, setting: str = "datasets") -> pd.DataFrame:
    """The prepared subjects of ``datasets`` in ``splits``, sorted, at most ``max_per_dataset`` each.

    Parameters
    ----------
    subjects : ``subjects.parquet`` of the prepared data (columns dataset, subject_id, split).
    datasets : dataset names, or ``"all"`` for every prepared dataset.
    splits : a split name, a list of them, or ``"all"``.
    max_per_dataset : the first N subjects (by id) of each dataset; 0 = all.
    setting : the setting's name in the error message when a dataset is not prepared.

    Returns
    -------
    The chosen rows, sorted by dataset and subject id, index reset.
    """
    wanted = sorted(subjects["dataset"].unique()) if datasets == "all" else list(datasets)
    missing = sorted(set(wanted) - set(subjects["dataset"]))
    if missing:
        raise SelectionError(f"{setting}: {', '.join(missing)} not among the prepared datasets")
    splits = [splits] if isinstance(splits, str) else list(splits)
    chosen = subjects[subjects["dataset"].isin(wanted) & (subjects["split"].isin(splits) | ("all" in splits))]
    chosen = chosen.sort_values(["dataset", "subject_id"])
    if int(max_per_dataset) > 0:
        chosen = chosen.groupby("dataset").head(int(max_per_dataset))
    return chosen.reset_index(drop=True)


def best_finetuned(experiments: pd.DataFrame, history: pd.DataFrame, datasets: Sequence[str]) -> pd.DataFrame:
    """Per dataset the finished experiment with the best validation Dice, without box shift
    (``box_shift_grid_px == 0``) and with it (``> 0``): the two finetuned arms of the study."""
    from mskseg_lib.biomarkers.study import best_experiment_per_dataset

    rows = []
    if experiments.empty or "box_shift_grid_px" not in experiments:
        return pd.DataFrame(columns=["dataset", "box_shift", "experiment_id"])
    for shifted in (False, True):
        pick = experiments[(experiments["box_shift_grid_px"] > 0) == shifted]
        for d, eid in best_experiment_per_dataset(pick, history, datasets).items():
            rows.append({"dataset": d, "box_shift": shifted, "experiment_id": eid})
    return pd.DataFrame(rows, columns=["dataset", "box_shift", "experiment_id"])


# ----------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------
def _present(labels: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(labels) if v != 0]


def score_volume(pred: np.ndarray, gt: np.ndarray, slice_axis: int, spacing_mm: tuple[float, float, float],
                 names: Mapping[int, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(slice rows, label rows) of one predicted canonical volume against the manual one.

    Slice rows: each manually labelled slice with the mean Dice over its labels. Label rows:
    3D Dice and volumes (cm3) per manual label over the whole volume.
    """
    values = _present(gt)
    if not values:
        raise ValueError("the manual mask is empty: nothing to score")
    per_label = label_metrics(pred, gt, values)
    voxel_cm3 = float(np.prod(spacing_mm)) / 1000.0
    label_rows = pd.DataFrame([{"label": v, "label_name": names.get(v, str(v)), "dice": m["dice"], "iou": m["iou"],
                                "gt_volume_cm3": m["gt_px"] * voxel_cm3, "pred_volume_cm3": m["pred_px"] * voxel_cm3}
                               for v, m in per_label.items()])
    gt_m, pred_m = np.moveaxis(gt, slice_axis, 0), np.moveaxis(pred, slice_axis, 0)
    slice_rows = []
    for k in range(gt_m.shape[0]):
        here = _present(gt_m[k])
        if not here:
            continue
        m = label_metrics(pred_m[k], gt_m[k], here)
        slice_rows.append({"slice_index": k, "n_labels": len(here), "dice": float(np.mean([m[v]["dice"] for v in here])),
                           "fp_labels": len(set(_present(pred_m[k])) - set(here))})
    return pd.DataFrame(slice_rows), label_rows


def _fingerprint(payload: Mapping[str, Any]) -> str:
    return fingerprint(payload)


@dataclass
class SubjectResult:
    slices: pd.DataFrame
    labels: pd.DataFrame
    timings: dict[str, float]


def evaluate_subject(subject: Mapping[str, Any], segmenter: Segmenter, detector_source: PromptSource | None,
                     spec: DatasetSpec, settings: StudySettings = StudySettings(),
                     cache: EmbeddingCache | None = None) -> tuple[SubjectResult, Slicing, dict[str, Any]]:
    """Segment one prepared subject with ground-truth boxes and (when given) detector boxes, from
    the same embeddings; score both with post-processing off and on.

    Parameters
    ----------
    subject : a row of ``subjects.parquet`` (``image_nifti``, ``mask_nifti``).
    segmenter : the loaded segmenter.
    detector_source : the detector's prompt source, or None for ground-truth boxes only.
    spec : the subject's dataset.
    settings : clipping, resize mode, post-processing, instance prompts, encoder batch size.

    Returns
    -------
    (scores, the slicing (for examples), {"labels": raw canonical predictions per prompt source,
    "boxes": their boxes per slice, "gt": the canonical manual mask}).
    """
    image = raw_io.read_array("nifti", Path(subject["image_nifti"]), "image")
    gt = np.asarray(raw_io.read_array("nifti", Path(subject["mask_nifti"]), "mask").data).astype(np.int16)
    sl = slicing(image, spec, settings.clip_for(spec.name), settings.resize_mode)
    if gt.shape != sl.image_u8.shape:
        raise DataError(Path(subject["mask_nifti"]), f"mask shape {gt.shape} differs from image {sl.image_u8.shape}")
    if not gt.any():
        raise DataError(Path(subject["mask_nifti"]), "manual mask is empty: nothing to score")
    sources: list[PromptSource] = [mask_prompts(gt, sl.slice_axis, spec, settings.instance_prompts)]
    if detector_source is not None:
        sources.append(detector_source)
    raw, timings = segment_volume(sl, segmenter, sources, encode_batch_size=settings.encode_batch_size, cache=cache)
    spacing = tuple(float(s) for s in np.linalg.norm(sl.canonical.affine[:3, :3], axis=0))
    names = spec.label_names()
    slice_parts, label_parts = [], []
    t0 = time.perf_counter()
    for name, pred in raw.items():
        for pp_on in (False, True):
            labels = postprocess_volume(pred.labels, sl.slice_axis, spec, settings.postprocess.switched(pp_on))
            s_rows, l_rows = score_volume(labels, gt, sl.slice_axis, spacing, names)
            for part, rows in ((slice_parts, s_rows), (label_parts, l_rows)):
                rows.insert(0, "postprocess", "on" if pp_on else "off")
                rows.insert(0, "prompt", name)
                part.append(rows)
    timings["score_s"] = time.perf_counter() - t0
    boxes = {name: {k: b for k, b in pred.boxes.items()} for name, pred in raw.items()}
    result = SubjectResult(pd.concat(slice_parts, ignore_index=True), pd.concat(label_parts, ignore_index=True), timings)
    return result, sl, {"labels": {n: p.labels for n, p in raw.items()}, "boxes": boxes, "gt": gt}


def _boxes_json(boxes: Mapping[int, SliceBoxes]) -> dict[str, Any]:
    return {str(k): {"boxes": np.round(b.boxes_px, 2).tolist(), "labels": b.labels.tolist(),
                     "scores": np.round(b.scores, 4).tolist()} for k, b in boxes.items()}


class _Remembered:
    """A prompt source that computes its boxes once per volume and then returns them again."""

    def __init__(self, source: PromptSource):
        self.source, self.name, self.boxes = source, source.name, None

    def __call__(self, images: Sequence[np.ndarray], indices: Sequence[int]) -> list[SliceBoxes]:
        if self.boxes is None:
            self.boxes = self.source(images, indices)
        return self.boxes


@dataclass
class StudyResult:
    root: Path
    slices: pd.DataFrame  # one row per (model, dataset, subject, prompt, postprocess, slice)
    labels: pd.DataFrame  # one row per (model, dataset, subject, prompt, postprocess, label): 3D Dice
    subjects: pd.DataFrame  # one row per (model, dataset, subject, prompt, postprocess): mean slice Dice, 3D Dice
    runs: pd.DataFrame  # one row per (model, dataset, subject): timings, reused or computed
    skipped: pd.DataFrame = field(default_factory=empty_skipped)  # subjects left out: file and problem


SUBJECT_KEYS = ["model", "model_key", "dataset", "subject_id", "prompt", "postprocess"]


def subject_table(labels: pd.DataFrame, slices: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset, subject, prompt, postprocess).

    Parameters
    ----------
    labels : one row per (subject keys, label) with the label's 3D ``dice`` over the volume.
    slices : one row per (subject keys, manually labelled slice) with its slice ``dice`` (mean
        over the slice's manual labels).

    Returns
    -------
    DataFrame with the keys and ``dice`` (the study's subject Dice: mean of slice Dice),
    ``n_slices``, ``dice_3d`` (mean over labels of the 3D Dice: extra) and ``n_labels``.
    """
    keys = SUBJECT_KEYS
    if labels.empty or slices.empty:
        return pd.DataFrame(columns=[*keys, "dice", "n_slices", "dice_3d", "n_labels"])
    out = slices.groupby(keys, sort=False).agg(dice=("dice", "mean"), n_slices=("dice", "size")).reset_index()
    volume = labels.groupby(keys, sort=False).agg(dice_3d=("dice", "mean"), n_labels=("label", "size")).reset_index()
    return out.merge(volume, on=keys, how="left")


def _subject_fingerprint(model: StudyModel, subject: Mapping[str, Any], detector_id: str | None,
                         settings: StudySettings) -> str:
    """Everything that shapes one (model, subject)'s scores; a change recomputes them."""
    dataset = str(subject["dataset"])
    return _fingerprint({"model": model.key, **model.identity, "detector": detector_id,
                         "detector_inference": settings.detector.inference(), "pipeline_version": PIPELINE_VERSION,
                         "instance_prompts": settings.instance_prompts,
                         "postprocess": settings.postprocess.as_record(),
                         "detector_size": int(settings.detector.image_size_px), "clip": settings.clip_for(dataset),
                         "resize_mode": settings.resize_mode,
                         "image": file_key(Path(subject["image_nifti"])),
                         "mask": file_key(Path(subject["mask_nifti"]))})


def _stored(folder: Path, subject_id: str, fp: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]] | None:
    """The stored (slice rows, label rows, timings) of a subject finished with fingerprint ``fp``."""
    done = folder / f"{subject_id}.json"
    if not done.exists():
        return None
    record = json.loads(done.read_text())
    if record.get("fingerprint") != fp:
        return None
    return (pd.read_parquet(folder / f"{subject_id}.slices.parquet"),
            pd.read_parquet(folder / f"{subject_id}.labels.parquet"), record["timings_s"])


def _store(folder: Path, subject_id: str, fp: str, keys: Mapping[str, Any], res: SubjectResult,
           raw: Mapping[str, Any]) -> None:
    """Scores, raw predictions and boxes of one subject; the JSON (with the fingerprint) last."""
    atomic.save_parquet(res.slices, folder / f"{subject_id}.slices.parquet")
    atomic.save_parquet(res.labels, folder / f"{subject_id}.labels.parquet")
    with atomic.atomic_path(folder / f"{subject_id}.predictions.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{f"pred_{n}": v for n, v in raw["labels"].items()})
    atomic.write_json(folder / f"{subject_id}.json",
                      {"fingerprint": fp, **keys, "timings_s": {k: round(v, 3) for k, v in res.timings.items()},
                       "boxes": {n: _boxes_json(b) for n, b in raw["boxes"].items()}})


class _OneModelAtATime:
    """Loads a study model when first asked for it, dropping the previous one."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.segmenter: Segmenter | None = None

    def __call__(self, model: StudyModel) -> Segmenter:
        if self.key != model.key:
            self.key, self.segmenter = None, None  # one model in memory at a time
            self.segmenter, self.key = model.load(), model.key
        return self.segmenter


@dataclass
class _SubjectJob:
    """Scores one (model, subject) of a study, or reuses its stored scores."""

    root: Path
    detectors: Mapping[str, Any]
    detector_ids: Mapping[str, str]
    settings: StudySettings
    load: _OneModelAtATime
    cache: EmbeddingCache | None
    detected: dict[tuple[str, str], _Remembered] = field(default_factory=dict)

    def __call__(self, model: StudyModel, subject: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        """(slice rows, label rows, run row); a bad image or mask raises its ``DataError``.

        The detector runs once per subject: every model of that subject reuses its boxes.
        """
        spec = get_dataset(subject["dataset"])
        sid = str(subject["subject_id"])
        folder = self.root / "scores" / model.key / spec.name
        fp = _subject_fingerprint(model, subject, self.detector_ids.get(spec.name), self.settings)
        keys = {"model": model.label, "model_key": model.key, "dataset": spec.name, "subject_id": subject["subject_id"]}
        stored = _stored(folder, sid, fp)
        if stored is not None:
            s_rows, l_rows, timings = stored
            return s_rows, l_rows, {**keys, "status": "reused", **timings}
        source = self.detected.get((spec.name, sid)) or _Remembered(detector_prompts(
            self.detectors[spec.name], int(self.settings.detector.image_size_px), len(spec.labels),
            resize_mode=self.settings.resize_mode))
        self.detected[(spec.name, sid)] = source
        res, _, raw = evaluate_subject(subject, self.load(model), source, spec, self.settings, self.cache)
        for key, value in keys.items():
            res.slices.insert(0, key, value)
            res.labels.insert(0, key, value)
        _store(folder, sid, fp, keys, res, raw)
        return res.slices, res.labels, {**keys, "status": "computed",
                                        **{k: round(v, 3) for k, v in res.timings.items()}}


def run_study(root: Path, subjects: pd.DataFrame, models: Sequence[StudyModel], detectors: Mapping[str, Any],
              settings: StudySettings = StudySettings(), *, detector_ids: Mapping[str, str] | None = None,
              progress: bool = True, cache_dir: Path | None = None, on_bad_input: str = "skip") -> StudyResult:
    """Score every (model, subject) with ground-truth and detector boxes; resumes per subject.

    Each (model, dataset, subject) is stored under ``root/scores/<model key>/<dataset>/`` with a
    fingerprint of everything that shapes it: a rerun reuses it, a changed setting recomputes it.
    The detector runs once per subject; every model of that subject reuses its boxes.

    Parameters
    ----------
    root : the study's run folder (the profile's ``<runs_dir>/autolabel/<tag>``).
    subjects : rows of ``subjects.parquet`` to score (:func:`select_subjects`).
    models : the segmenters (:class:`StudyModel`); a model with ``datasets`` only scores those.
    detectors : dataset -> an object with ``detect(images) -> detections`` (see
        :mod:`mskseg_lib.autolabel.detector`); subjects of datasets without one are left out.
    settings : clipping, resize mode, post-processing, detector size and thresholds.
    detector_ids : dataset -> weights digest, part of the fingerprint, so a retrained detector
        recomputes the scores.
    progress : a progress bar over (model, subject).
    cache_dir : the run's embedding store: slices another stage encoded with the same model (same
        pixels) are read, not encoded (``evaluation.embedding_cache.encode_through_store``).
    on_bad_input : ``"skip"``: a subject whose image or mask is missing, unreadable or malformed
        (``DataError``) is listed in ``skipped`` and ``root/skipped.csv`` and the others complete;
        ``"raise"``: it stops the study. Any other error always does.

    Returns
    -------
    StudyResult with slice, label and subject tables (see :class:`StudyResult`), one run row
    per (model, subject): ``status`` computed or reused, and its timings in seconds; and the
    skipped subjects (``dataset, subject_id, path, problem``).
    """
    root = Path(root)
    detector_ids = dict(detector_ids or {})
    skipped = SkippedInputs("autolabel", check_on_bad_input(on_bad_input))
    slices, labels, runs = [], [], []
    jobs = [(m, s) for m in models for s in subjects.to_dict("records")
            if (m.datasets is None or s["dataset"] in m.datasets) and s["dataset"] in detectors]
    job = _SubjectJob(root, detectors, detector_ids, settings, _OneModelAtATime(),
                      EmbeddingCache(Path(cache_dir)) if cache_dir is not None else None)
    bar = tqdm(jobs, desc="autolabel study", unit="subject", disable=not progress)
    for model, subject in bar:
        bar.set_postfix_str(f"{model.key} {subject['subject_id']}")
        done = skipped.attempt(functools.partial(job, model, subject), subject["dataset"], subject["subject_id"])
        if done is SKIPPED:  # nothing stored: the next run tries this subject again
            continue
        s_rows, l_rows, run = done
        runs.append(run)
        slices.append(s_rows)
        labels.append(l_rows)
    skipped.save(root)
    slices_df = pd.concat(slices, ignore_index=True) if slices else pd.DataFrame()
    labels_df = pd.concat(labels, ignore_index=True) if labels else pd.DataFrame()
    return StudyResult(root, slices_df, labels_df, subject_table(labels_df, slices_df), pd.DataFrame(runs),
                       skipped.table())


# ----------------------------------------------------------------------------------------------
# summaries and examples
# ----------------------------------------------------------------------------------------------
def dataset_summary(subjects: pd.DataFrame) -> pd.DataFrame:
    """S70: per dataset, model, prompt and post-processing: the mean, SD and median over subjects
    of the subject Dice (mean slice Dice, the study's), n; ``dice_3d_mean`` (extra) beside it."""
    keys = ["dataset", "model", "prompt", "postprocess"]
    cols = [*keys, "n_subjects", "dice_mean", "dice_sd", "dice_median", "dice_3d_mean"]
    if subjects.empty:
        return pd.DataFrame(columns=cols)
    g = subjects.groupby(keys, sort=True)
    out = pd.DataFrame({"n_subjects": g["dice"].size(), "dice_mean": g["dice"].mean(), "dice_sd": g["dice"].std(),
                        "dice_median": g["dice"].median()})
    out["dice_3d_mean"] = g["dice_3d"].mean() if "dice_3d" in subjects else np.nan
    return out.reset_index()[cols]


def postprocess_cost(subjects: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model and prompt: subject Dice with post-processing on minus off (paired)."""
    keys = ["dataset", "model", "prompt", "subject_id"]
    if subjects.empty:
        return pd.DataFrame(columns=["dataset", "model", "prompt", "n_subjects", "dice_off", "dice_on", "difference_mean"])
    wide = subjects.pivot_table(index=keys, columns="postprocess", values="dice").reset_index()
    wide["difference"] = wide["on"] - wide["off"]
    g = wide.groupby(["dataset", "model", "prompt"], sort=True)
    return pd.DataFrame({"n_subjects": g.size(), "dice_off": g["off"].mean(), "dice_on": g["on"].mean(),
                         "difference_mean": g["difference"].mean(),
                         "difference_min": g["difference"].min(), "difference_max": g["difference"].max()}).reset_index()


def example_samples(result: StudyResult, subjects: pd.DataFrame, settings: StudySettings = StudySettings(),
                    postprocess: str = "on", per_dataset: int = 1) -> list[dict[str, Any]]:
    """Figure 6b rows: per dataset the model with the best detector-prompted Dice, on the slice
    with the most manual labels; image, manual and predicted labels, detector boxes.

    Parameters
    ----------
    result : what :func:`run_study` returned (its stored predictions are read back).
    subjects : the subjects it scored (for the image and mask files).
    settings : the study's settings (clipping, post-processing).
    postprocess : ``on`` or ``off``: which predictions to show.
    per_dataset : examples per dataset (best subjects first).

    Returns
    -------
    One dict per example: ``image`` (H, W) uint8 display slice, ``gt`` and ``pred`` (H, W)
    label maps, ``det_boxes`` (N, 4) inclusive pixel boxes, ``det_labels`` (N,), ``title``.
    """
    if result.subjects.empty:
        return []
    det = result.subjects[(result.subjects["prompt"] == "detector") & (result.subjects["postprocess"] == postprocess)]
    out = []
    for dataset, g in det.groupby("dataset", sort=True):
        for _, row in g.sort_values("dice", ascending=False).head(per_dataset).iterrows():
            spec = get_dataset(dataset)
            subject = subjects[(subjects["dataset"] == dataset) & (subjects["subject_id"] == row["subject_id"])].iloc[0]
            folder = result.root / "scores" / row["model_key"] / dataset
            with np.load(folder / f"{row['subject_id']}.predictions.npz") as npz:
                pred_raw = npz["pred_detector"]
            meta = json.loads((folder / f"{row['subject_id']}.json").read_text())
            image = raw_io.read_array("nifti", Path(subject["image_nifti"]), "image")
            gt = np.asarray(raw_io.read_array("nifti", Path(subject["mask_nifti"]), "mask").data)
            sl = slicing(image, spec, settings.clip_for(dataset))
            pred = postprocess_volume(pred_raw, sl.slice_axis, spec, settings.postprocess.switched(postprocess == "on"))
            counts = [len(_present(np.take(gt, k, axis=sl.slice_axis))) for k in range(sl.n_slices)]
            k = int(np.argmax(counts))
            boxes = meta["boxes"]["detector"].get(str(k), {"boxes": [], "labels": []})
            gt2d = display_slice(gt, sl.slice_axis, k)
            pred2d = display_slice(pred, sl.slice_axis, k)
            d2 = label_metrics(pred2d, gt2d, _present(gt2d))
            dice = float(np.mean([m["dice"] for m in d2.values()])) if d2 else float("nan")
            out.append({"image": sl.display_slice(k), "gt": gt2d, "pred": pred2d,
                        "det_boxes": np.asarray(boxes["boxes"], float).reshape(-1, 4),
                        "det_labels": np.asarray(boxes["labels"], int),
                        "title": f"{spec.anatomy} {spec.sequence_name} / {row['subject_id']} / slice {k} / "
                                 f"{row['model']}, slice Dice {dice:.2f}"})
    return out
