"""Tables and figures of the notebooks, with captions, and one HTML index per profile.

Notebooks save every result through ``save_table`` / ``save_figure``. Besides the file, each call
records the caption and the notebook in a small registry (``_registry.json`` in the tables or
figures folder of the profile, keyed by file name so a rerun replaces its entry).

Every table carries a ``data_source`` column and every caption says where its numbers come from:
``synthetic`` (the generated cohort), ``real`` (the real spine fixture, a site's manifest),
``published`` (values printed in the study) or ``mixed``. A caller may pass ``data_source``;
otherwise a table with a ``dataset`` column is labelled per row from the prepared subjects
(``dataset_sources``) and anything else from the profile as a whole. A caption whose results are
synthetic is prefixed with "Synthetic data." unless it already says "synthetic".
``write_index`` turns both registries into ``tables/<profile>/index.html``, the front page of
the companion (``mskseg_lib.companion``): every result of a run, by notebook, without rerunning.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from mskseg_lib import atomic
from mskseg_lib.config import resolve_path
from mskseg_lib.provenance import utc_now_iso
from mskseg_lib.settings import project_root, relative_to_root

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["REGISTRY_NAME", "DATA_SOURCES", "save_table", "save_figure", "write_index", "relative_paths",
           "read_registry", "dataset_sources", "profile_data_source", "caption_with_source", "show_skipped"]

REGISTRY_NAME = "_registry.json"
DATA_SOURCES = ("synthetic", "real", "published", "mixed")


def _check_name(name: str, suffix: str) -> str:
    """File stem from ``name`` (a trailing ``suffix`` is dropped); no folders allowed."""
    if name.endswith(suffix):
        name = name[: -len(suffix)]
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"invalid result name {name!r}: use a plain file name without folders")
    return name


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise registry updates between processes (no-op where ``fcntl`` is missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: notebooks run one at a time anyway
        yield
        return
    with open(folder / ".registry.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_registry(folder: Path) -> dict[str, dict[str, Any]]:
    """Entries of ``folder/_registry.json`` by file name ({} when absent or unreadable)."""
    path = Path(folder) / REGISTRY_NAME
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _register(folder: Path, file_name: str, entry: Mapping[str, Any]) -> None:
    with _locked(folder):
        registry = read_registry(folder)
        registry[file_name] = dict(entry)
        atomic.write_json(folder / REGISTRY_NAME, registry)


def _combine(sources: set[str]) -> str:
    sources = {s for s in sources if s}
    if not sources:
        return "synthetic"
    return sources.pop() if len(sources) == 1 else "mixed"


def dataset_sources(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Dataset name -> ``synthetic``, ``real`` or ``mixed`` for the profile's data.

    Read from the prepared subjects table (its ``source`` column: ``synthetic`` for the cohort,
    anything else is real data) where it exists; otherwise from the profile: cohort datasets are
    synthetic and nothing else is known.
    """
    from mskseg_lib.data.catalog import select_datasets

    path = (resolve_path(cfg, "data_root") / "prepared" / "subjects.parquet"
            if cfg.get("paths", {}).get("data_root") else None)
    if path is not None and path.exists():
        import pandas as pd

        subjects = pd.read_parquet(path, columns=["dataset", "source"])
        kinds = subjects.assign(kind=subjects["source"].map(lambda s: "synthetic" if s == "synthetic" else "real"))
        return {str(d): _combine(set(g["kind"])) for d, g in kinds.groupby("dataset")}
    if cfg.get("cohort", {}).get("enabled"):
        return {spec.name: "synthetic" for spec in select_datasets(cfg["cohort"]["datasets"])}
    return {}


def profile_data_source(cfg: Mapping[str, Any]) -> str:
    """One label for everything a profile computes: synthetic, real or mixed."""
    kinds = set(dataset_sources(cfg).values())
    if cfg.get("sources"):
        kinds.add("real")
    if not cfg.get("cohort", {}).get("enabled") and not kinds:
        kinds.add("real")
    return _combine(kinds)


