"""Label tables beside label NIfTIs, so ITK-SNAP and 3D Slicer show names and colours.

A label NIfTI holds integers only. Next to ``<stem>.nii.gz`` this module writes

* ``<stem>.itksnap.txt``: an ITK-SNAP label description file (ITK-SNAP: Segmentation > Import
  Label Descriptions), one row ``IDX R G B A VIS MSH "LABEL"`` per label, 0 = "Clear Label";
* ``<stem>.ctbl``: a 3D Slicer colour table (``# Color table file`` header, then one row
  ``value name R G B A`` per label; drop it into Slicer with the volume, then pick it as the
  segmentation's colour node). Slicer names cannot hold spaces; they become ``_``.

Colours come from a fixed palette indexed by the label value, so a label keeps its colour in
every file the project writes; both files are written atomically.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping

from mskseg_lib import atomic

__all__ = ["PALETTE_RGB", "CLEAR_LABEL", "table_stem", "label_colours", "itksnap_table_text",
           "slicer_table_text", "write_label_tables"]

log = logging.getLogger(__name__)

CLEAR_LABEL = "Clear Label"

# Distinct, saturated colours (ITK-SNAP's first defaults, then Okabe-Ito-like and tab20-like
# tones); label value v >= 1 gets PALETTE_RGB[(v - 1) % len(PALETTE_RGB)].
PALETTE_RGB: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
    (255, 239, 213), (0, 0, 205), (205, 133, 63), (210, 180, 140), (102, 205, 170), (0, 0, 128),
    (0, 139, 139), (46, 139, 87), (255, 228, 225), (106, 90, 205), (221, 160, 221), (233, 150, 122),
    (165, 42, 42), (255, 250, 250),
)


def table_stem(nifti_path: Path) -> str:
    """The file name without ``.nii.gz`` / ``.nii`` (``a/pred.nii.gz`` -> ``pred``)."""
    name = Path(nifti_path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def label_colours(values: list[int], colours: Mapping[int, tuple[int, int, int]] | None = None
                  ) -> dict[int, tuple[int, int, int]]:
    """RGB (0..255) of each label value: ``colours`` where given, else the fixed palette (0 is black)."""
    out: dict[int, tuple[int, int, int]] = {}
    for v in values:
        rgb = (colours or {}).get(v)
        if rgb is None:
            rgb = (0, 0, 0) if v == 0 else PALETTE_RGB[(v - 1) % len(PALETTE_RGB)]
        rgb = tuple(int(c) for c in rgb)
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ValueError(f"label {v}: colour {rgb} is not three integers in 0..255")
        out[v] = rgb  # type: ignore[assignment]
    return out


def _rows(labels: Mapping[int, str]) -> list[tuple[int, str]]:
    """(value, name) sorted by value, with 0 = "Clear Label" unless ``labels`` names 0."""
    rows = {0: CLEAR_LABEL}
    for value, name in labels.items():
        v = int(value)
        if v < 0:
            raise ValueError(f"label value {v} is negative; label tables hold values >= 0")
        rows[v] = str(name)
    return sorted(rows.items())


def itksnap_table_text(labels: Mapping[int, str], colours: Mapping[int, tuple[int, int, int]] | None = None) -> str:
    """The ITK-SNAP label description file for ``labels`` (value -> name)."""
    rows = _rows(labels)
    rgb = label_colours([v for v, _ in rows], colours)
    lines = ["################################################",
             "# ITK-SnAP Label Description File",
             "# File format: ",
             "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
             "# Fields: ",
             "#    IDX:   Zero-based index ",
             "#    -R-:   Red color component (0..255)",
             "#    -G-:   Green color component (0..255)",
             "#    -B-:   Blue color component (0..255)",
             "#    -A-:   Label transparency (0.00 .. 1.00)",
             "#    VIS:   Label visibility (0 or 1)",
             "#    MSH:   Label mesh visibility (0 or 1)",
             "#  LABEL:   Label description ",
             "################################################"]
    for v, name in rows:
        r, g, b = rgb[v]
        shown = 0 if v == 0 else 1
        text = name.replace('"', "'")
        lines.append(f"{v:5d} {r:5d} {g:4d} {b:4d} {float(shown):8.2f} {shown:2d} {shown:2d}    \"{text}\"")
    return "\n".join(lines) + "\n"


def slicer_table_text(labels: Mapping[int, str], colours: Mapping[int, tuple[int, int, int]] | None = None,
                      title: str = "") -> str:
    """The 3D Slicer colour table for ``labels`` (value -> name; spaces in names become ``_``)."""
    rows = _rows(labels)
    rgb = label_colours([v for v, _ in rows], colours)
    lines = [f"# Color table file {title}".rstrip(), f"# {len(rows)} values"]
    for v, name in rows:
        r, g, b = rgb[v]
        alpha = 0 if v == 0 else 255
        slicer_name = re.sub(r"\s+", "_", name.strip()) or str(v)
        lines.append(f"{v} {slicer_name} {r} {g} {b} {alpha}")
    return "\n".join(lines) + "\n"


def write_label_tables(nifti_path: Path, labels: Mapping[int, str],
                       colours: Mapping[int, tuple[int, int, int]] | None = None) -> list[Path]:
    """Write ``<stem>.itksnap.txt`` and ``<stem>.ctbl`` beside a label NIfTI (atomically).

    Parameters
    ----------
    nifti_path : Path
        The label NIfTI (``.nii.gz`` or ``.nii``); it need not exist yet.
    labels : mapping of int to str
        Label value -> name (the dataset's ``DatasetSpec.label_names()``); 0 is "Clear Label"
        unless named here.
    colours : mapping of int to (R, G, B), optional
        0..255 per component; values not given take the fixed palette.

    Returns
    -------
    list of Path
        The ITK-SNAP file and the Slicer colour table, in that order.
    """
    nifti_path = Path(nifti_path)
    stem = table_stem(nifti_path)
    itk = atomic.write_text(nifti_path.with_name(f"{stem}.itksnap.txt"), itksnap_table_text(labels, colours))
    ctbl = atomic.write_text(nifti_path.with_name(f"{stem}.ctbl"),
                             slicer_table_text(labels, colours, title=f"{stem}.ctbl"))
    log.debug("label tables for %s: %s, %s", nifti_path, itk.name, ctbl.name)
    return [itk, ctbl]
