"""``mskseg bench video3d``: seconds per frame of SAM2's video predictor with frames from memory
against the sam2 package's own route (slices written as a JPEG folder, read back by
``init_state``).

Both routes run the same scheme (one positive point per structure plus negatives, the study's
"points + video") on the same volume with the same model, alternately, ``repeats`` times each:

* **memory**: ``run_video`` (``VolumeFrames`` made on demand, no files);
* **jpeg**: writing the JPEG folder (timed separately) plus ``run_video_from_jpeg``.

It reports seconds per frame of each (median over repeats), their ratio, and how far the two
routes' masks agree (Dice of the label volumes: JPEG compression changes the pixels the model
sees). The volume is a row of :func:`mskseg_lib.video3d.study.study_volumes` (the profile's
first one from ``mskseg bench video3d``); the model is a zoo SAM2 model whose checkpoint is
present, or ``tiny`` (random 256-px miniature: timings of the plumbing, not of a real encoder).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mskseg_lib.evaluation.metrics import dice
from mskseg_lib.models.interface import pick_device, set_cpu_threads
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.provenance import collect_versions
from mskseg_lib.video3d import prompts as P
from mskseg_lib.video3d import study
from mskseg_lib.video3d.frames import write_jpeg_frames
from mskseg_lib.video3d.predictor import build_tiny_video_predictor, load_video_predictor, parameter_count
from mskseg_lib.video3d.propagate import run_video, run_video_from_jpeg


def bench_video3d(volume: Mapping[str, Any], model: str = "tiny", repeats: int = 2, jpeg_quality: int = 95, *,
                  settings: study.Video3dSettings = study.Video3dSettings(),
                  models: ModelSettings | None = None) -> dict[str, Any]:
    """Time both routes on one volume.

    Parameters
    ----------
    volume : a row of :func:`mskseg_lib.video3d.study.study_volumes` (dataset, subject_id,
        image_nifti, mask_nifti).
    model : a zoo SAM2 model, or ``tiny`` (random miniature).
    repeats : runs of each route (medians reported).
    jpeg_quality : of the JPEG frames (the sam2 package's route).
    settings : the structures prompted (``tissues``) and the dataset's clipping.
    models : weights, device, CPU threads, bf16 autocast (default ``ModelSettings()``).

    Returns
    -------
    JSON-ready dict: seconds per frame of each route (``memory_s_per_frame``,
    ``jpeg_s_per_frame``, ``jpeg_write_s_per_frame``), their ratio, every timing
    (``times_s``), the mask Dice between the routes per structure, versions.
    """
    models = models or ModelSettings()
    set_cpu_threads(int(models.cpu_threads))
    device = pick_device(models.device)
    row = dict(volume)
    vol = study.load_volume(row, settings)
    if model == "tiny":
        predictor = build_tiny_video_predictor(device)
    else:
        predictor, _ = load_video_predictor(model, models, device)
    seeds = P.single_slice_prompts(vol.gt, vol.values, negatives=True)
    bf16 = bool(models.autocast_bf16)
    n = len(vol.image)
    times: dict[str, list[float]] = {"memory_s": [], "jpeg_write_s": [], "jpeg_run_s": []}
    masks: dict[str, np.ndarray] = {}
    run_video(predictor, vol.image[: min(n, 3)], [P.ObjectPrompt(s.label, min(s.frame, 2), s.points, s.point_labels)
                                                  for s in seeds[:1]], autocast_bf16=bf16)  # warm-up
    for _ in range(max(1, int(repeats))):
        res = run_video(predictor, vol.image, seeds, autocast_bf16=bf16)
        times["memory_s"].append(res.seconds)
        masks["memory"] = res.labels
        with tempfile.TemporaryDirectory(prefix="mskseg-bench-jpeg-") as tmp:
            t0 = time.perf_counter()
            write_jpeg_frames(vol.image, Path(tmp), quality=jpeg_quality)
            times["jpeg_write_s"].append(time.perf_counter() - t0)
            res = run_video_from_jpeg(predictor, Path(tmp), seeds, autocast_bf16=bf16)
            times["jpeg_run_s"].append(res.seconds)
            masks["jpeg"] = res.labels
        if device.type == "cuda":
            torch.cuda.synchronize()
    med = {k: statistics.median(v) for k, v in times.items()}
    jpeg_total = med["jpeg_write_s"] + med["jpeg_run_s"]
    agree = {int(v): dice(masks["memory"] == v, masks["jpeg"] == v) for v in vol.values}
    return {
        "model": model, "n_params": parameter_count(predictor), "image_size_px": int(predictor.image_size),
        "device": str(device), "autocast_bf16": bf16,
        "volume": {k: str(row[k]) for k in ("dataset", "subject_id", "image_nifti")},
        "n_frames": n, "slice_shape_px": list(vol.image.shape[1:]), "n_objects": len(seeds), "repeats": int(repeats),
        "jpeg_quality": int(jpeg_quality), "times_s": times,
        "memory_s_per_frame": med["memory_s"] / n,
        "jpeg_s_per_frame": jpeg_total / n,
        "jpeg_write_s_per_frame": med["jpeg_write_s"] / n,
        "jpeg_over_memory": jpeg_total / med["memory_s"],
        "mask_dice_memory_vs_jpeg": agree,
        "versions": collect_versions(),
    }