def caption_with_source(caption: str, source: str) -> str:
    """``caption`` prefixed with the data source where the reader could mistake it for real data."""
    if source not in DATA_SOURCES:
        raise ValueError(f"data_source must be one of {DATA_SOURCES}, got {source!r}")
    low = caption.lower()
    if source == "synthetic" and "synthetic" not in low:
        return f"Synthetic data. {caption}"
    if source == "mixed" and "synthetic" not in low:
        return f"Synthetic and real data (see the data_source column). {caption}"
    return caption


def _with_source(df: "pd.DataFrame", cfg: Mapping[str, Any], data_source: str | None) -> tuple["pd.DataFrame", str]:
    """``df`` with a ``data_source`` column, and the source of the table as a whole."""
    if "data_source" in df.columns:
        return df, _combine(set(df["data_source"].dropna().astype(str)))
    if data_source is not None:
        if data_source not in DATA_SOURCES:
            raise ValueError(f"data_source must be one of {DATA_SOURCES}, got {data_source!r}")
        return df.assign(data_source=data_source), data_source
    whole = profile_data_source(cfg)
    if "dataset" in df.columns and len(df):
        per_dataset = dataset_sources(cfg)
        col = df["dataset"].map(lambda d: per_dataset.get(str(d), whole))
        return df.assign(data_source=col), _combine(set(col))
    return df.assign(data_source=whole), whole


def relative_paths(df: "pd.DataFrame", root: Path | None = None) -> "pd.DataFrame":
    """``df`` with every text cell that is an absolute path inside ``root`` (default: the project
    root) made relative to it (:func:`mskseg_lib.settings.relative_to_root`).

    Tables must not depend on where the checkout lies (a checkpoint, an output NIfTI of a run
    folder); paths outside the root (a system-wide checkpoint) are kept as given.
    """
    base = Path(root) if root is not None else project_root()
    prefix = os.path.abspath(base).rstrip(os.sep) + os.sep

    def fix(value: Any) -> Any:
        if isinstance(value, PurePath):
            value = str(value)
        if isinstance(value, str) and value.startswith(prefix):
            return relative_to_root(value, base)
        return value

    from pandas.api.types import is_object_dtype, is_string_dtype

    text = [i for i, dtype in enumerate(df.dtypes) if is_object_dtype(dtype) or is_string_dtype(dtype)]
    if not text:
        return df
    out = df.copy()
    for i in text:  # by position: a table may repeat a column name
        out.isetitem(i, out.iloc[:, i].map(fix))
    return out


def save_table(
    df: "pd.DataFrame",
    cfg: Mapping[str, Any],
    name: str,
    caption: str,
    *,
    notebook: str | None = None,
    data_source: str | None = None,
) -> Path:
    """Write ``df`` to ``<tables_dir>/<name>.csv`` and register its caption; returns the path.

    A ``data_source`` column is added unless ``df`` has one (``data_source`` given, or inferred
    per dataset, see the module docstring), and the caption says when the data are synthetic.
    Absolute paths inside the project are written relative to it (:func:`relative_paths`).
    """
    stem = _check_name(name, ".csv")
    folder = resolve_path(cfg, "tables_dir")
    df = relative_paths(df)
    df, source = _with_source(df, cfg, data_source)
    caption = caption_with_source(caption, source)
    path = atomic.save_csv(df, folder / f"{stem}.csv")
    _register(
        folder,
        path.name,
        {
            "kind": "table",
            "name": stem,
            "caption": caption,
            "notebook": notebook,
            "rows": int(len(df)),
            "columns": [str(c) for c in df.columns],
            "data_source": source,
            "updated_utc": utc_now_iso(),
        },
    )
    return path


