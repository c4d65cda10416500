"""What a detector training image costs: seconds per image per epoch of YOLO training.

``bench_detector`` trains the profile's detector on one dataset's YOLO export twice from
scratch in a temporary folder, for ``short`` and ``long`` epochs (no early stopping), and
divides the difference in wall time by the extra image-epochs: ultralytics' fixed setup
(model build, data checks, the final validation) cancels out. The number prices notebook 06's
training in the run's compute floor (``mskseg bench units``); it is measured, never asserted.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from mskseg_lib.autolabel.detector import DetectorSettings, train_detector


def bench_detector(dataset: str, prepared_dir: Path, settings: DetectorSettings, *, seed: int = 0,
                   device: Any = "cpu", short: int = 1, long: int = 3) -> dict[str, Any]:
    """``{dataset, model, train_images, short_s, long_s, s_per_image_epoch}``."""
    if long <= short:
        raise ValueError(f"long ({long}) must exceed short ({short}) epochs")
    seconds, images = {}, 0
    with tempfile.TemporaryDirectory(dir=prepared_dir) as tmp:
        for epochs in (short, long):
            s = dataclasses.replace(settings, epochs=int(epochs), patience=int(epochs) + 1)
            run = train_detector(dataset, prepared_dir, Path(tmp) / f"e{epochs}", s, seed=seed, device=device,
                                 progress=False)
            seconds[epochs] = run.seconds
            images = len(list((prepared_dir / "yolo" / dataset / "images" / "train").glob("*.png")))
    per = (seconds[long] - seconds[short]) / max(1, (long - short) * images)
    return {"dataset": dataset, "model": settings.model, "train_images": images, "short_s": seconds[short],
            "long_s": seconds[long], "s_per_image_epoch": round(per, 5)}
