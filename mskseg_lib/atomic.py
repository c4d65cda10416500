"""Atomic file writes: a result file is either complete or absent, never half written.

Notebooks are interrupted (kernel death, Ctrl-C, out of memory) and results are read by later
notebooks and by the report index. Every writer here writes into a temporary file in the same
folder and renames it over the final name with ``os.replace`` (atomic on POSIX and Windows within
one file system). A failed write removes the temporary file and leaves any previous version of
the final file untouched.

The temporary name keeps the final suffix (``x.csv`` -> ``.x.tmp-123.csv``) so writers that
pick a format from the suffix (matplotlib, pandas, numpy) behave as for the final name.

A full disk, a read-only output folder, a denied permission or an exhausted quota is not a bug
but a fact of the user's machine: :func:`write_guard` turns such an ``OSError`` into
:class:`OutputWriteError`, one line naming the final path and the problem, after removing the
temporary file. The writers of this module use it, and so do the library's writers that build a
temporary file or folder of their own (DICOM series, cohort and prepared subjects, exports).
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Iterator

from mskseg_lib.errors import UserError

if TYPE_CHECKING:  # heavy imports only for type checkers
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "OutputWriteError",
    "WRITE_PROBLEMS",
    "write_guard",
    "replace_folder",
    "atomic_path",
    "temp_path_for",
    "json_default",
    "write_text",
    "write_json",
    "save_csv",
    "save_parquet",
    "save_npy",
    "save_figure",
]


# errno -> the problem as the one-line message states it; anything else stays an OSError (a bug or
# a transient failure keeps its traceback).
WRITE_PROBLEMS: dict[int, str] = {
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    WRITE_PROBLEMS[errno.EDQUOT] = "disk quota exceeded"


class OutputWriteError(UserError, OSError):
    """An output could not be written (disk full, read-only folder, no permission, quota).

    A :class:`~mskseg_lib.errors.UserError` (the command line prints it as one line) and an
    ``OSError`` (callers that already catch ``OSError`` around a write still do); ``filename``
    is the final path, ``errno`` the original error number.
    """

    def __init__(self, path: Path | str, code: int, problem: str) -> None:
        OSError.__init__(self, code, problem, str(path))
        self.path = Path(path)
        self.problem = problem

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.problem} (earlier outputs are left as they were)"


def _remove(path: Path) -> None:
    """Remove a temporary file or folder; never raises (the disk may be full or read-only)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _concerns(exc: OSError, final: Path, temps: tuple[Path, ...]) -> bool:
    """Whether ``exc`` is about writing ``final``: no file named, or one of the temporaries,
    the final path, a file beside it, or a folder above it (creating the parent)."""
    if exc.filename is None:
        return True
    named = Path(os.fsdecode(exc.filename))
    if named in temps or named == final or named.parent == final.parent:
        return True
    return any(p == named or named in p.parents for p in temps) or named in final.parents


def _nearly_full(final: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system of ``final``'s folder has less than ``margin`` bytes left."""
    folder = final.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        st = os.statvfs(folder)
    except (AttributeError, OSError):  # no statvfs on Windows
        return False
    return st.f_bavail * st.f_frsize < margin


@contextmanager
def write_guard(final: Path | str, *temps: Path | str) -> Iterator[None]:
    """Turn "disk full / read-only / permission denied / quota" while writing ``final`` into
    :class:`OutputWriteError`, after removing ``temps`` (temporary files or folders).

    Wrap the whole write: creating the folder, writing the temporary and moving it in place.
    Other exceptions, and ``OSError`` about some other file (an unreadable input), pass through
    unchanged; the caller's own cleanup still runs.
    """
    final = Path(final)
    tmp_paths = tuple(Path(t) for t in temps)
    try:
        yield
    except OutputWriteError:
        raise
    except OSError as exc:
        code = exc.errno
        if code is None and _nearly_full(final):  # a short write (numpy: "N requested and M written")
            code = errno.ENOSPC
        problem = WRITE_PROBLEMS.get(code)  # type: ignore[arg-type]
        if problem is None or not _concerns(exc, final, tmp_paths):
            raise
        for tmp in tmp_paths:
            _remove(tmp)
        raise OutputWriteError(final, code, problem) from exc  # type: ignore[arg-type]


def replace_folder(tmp: Path | str, final: Path | str) -> None:
    """Move the finished folder ``tmp`` onto ``final``; a previous ``final`` is removed only
    once the new one is in place (if the move fails, it is put back)."""
    tmp, final = Path(tmp), Path(final)
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    had_old = final.exists()
    if had_old:
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if had_old:
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def temp_path_for(final: Path) -> Path:
    """Hidden sibling of ``final`` that keeps its suffix: ``a/x.csv`` -> ``a/.x.tmp-<pid>.csv``."""
    final = Path(final)
    suffix = final.suffix
    stem = final.name[: -len(suffix)] if suffix else final.name
    return final.with_name(f".{stem}.tmp-{os.getpid()}{suffix}")


@contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success move it onto ``final``.

    The parent folder is created. If the body raises, the temporary file is removed and the
    exception propagates; an existing ``final`` keeps its previous content. A full disk or a
    read-only folder raises :class:`OutputWriteError` naming ``final`` (see :func:`write_guard`).
    """
    final = Path(final)
    tmp = temp_path_for(final)
    try:
        with write_guard(final, tmp):
            final.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)  # never raises: a read-only folder must not hide the error being reported
        raise


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars/arrays, paths, dates, sets; anything else as ``str``."""
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalar or array, torch tensor
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_json(path: Path | str, obj: Any) -> Path:
    """Write ``obj`` as JSON (sorted keys, indent 2, numpy/paths converted) atomically."""
    text = json.dumps(obj, sort_keys=True, indent=2, default=json_default)
    return write_text(path, text + "\n")


def save_csv(df: "pd.DataFrame", path: Path | str, **kwargs: Any) -> Path:
    """Write a DataFrame as CSV atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)
    return path


def save_parquet(df: "pd.DataFrame", path: Path | str, **kwargs: Any) -> Path:
    """Write a DataFrame as Parquet atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, **kwargs)
    return path


def save_npy(path: Path | str, array: "np.ndarray") -> Path:
    """Write ``array`` with ``np.save`` atomically; returns the final path.

    Like ``np.save``, a name without ``.npy`` gets it appended (``x`` -> ``x.npy``). The array is
    written through an open file handle so numpy cannot append ``.npy`` to the temporary name.
    """
    import numpy as np

    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    return path


def save_figure(fig: "Figure", path: Path | str, dpi: int = 150, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format from the suffix, tight bounding box)."""
    path = Path(path)
    kwargs.setdefault("bbox_inches", "tight")
    if path.suffix:
        kwargs.setdefault("format", path.suffix.lstrip(".").lower())
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, **kwargs)
    return path
