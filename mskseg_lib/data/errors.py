"""The one exception type for bad input data.

Every problem with a raw file (unreadable, truncated, wrong shape, missing key, NaN, unknown
label...) is raised as :class:`DataError` naming the offending file and the problem in plain
words, so a failing ingest of hundreds of subjects points straight at the file to look at
instead of ending in a numpy/pydicom/h5py traceback. A preparation or cohort setting that is out
of range is a :class:`SettingsError` naming the setting.
"""
from __future__ import annotations

from pathlib import Path

from mskseg_lib.errors import UserError


class DataError(UserError, ValueError):
    """A raw input file is unusable: ``str(err) == f"{path}: {problem}"``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(path, problem)  # args kept as (path, problem) so the error pickles
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class SettingsError(UserError, ValueError):
    """A preparation or cohort setting is unknown or out of range: one line naming it."""
