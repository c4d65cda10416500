"""Worker for the torchrun test: ``torchrun --nproc_per_node 2 autolabel_rank_worker.py IN OUT``.

Each rank labels its share of the phantom volumes in IN with the oracle detector and the
box-filling segmenter; rank 0 merges the per-rank reports.
"""
from __future__ import annotations

import sys
from pathlib import Path

from autolabel_fakes import THIGH, BoxFillSegmenter, OracleDetector, canonical_labels, phantom

from mskseg_lib.autolabel import pipeline as pl
from mskseg_lib.autolabel.inputs import find_volumes, read_volume
from mskseg_lib.autolabel.postprocess import PostprocessSettings
from mskseg_lib.data.catalog import get_dataset


def main() -> None:
    spec = get_dataset(THIGH)
    items = find_volumes(Path(sys.argv[1]))
    vol = read_volume(items[0])
    _, labels = phantom(orientation="LPS")
    det = OracleDetector(canonical_labels(vol, labels), spec.slice_axis_canonical, 64)
    seg = BoxFillSegmenter(128, pl.slicing(vol, spec).display_slice(0).shape)
    settings = pl.AutolabelSettings(spec, 64, (0.5, 99.5), PostprocessSettings(enabled=False), 0)
    pl.autolabel(items, Path(sys.argv[2]), seg, pl.detector_prompts(det, 64, len(spec.labels)), settings,
                 progress=False)


if __name__ == "__main__":
    main()
