"""ITK-SNAP and 3D Slicer label tables beside label NIfTIs: parsed back, values, names, colours."""
from __future__ import annotations

import shlex
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mskseg_lib.data.label_tables import PALETTE_RGB, table_stem, write_label_tables

LABELS = {1: "femur", 2: "tibia cartilage", 3: 'the "patella"'}


def parse_itksnap(path: Path) -> dict[int, tuple[int, int, int, float, int, int, str]]:
    """value -> (R, G, B, A, VIS, MSH, LABEL) of an ITK-SNAP label description file."""
    rows = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = shlex.split(line)
        assert len(f) == 8, line
        rows[int(f[0])] = (int(f[1]), int(f[2]), int(f[3]), float(f[4]), int(f[5]), int(f[6]), f[7])
    return rows


def parse_slicer(path: Path) -> dict[int, tuple[str, int, int, int, int]]:
    """value -> (name, R, G, B, A) of a 3D Slicer colour table."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# Color table file")
    rows = {}
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        assert len(f) == 6, line
        rows[int(f[0])] = (f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5]))
    return rows


def test_both_tables_parse_back_with_values_names_and_palette_colours(tmp_path):
    paths = write_label_tables(tmp_path / "pred.nii.gz", LABELS, colours={2: (10, 20, 30)})
    assert paths == [tmp_path / "pred.itksnap.txt", tmp_path / "pred.ctbl"]
    itk = parse_itksnap(paths[0])
    assert itk == {0: (0, 0, 0, 0.0, 0, 0, "Clear Label"),
                   1: (255, 0, 0, 1.0, 1, 1, "femur"),
                   2: (10, 20, 30, 1.0, 1, 1, "tibia cartilage"),
                   3: (0, 0, 255, 1.0, 1, 1, "the 'patella'")}
    assert "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL" in paths[0].read_text()
    slicer = parse_slicer(paths[1])
    assert slicer == {0: ("Clear_Label", 0, 0, 0, 0), 1: ("femur", 255, 0, 0, 255),
                      2: ("tibia_cartilage", 10, 20, 30, 255), 3: ('the_"patella"', 0, 0, 255, 255)}
    assert "# 4 values" in paths[1].read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_colours_are_fixed_by_label_value_and_the_palette_wraps(tmp_path):
    n = len(PALETTE_RGB)
    a = parse_slicer(write_label_tables(tmp_path / "a.nii", {7: "x"})[1])
    b = parse_slicer(write_label_tables(tmp_path / "b.nii", {1: "y", 7: "z", n + 1: "w"})[1])
    assert a[7][1:4] == b[7][1:4] == PALETTE_RGB[6]
    assert b[n + 1][1:4] == PALETTE_RGB[0]
    assert (tmp_path / "a.itksnap.txt").exists() and table_stem(tmp_path / "a.nii") == "a"


def test_bad_values_and_colours_are_refused(tmp_path):
    with pytest.raises(ValueError, match="negative"):
        write_label_tables(tmp_path / "p.nii.gz", {-1: "x"})
    with pytest.raises(ValueError, match="0..255"):
        write_label_tables(tmp_path / "p.nii.gz", {1: "x"}, colours={1: (0, 300, 0)})
    assert list(tmp_path.iterdir()) == []


def test_a_written_prediction_gets_its_tables_beside_it(tmp_path):
    from mskseg_lib.evaluation.volumes import write_volume

    volume = np.zeros((4, 5, 6), np.int16)
    volume[1:3, 1:3, 1:3] = 2
    out = write_volume(tmp_path / "sub01.nii.gz", volume, np.eye(4), labels={1: "femur", 2: "tibia"})
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), volume)
    assert parse_itksnap(tmp_path / "sub01.itksnap.txt")[2][:3] == PALETTE_RGB[1]
    assert parse_slicer(tmp_path / "sub01.ctbl")[1][0] == "femur"
    write_volume(tmp_path / "bare.nii.gz", volume, np.eye(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.nii.gz", "sub01.ctbl", "sub01.itksnap.txt",
                                                          "sub01.nii.gz"]
