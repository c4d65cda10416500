"""One unreadable subject never stops a stage: its file and problem are listed, the others run.

``prepare`` records its bad raw files in ``skipped.csv``; the stages after it (zero-shot,
whole-volume predictions, biomarkers, the AutoLabel and video 3D studies) loop over prepared
subjects or raw volumes the same way. Each keeps a :class:`SkippedInputs`: a subject whose input
files cannot be read or are malformed (a :class:`DataError` naming the file, raised where the file
is read) is logged in one line and listed; every other subject completes. Only ``DataError`` is
caught: any other exception is a bug, or a fault of the machine, and stops the run with its
traceback. A skipped subject writes no result, so the next run of the stage tries it again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import pandas as pd

from mskseg_lib.atomic import save_csv
from mskseg_lib.data.errors import DataError, SettingsError

log = logging.getLogger(__name__)
ON_BAD_INPUT = ("raise", "skip")
STAGE_SKIPPED_COLUMNS = ["stage", "dataset", "subject_id", "path", "problem"]
SKIPPED_CSV = "skipped.csv"
SKIPPED = object()  # what :meth:`SkippedInputs.attempt` returns for a skipped subject
T = TypeVar("T")


def check_on_bad_input(value: str) -> str:
    """``value`` if it is ``"raise"`` or ``"skip"``; else a ``SettingsError`` naming it."""
    if value not in ON_BAD_INPUT:
        raise SettingsError(f"on_bad_input must be one of {list(ON_BAD_INPUT)}, got {value!r}")
    return value


def empty_skipped() -> pd.DataFrame:
    """A skipped list with no rows (columns :data:`STAGE_SKIPPED_COLUMNS`)."""
    return pd.DataFrame(columns=STAGE_SKIPPED_COLUMNS)


@dataclass
class SkippedInputs:
    """The subjects one stage left out because of a bad input file.

    Attributes
    ----------
    stage : str
        Written in every row (``zero_shot``, ``biomarkers``, ``autolabel``, ``video3d``).
    on_bad_input : str
        ``"skip"`` (list the subject and go on) or ``"raise"`` (stop at the first bad file).
    rows : list of dict
        One per skipped subject: ``stage, dataset, subject_id, path, problem``.
    """

    stage: str
    on_bad_input: str = "skip"
    rows: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_on_bad_input(self.on_bad_input)

    def add(self, dataset: str, subject_id: str, err: DataError) -> None:
        """List one subject's bad file (``err.path``) and its problem; one log line."""
        row = {"stage": self.stage, "dataset": str(dataset), "subject_id": str(subject_id),
               "path": str(err.path), "problem": str(err.problem)}
        if row not in self.rows:  # a subject seen by several models is listed once
            self.rows.append(row)
        log.warning("%s: skipped %s/%s: %s", self.stage, dataset, subject_id, err)

    def attempt(self, work: Callable[[], T], dataset: str, subject_id: str) -> T | object:
        """``work()``, or :data:`SKIPPED` after listing the subject when it raises a ``DataError``.

        Under ``on_bad_input="raise"`` the error propagates. Other exceptions always do.
        """
        try:
            return work()
        except DataError as err:
            if self.on_bad_input != "skip":
                raise
            self.add(dataset, subject_id, err)
            return SKIPPED

    def table(self) -> pd.DataFrame:
        """The listed subjects as a DataFrame (:data:`STAGE_SKIPPED_COLUMNS`), possibly empty."""
        return pd.DataFrame(self.rows, columns=STAGE_SKIPPED_COLUMNS)

    def save(self, folder: Path) -> Path:
        """Write the list to ``<folder>/skipped.csv`` atomically (an empty file has the header)."""
        return save_csv(self.table(), Path(folder) / SKIPPED_CSV)


def skipped_sentence(skipped: pd.DataFrame | None) -> str:
    """``"Inputs skipped: none"`` or ``"Inputs skipped: N (file and problem below)"``."""
    n = 0 if skipped is None else len(skipped)
    return "Inputs skipped: none" if n == 0 else f"Inputs skipped: {n} (file and problem below)"
