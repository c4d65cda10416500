"""The mean-box baseline detector: mAP50 computed by ultralytics' own AP on hand-made exports."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mskseg_lib.autolabel.baseline import mean_box_baseline, mean_boxes


def _export(root: Path, boxes: dict[str, list[list[str]]]) -> Path:
    """A YOLO export with one empty PNG-named file and one label file per image."""
    ds = root / "yolo" / "D"
    for split, images in boxes.items():
        (ds / "images" / split).mkdir(parents=True)
        (ds / "labels" / split).mkdir(parents=True)
        for i, lines in enumerate(images):
            (ds / "images" / split / f"{i}.png").write_bytes(b"png")
            (ds / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "yolo" / "D.yaml").write_text(f"path: {ds}\ntrain: images/train\nval: images/val\ntest: images/test\n"
                                          "names: {0: femur, 1: tibia}\n")
    return root


def test_mean_boxes_average_every_training_instance(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("0 0.2 0.2 0.2 0.2\n1 0.5 0.5 0.1 0.1\n")
    b.write_text("0 0.4 0.6 0.4 0.2\n")
    m = mean_boxes([a, b, None])
    assert np.allclose(m[0], [0.3, 0.4, 0.3, 0.2]) and np.allclose(m[1], [0.5, 0.5, 0.1, 0.1])


def test_a_structure_always_in_the_same_place_is_found_by_the_mean_box(tmp_path):
    femur, tibia = "0 0.3 0.3 0.2 0.2", "1 0.7 0.7 0.2 0.2"
    far_tibia = "1 0.1 0.9 0.1 0.1"  # IoU 0 with the mean tibia box
    root = _export(tmp_path, {"train": [[femur, tibia]] * 3, "val": [[femur]],
                              "test": [[femur, tibia], [femur, far_tibia]]})
    df = mean_box_baseline(root, "D", "test").set_index("class_name")
    assert df.loc["femur", "mAP50_mean_box"] == 1.0  # every prediction hits, every instance found
    # tibia: 2 predictions, 1 hit of 2 instances: precision 0.5 x recall 0.5
    assert df.loc["tibia", "mAP50_mean_box"] == pytest.approx(0.25)
    assert df.loc["all", "mAP50_mean_box"] == pytest.approx(df.loc[["femur", "tibia"], "mAP50_mean_box"].mean())


def test_a_malformed_label_file_is_named(tmp_path):
    from mskseg_lib.data.errors import DataError

    root = _export(tmp_path, {"train": [["0 0.3 0.3 0.2 0.2"]], "val": [["0 0.3 0.3 0.2 0.2"]],
                              "test": [["0 0.3 0.3 0.2"]]})  # four numbers
    with pytest.raises(DataError, match="test/0.txt"):
        mean_box_baseline(root, "D", "test")
