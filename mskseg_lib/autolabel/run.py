"""AutoLabel as a user runs it (``mskseg autolabel``, or one call in a notebook).

:func:`label_volumes` labels every volume under a path with one dataset's detector and a zoo
segmenter: it picks the segmenter (the first of a list whose weights are present), joins the
torchrun ranks and pins each to its device, loads both models there, records what ran (models,
weights digests, versions, git) and hands over to :func:`mskseg_lib.autolabel.pipeline.autolabel`
(resumable, one volume at a time, split across ranks). Without a profile::

    from mskseg_lib.autolabel.pipeline import AutolabelSettings
    from mskseg_lib.autolabel.run import label_volumes
    from mskseg_lib.data.catalog import get_dataset
    report = label_volumes("scans/", "labels/", AutolabelSettings(get_dataset("Thigh_2D_T1ax_Clinical_Anatomical_50"),
                           detector_image_size_px=256), Path("best.pt"), model_keys=["lite_medsam"])

:func:`train_detectors` trains (or reuses) the detectors of several datasets and scores each
on a split (``mskseg train-detector``, notebook 06).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from mskseg_lib import distributed as dist
from mskseg_lib.autolabel.detector import DetectorRun, DetectorSettings, evaluate_detector, load_detector, train_detector
from mskseg_lib.autolabel.inputs import find_volumes
from mskseg_lib.autolabel.models import choose_segmenter
from mskseg_lib.autolabel.pipeline import AutolabelReport, AutolabelSettings, autolabel, detector_prompts, join_ranks
from mskseg_lib.data.errors import DataError
from mskseg_lib.errors import UserError
from mskseg_lib.evaluation.embedding_cache import EmbeddingCache
from mskseg_lib.models.checkpoints import sha256_file
from mskseg_lib.models.interface import pick_device
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import load_model

__all__ = ["TrainedDetector", "label_volumes", "train_detectors"]


class DetectorMismatch(UserError, ValueError):
    """The detector's settings disagree with the pipeline's (image size)."""


def label_volumes(input_path: str | Path, out_dir: str | Path, settings: AutolabelSettings, detector_weights: Path, *,
                  model_keys: Sequence[str] = ("lite_medsam",), models: ModelSettings | None = None,
                  detector: DetectorSettings | None = None, run_record: Mapping[str, Any] | None = None,
                  progress: bool = True, cache_dir: Path | None = None) -> AutolabelReport:
    """Label every volume under ``input_path`` into ``out_dir``; under torchrun, split across ranks.

    Parameters
    ----------
    input_path : a NIfTI file, a DICOM series folder, or a folder of either
        (:func:`mskseg_lib.autolabel.inputs.find_volumes`; ``out_dir`` inside it is skipped).
    out_dir : where the label NIfTIs, detections, overlays and the report go.
    settings : the pipeline's settings for the dataset (``settings.spec``).
    detector_weights : the dataset's detector (``best.pt``).
    model_keys : the zoo segmenter, or several in order of preference (the first whose weights
        are present runs).
    models : where the zoo's weights are and how they run (default ``ModelSettings()``).
    detector : the detector's thresholds (default: the study's, at the pipeline's image size).
    run_record : provenance merged into ``autolabel_report.json`` (e.g. profile and seed).
    progress : progress bars.
    cache_dir : an embedding store to read and fill (``notebook 06`` passes the run's, whose
        study already encoded the demo volume); None, the default for a site's batch: every
        slice is encoded and nothing is kept (about 2 MB per slice).

    Returns
    -------
    AutolabelReport (on rank 0 every rank's rows; ``rank`` says which process this is).
    """
    from mskseg_lib.provenance import collect_versions, git_info, utc_now_iso

    models = models or ModelSettings()
    detector = detector or DetectorSettings(image_size_px=settings.detector_image_size_px)
    if int(detector.image_size_px) != int(settings.detector_image_size_px):
        raise DetectorMismatch(f"detector image_size_px ({detector.image_size_px}) must equal the pipeline's "
                               f"detector_image_size_px ({settings.detector_image_size_px}): the YOLO export's size")
    weights = Path(detector_weights)
    if not weights.is_file():
        raise DataError(weights, "detector weights not found")
    model_key = choose_segmenter(model_keys, models)
    ctx = join_ranks(pick_device(models.device))
    try:
        items = find_volumes(input_path, exclude=out_dir)
        segmenter = load_model(model_key, models, ctx.device)
        source = detector_prompts(load_detector(weights, detector, ctx.device), int(settings.detector_image_size_px),
                                  len(settings.spec.labels), resize_mode=settings.resize_mode)
        model_ids = {"segmenter": model_key,
                     "segmenter_checkpoint": str((getattr(segmenter, "checkpoint", None) or {}).get("sha256", "")),
                     "segmenter_input_normalisation": str(getattr(segmenter, "normalisation", "")),
                     "detector": sha256_file(weights), "detector_inference": detector.inference(),
                     "device_type": ctx.device.type, "autocast_bf16": bool(models.autocast_bf16)}
        record = {"command": "autolabel", **dict(run_record or {}), "input": str(input_path),
                  "started_utc": utc_now_iso(), "git": git_info(), "versions": collect_versions(),
                  "detector_weights": str(weights), "device": str(ctx.device)}
        return autolabel(items, Path(out_dir), segmenter, source, settings, model_ids=model_ids, ctx=ctx,
                         progress=progress, run_record=record,
                         cache=EmbeddingCache(Path(cache_dir)) if cache_dir is not None else None)
    finally:
        dist.stop(ctx)


@dataclass
class TrainedDetector:
    """A dataset's detector and, when asked for, its scores on a split (one row per class + ``all``)."""

    run: DetectorRun
    metrics: pd.DataFrame | None


def train_detectors(datasets: Sequence[str], prepared_dir: Path, detectors_dir: Path,
                    settings: DetectorSettings = DetectorSettings(), *, seed: int = 0, device: Any = "auto",
                    evaluate_split: str | None = "test", progress: bool = False) -> dict[str, TrainedDetector]:
    """Train (or reuse) each dataset's detector, then score it on ``evaluate_split``.

    Parameters
    ----------
    datasets : dataset names (each has a YOLO export under ``prepared_dir/yolo``).
    prepared_dir : the prepared data folder.
    detectors_dir : folder of every dataset's detector (``<runs_dir>/autolabel/detectors``).
    settings : the detector's settings.
    seed : training seed.
    device : "auto", "cpu", "cuda:N".
    evaluate_split : ``train``, ``val`` or ``test``; None skips scoring.
    progress : ultralytics' verbose output.

    Returns
    -------
    dict dataset -> TrainedDetector (metrics: :func:`~mskseg_lib.autolabel.detector.evaluate_detector`).
    """
    out = {}
    for dataset in datasets:
        run = train_detector(dataset, prepared_dir, detectors_dir, settings, seed=seed, device=device,
                             progress=progress)
        metrics = None if evaluate_split is None else evaluate_detector(
            run.weights, dataset, prepared_dir, detectors_dir, settings, split=evaluate_split, device=device)
        out[dataset] = TrainedDetector(run, metrics)
    return out
