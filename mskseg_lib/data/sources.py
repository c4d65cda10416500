"""Where raw subjects come from: the synthetic cohort, site manifests, the real spine fixture.

Every source becomes rows of one *raw manifest* (columns in ``cohort.MANIFEST_COLUMNS``) with
absolute paths, so ``prepare`` has one code path for all data. A site manifest is a CSV with
at least ``dataset, subject_id, image_format, image_path, mask_format, mask_path``; relative
paths are taken from the CSV's folder; demographic and protocol columns are optional (DICOM
headers fill them), and so is ``series_uid`` (which series of a DICOM folder that holds several). ``read_manifest`` checks every row before any work (known dataset and
formats, files exist, no duplicate subject, ids read as text) and reports each problem as one
line naming the row and file. ``collect_sources`` joins the synthetic cohort's manifest and any number of
:class:`RawSource` entries (site manifests, real spine folders) into one table.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from mskseg_lib.data import raw_io
from mskseg_lib.data.catalog import REAL_SPINE, get_dataset, known_datasets
from mskseg_lib.data.cohort import MANIFEST_COLUMNS
from mskseg_lib.data.errors import DataError, SettingsError

REQUIRED = ("dataset", "subject_id", "image_format", "image_path", "mask_format", "mask_path")
SOURCE_KINDS = ("real_spine", "manifest")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawSource:
    """Raw data besides the synthetic cohort: a site manifest CSV (``kind="manifest"``) or a
    folder of real spine volumes (``kind="real_spine"``), at an absolute ``path``."""

    kind: str
    path: Path

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise SettingsError(f"unknown source type {self.kind!r} (use {' or '.join(SOURCE_KINDS)})")


def _absolute(df: pd.DataFrame, base: Path) -> pd.DataFrame:
    df = df.copy()
    for col in ("image_path", "mask_path"):
        df[col] = [p if not p.strip() or Path(p).is_absolute() else str(base / p) for p in df[col]]

    def maps_abs(m: object) -> str:
        if not isinstance(m, str) or not m.strip():
            return ""
        d = json.loads(m)
        for v in d.values():
            v["path"] = str(v["path"] if Path(v["path"]).is_absolute() else base / v["path"])
        return json.dumps(d)

    df["maps"] = df["maps"].map(maps_abs) if "maps" in df else ""
    return df


TEXT_COLUMNS = REQUIRED  # read as text: an id "NA", "nan" or "007" stays that string
# optional columns kept (as text) where a manifest has them: series_uid picks one DICOM series of
# a folder that holds several (a scanner export with localisers, other contrasts)
OPTIONAL_TEXT_COLUMNS = ("series_uid",)
ON_BAD_ROW = ("raise", "skip")
KNOWN_NAMES_SHOWN = 3  # how many known dataset names an unknown-name message lists


@dataclass(frozen=True)
class ManifestProblem:
    """One bad manifest row: where it is, what it names and what is wrong.

    ``row`` is the row number as a spreadsheet shows it (the header is row 1, so the first
    subject is row 2); ``file`` is the file the problem is about (the manifest itself when the
    problem is in a cell).
    """

    manifest: Path
    row: int
    dataset: str
    subject_id: str
    file: str
    problem: str

    def line(self) -> str:
        """The one-line message: ``<manifest> row <n> (<dataset>/<subject_id>): <problem>``."""
        return f"{self.manifest} row {self.row} ({self.dataset}/{self.subject_id}): {self.problem}"


def _unknown_dataset(name: str) -> str | None:
    """None when a dataset card declares ``name``, else the problem naming a few known names."""
    try:
        get_dataset(name)
    except KeyError:
        known = [s.name for s in known_datasets()]
        shown = ", ".join(known[:KNOWN_NAMES_SHOWN])
        return (f"unknown dataset {name!r}: no dataset card declares it (known: {shown}, ... {len(known)} in all; "
                "declare it in a card under the profile's datasets:)")
    return None


def _row_problems(df: pd.DataFrame, manifest: Path) -> list[ManifestProblem]:
    """Every problem of every row of a raw manifest whose paths are already absolute."""
    problems: list[ManifestProblem] = []
    first_row: dict[tuple[str, str], int] = {}
    for i, row in enumerate(df[list(REQUIRED) + ["maps"]].to_dict("records")):
        number = i + 2  # the header is row 1

        def bad(problem: str, file: str | Path = manifest, row: dict = row, number: int = number) -> None:
            problems.append(ManifestProblem(manifest, number, row["dataset"], row["subject_id"], str(file), problem))

        for col in REQUIRED:
            if not row[col].strip():
                bad(f"{col} is empty")
        if row["dataset"].strip():
            unknown = _unknown_dataset(row["dataset"])
            if unknown:
                bad(unknown)
        if row["subject_id"].strip():
            key = (row["dataset"], row["subject_id"])
            if key in first_row:
                bad(f"duplicate subject: dataset {key[0]!r}, subject_id {key[1]!r} is also on row {first_row[key]}")
            else:
                first_row[key] = number
        for kind, formats in (("image", raw_io.FORMATS), ("mask", raw_io.MASK_FORMATS)):
            fmt, file = row[f"{kind}_format"], row[f"{kind}_path"]
            if fmt.strip() and fmt not in formats:
                bad(f"unknown {kind}_format {fmt!r} (known: {', '.join(formats)})")
            if file.strip() and not Path(file).exists():
                bad(f"{kind} file not found: {file}", file)
        maps = row["maps"]
        if isinstance(maps, str) and maps.strip():
            for key, ref in json.loads(maps).items():
                if not Path(ref["path"]).exists():
                    bad(f"map {key!r} file not found: {ref['path']}", ref["path"])
    return problems


def read_manifest(path: Path, on_bad_input: str = "raise",
                  skipped: list[ManifestProblem] | None = None) -> pd.DataFrame:
    """A raw manifest CSV, checked row by row before any work, with paths made absolute.

    Parameters
    ----------
    path : Path
        The manifest CSV (columns ``REQUIRED`` at least; relative paths are taken from its folder).
    on_bad_input : {"raise", "skip"}
        ``"raise"``: one :class:`DataError` listing every bad row, one line each
        (:meth:`ManifestProblem.line`). ``"skip"``: bad rows are left out and appended to
        ``skipped`` (``prepare_all`` writes them to ``skipped.csv``).
    skipped : list of ManifestProblem, optional
        Where ``"skip"`` records the rows it leaves out.

    Returns
    -------
    DataFrame
        The good rows, every ``MANIFEST_COLUMNS`` column present, ``REQUIRED`` columns as text.

    Raises
    ------
    DataError
        The file is missing, not a CSV, lacks required columns, or (``"raise"``) has bad rows:
        unknown dataset or format, a file that does not exist, an empty cell, a duplicate
        (dataset, subject_id), a ``maps`` cell that is not JSON.
    """
    path = Path(path)
    if on_bad_input not in ON_BAD_ROW:
        raise SettingsError(f"on_bad_input must be one of {list(ON_BAD_ROW)}, got {on_bad_input!r}")
    if not path.exists():
        raise DataError(path, "manifest file not found")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for broken CSV
        raise DataError(path, f"not a readable CSV manifest ({exc})") from exc
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(path, f"manifest lacks columns {missing} (has {list(df.columns)})")
    text_columns = [*TEXT_COLUMNS, *(c for c in OPTIONAL_TEXT_COLUMNS if c in df.columns)]
    text = pd.read_csv(path, usecols=text_columns, dtype=str, keep_default_na=False)
    for col in text_columns:
        df[col] = text[col].str.strip() if col in OPTIONAL_TEXT_COLUMNS else text[col]
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = None
    if "source" not in df or df["source"].isna().all():
        df["source"] = "manifest"
    try:
        df = _absolute(df, path.parent)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a maps cell that is not JSON
        raise DataError(path, f"a maps cell is not a JSON object of {{key: {{format, path, key}}}} ({exc})") from exc
    problems = _row_problems(df, path)
    if problems and on_bad_input == "raise":
        rows = sorted({p.row for p in problems})
        raise DataError(path, f"{len(rows)} bad row(s), nothing prepared:\n"
                        + "\n".join(p.line() for p in problems))
    for p in problems:
        log.warning("skipped %s", p.line())
    if skipped is not None:
        skipped.extend(problems)
    bad_rows = {p.row - 2 for p in problems}
    return df.drop(index=[df.index[i] for i in sorted(bad_rows)]).reset_index(drop=True)


def real_spine_manifest(root: Path) -> pd.DataFrame:
    """Rows for ``vb3_NN_image.nii.gz`` / ``vb3_NN_labels.nii.gz`` pairs in the fixture folder."""
    rows = []
    for image in sorted(Path(root).glob("*_image.nii.gz")):
        m = re.match(r"(.+)_image\.nii\.gz$", image.name)
        labels = image.with_name(f"{m.group(1)}_labels.nii.gz")
        rows.append({"dataset": REAL_SPINE.name, "subject_id": m.group(1), "source": "real",
                     "image_format": "nifti", "image_path": str(image), "mask_format": "nifti",
                     "mask_path": str(labels), "maps": "", "field_strength_t": 3.0,
                     "vendor": REAL_SPINE.protocol.vendor})
    df = pd.DataFrame(rows)
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = None
    return df


def collect_sources(cohort_manifest: Path | None = None, sources: Sequence[RawSource] = (),
                    notes: list[str | ManifestProblem] | None = None,
                    on_bad_input: str = "raise") -> pd.DataFrame:
    """All raw subjects: the cohort's manifest (if any) plus each source, as one raw manifest.

    Parameters
    ----------
    cohort_manifest : Path or None
        ``manifest.csv`` of a generated synthetic cohort (:func:`.cohort.generate_cohort`).
    sources : sequence of RawSource
        Site manifests and real spine folders, in order.
    notes : list of str or ManifestProblem, optional
        A source whose file or folder is absent is left out with a note appended here (and
        recorded by ``prepare_all`` in skipped.csv), never silently; so is each bad manifest
        row under ``on_bad_input="skip"``.
    on_bad_input : {"raise", "skip"}
        What :func:`read_manifest` does with bad rows (``PrepareSettings.on_bad_input``).

    Returns
    -------
    DataFrame
        One row per subject, columns ``MANIFEST_COLUMNS``, absolute paths.
    """
    notes = [] if notes is None else notes
    skipped: list[ManifestProblem] = []
    frames = [read_manifest(Path(cohort_manifest), on_bad_input, skipped)] if cohort_manifest is not None else []
    for src in sources:
        path = Path(src.path)
        if src.kind == "real_spine":
            if not path.is_dir():
                notes.append(f"{path}: real spine fixture not found; its subjects are not prepared")
                continue
            frames.append(real_spine_manifest(path))
        else:
            if not path.exists():
                notes.append(f"{path}: manifest not found; its subjects are not prepared")
                continue
            frames.append(read_manifest(path, on_bad_input, skipped))
    notes.extend(skipped)
    if not frames:
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    optional = [c for c in OPTIONAL_TEXT_COLUMNS if any(c in f.columns for f in frames)]
    return pd.concat(frames, ignore_index=True)[MANIFEST_COLUMNS + optional]


__all__ = ["ManifestProblem", "RawSource", "collect_sources", "read_manifest", "real_spine_manifest"]