def save_vector_figure(fig: "Figure", path: Path) -> Path:
    """``fig`` as a PDF with its fonts embedded as TrueType (``pdf.fonttype`` 42) and without a
    creation date (byte-identical reruns); written atomically."""
    import matplotlib

    with matplotlib.rc_context({"pdf.fonttype": 42}):
        return atomic.save_figure(fig, path, metadata={"CreationDate": None})


def save_figure(
    fig: "Figure",
    cfg: Mapping[str, Any],
    name: str,
    caption: str,
    *,
    notebook: str | None = None,
    dpi: int = 150,
    data_source: str | None = None,
    datasets: "Iterable[str] | None" = None,
) -> Path:
    """Write ``fig`` to ``<figures_dir>/<name>.png`` and ``<name>.pdf``, register its caption;
    returns the PNG's path.

    The PDF is the vector version publishers take: TrueType fonts embedded (``pdf.fonttype`` 42,
    no Type 3 bitmap fonts) and no creation date, so the same figure gives the same file. The
    figure stays open so the notebook can still display it. ``data_source`` decides whether
    the caption says "synthetic"; without it, the sources of ``datasets`` (the datasets drawn)
    are combined, and without those the profile's (``profile_data_source``) is used.
    """
    stem = _check_name(name, ".png")
    if data_source is None and datasets is not None:
        per_dataset = dataset_sources(cfg)
        whole = profile_data_source(cfg)
        data_source = _combine({per_dataset.get(str(d), whole) for d in datasets})
    source = data_source or profile_data_source(cfg)
    caption = caption_with_source(caption, source)
    folder = resolve_path(cfg, "figures_dir")
    path = atomic.save_figure(fig, folder / f"{stem}.png", dpi=dpi)
    pdf = save_vector_figure(fig, folder / f"{stem}.pdf")
    _register(
        folder,
        path.name,
        {
            "kind": "figure",
            "name": stem,
            "pdf": pdf.name,
            "caption": caption,
            "notebook": notebook,
            "data_source": source,
            "updated_utc": utc_now_iso(),
        },
    )
    return path


def write_index(cfg: Mapping[str, Any], titles: Mapping[str, str] | None = None) -> Path:
    """Write the companion's front page ``<tables_dir>/index.html`` for the profile ``cfg``.

    Unpacks the profile (folders, name, description, data source) and the two registries, and
    hands them to ``companion.write_index``; returns the page's path.
    """
    from mskseg_lib import companion

    tables_dir = resolve_path(cfg, "tables_dir")
    figures_dir = resolve_path(cfg, "figures_dir")
    return companion.write_index(
        tables_dir, figures_dir, profile=str(cfg.get("profile", "")), description=str(cfg.get("description", "")),
        data_source=profile_data_source(cfg) if cfg.get("paths") else "synthetic",
        tables=read_registry(tables_dir), figures=read_registry(figures_dir), titles=titles)


def show_skipped(*tables: "pd.DataFrame | None") -> None:
    """Show the inputs a stage skipped under a notebook cell: one sentence, then the list if any.

    Parameters
    ----------
    *tables : DataFrame or None
        ``skipped`` tables (``stage, dataset, subject_id, path, problem``; the file and problem
        of each subject left out), as in the stages' ``skipped.csv``, shown as one list. None or
        empty: nothing skipped there.

    Paths are shown relative to the project root (``relative_paths``). Outside IPython the
    sentence and table are printed.
    """
    import pandas as pd

    from mskseg_lib.data.bad_inputs import empty_skipped, skipped_sentence

    parts = [t for t in tables if t is not None and not t.empty]
    skipped = pd.concat(parts, ignore_index=True) if parts else empty_skipped()
    sentence = skipped_sentence(skipped)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # a plain Python session
        print(sentence if skipped.empty else f"{sentence}\n{skipped.to_string(index=False)}")
        return
    display(Markdown(sentence))
    if not skipped.empty:
        display(relative_paths(skipped))
