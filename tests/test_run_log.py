"""The training curves PNG of a run folder is drawn without touching the caller's plotting state."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from mskseg_lib.finetuning.run_log import plot_curves


def test_curves_png_keeps_the_kernels_backend_and_leaves_no_figure_open(tmp_path: Path) -> None:
    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # a stand-in for a notebook's inline backend: anything but Agg
    try:
        history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_dice": 0.1 * e, "lr": 1e-4}
                   for e in range(1, 4)]
        out = plot_curves(history, tmp_path / "curves.png", "run 1")
        assert matplotlib.get_backend() == "svg"  # training inside a notebook must not switch it to Agg
        assert plt.get_fignums() == []
        image = plt.imread(out)
        assert image.shape[2] in (3, 4) and image.shape[1] > image.shape[0] > 100
        assert np.ptp(image[..., :3]) > 0  # something was drawn
        assert plot_curves([], tmp_path / "none.png", "empty") is None
    finally:
        matplotlib.use(previous)
