"""Atomic file writes: a result file is either complete or absent, never half written.

Notebooks are interrupted (kernel death, Ctrl-C, out of memory) and results are read by later
notebooks and by the report index. Every writer here writes into a temporary file in the same
folder and renames it over the final name with ``os.replace`` (atomic on POSIX and Windows within
one file system). A failed write removes the temporary file and leaves any previous version of
the final file untouched.

The temporary name keeps the final suffix (``x.csv`` -> ``.x.tmp-123.csv``) so writers that
pick a format from the suffix (matplotlib, pandas, numpy) behave as for the final name.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # heavy imports only for type checkers
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
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
    exception propagates; an existing ``final`` keeps its previous content.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
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
