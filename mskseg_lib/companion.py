"""The readable companion of a run: executed notebooks as HTML and one front page per profile.

After ``run_all.sh`` a reader should not have to rerun hours of work, or dig executed copies out
of ``runs/``, to see the results. Two things make that possible:

* ``render_notebook`` turns an executed notebook into a self-contained HTML page (figures inline
  as PNG data, no script fetched from the internet), written to
  ``<tables_dir>/notebooks/NN_name.html`` beside a small record of when and how it ran.
* ``write_index`` writes ``<tables_dir>/index.html``, the front page: the profile, whether its
  numbers come from synthetic or real data, then the notebooks in order, each with a link to its
  executed page and every figure and table it saved, with the caption. Figures are referenced
  relative to the page, so the page works opened from disk or served from the project root.

Everything is written under a temporary name and renamed (``mskseg_lib.atomic``), so an
interrupted run never leaves half a page. The functions take explicit folders; ``reporting`` and
``notebook_runner`` unpack the profile.
"""
from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from mskseg_lib import atomic
from mskseg_lib.provenance import utc_now_iso
from mskseg_lib.settings import relative_to_root

__all__ = ["NotebookPage", "NOTEBOOKS_DIRNAME", "INDEX_NAME", "render_notebook", "notebook_title",
           "read_pages", "write_index"]

NOTEBOOKS_DIRNAME = "notebooks"
PAGES_RECORD = "_pages.json"
INDEX_NAME = "index.html"
PREVIEW_ROWS = 8
#: nbconvert template "companion" (the lab template without CDN scripts) lives in this folder
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_NUMBER_RE = re.compile(r"^(\d{2})_")


@dataclass(frozen=True)
class NotebookPage:
    """One rendered notebook of the companion.

    Attributes
    ----------
    stem : str
        File stem of the notebook, e.g. ``"02_zero_shot_baselines"``.
    title : str
        Its first heading, e.g. ``"02 · Zero-shot baselines"``.
    html_name : str
        The page's file name inside ``<tables_dir>/notebooks/``.
    status : str
        ``"ok"`` or ``"failed"`` (a failed notebook is rendered too: the traceback is the story).
    seconds : float or None
        Wall time of the notebook in that run.
    run_dir : str
        The run folder holding the executed ``.ipynb`` and the run's ``manifest.json``.
    rendered_utc : str
        When the page was written (ISO 8601, UTC).
    """

    stem: str
    title: str
    html_name: str
    status: str
    seconds: float | None
    run_dir: str
    rendered_utc: str

    @property
    def number(self) -> str:
        """The two-digit notebook number (``"02"``), or ``""`` for an unnumbered notebook."""
        m = _NUMBER_RE.match(self.stem)
        return m.group(1) if m else ""


def notebook_title(nb: Any, fallback: str) -> str:
    """The text of the first Markdown heading of ``nb`` (an nbformat node), else ``fallback``."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip() or fallback
    return fallback


def render_notebook(executed: Path, tables_dir: Path, *, status: str = "ok", seconds: float | None = None,
                    run_dir: Path | None = None) -> NotebookPage:
    """Render an executed notebook to ``<tables_dir>/notebooks/<stem>.html`` and record it.

    Parameters
    ----------
    executed : Path
        The executed ``.ipynb`` (papermill's output copy, with outputs).
    tables_dir : Path
        The profile's tables folder; the page goes to its ``notebooks/`` subfolder.
    status : str
        ``"ok"`` or ``"failed"``; shown on the front page.
    seconds : float, optional
        Wall time of the notebook, shown on the front page.
    run_dir : Path, optional
        The run folder (default: the folder of ``executed``); recorded relative to the project
        root when inside it.

    Returns
    -------
    NotebookPage
        The record also stored in ``<tables_dir>/notebooks/_pages.json``.
    """
    import nbformat
    from nbconvert import HTMLExporter

    executed = Path(executed)
    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(template_name="companion", extra_template_basedirs=[str(TEMPLATES_DIR)])
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": executed.stem}})
    folder = Path(tables_dir) / NOTEBOOKS_DIRNAME
    html_path = atomic.write_text(folder / f"{executed.stem}.html", body)
    page = NotebookPage(stem=executed.stem, title=notebook_title(nb, executed.stem), html_name=html_path.name,
                        status=status, seconds=None if seconds is None else round(float(seconds), 1),
                        run_dir=relative_to_root(run_dir or executed.parent), rendered_utc=utc_now_iso())
    pages = {p.stem: p for p in read_pages(tables_dir)}
    pages[page.stem] = page
    atomic.write_json(folder / PAGES_RECORD, {k: vars(v) for k, v in sorted(pages.items())})
    return page


def read_pages(tables_dir: Path) -> list[NotebookPage]:
    """The rendered notebooks recorded under ``<tables_dir>/notebooks/``, in notebook order."""
    path = Path(tables_dir) / NOTEBOOKS_DIRNAME / PAGES_RECORD
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    pages = [NotebookPage(**entry) for entry in raw.values() if isinstance(entry, dict)]
    return sorted(pages, key=lambda p: p.stem)


# --------------------------------------------------------------------------------- front page
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; padding: 0 1em; }
section.result { border-top: 1px solid #ddd; padding: 0.5em 0 1em; }
section.notebook { margin-top: 2.5em; }
h2 { border-bottom: 2px solid #444; padding-bottom: 0.2em; }
h3 { margin: 0.3em 0; font-size: 1.05em; } h4 { margin: 1.2em 0 0.3em; color: #444; }
.meta { color: #555; font-size: 0.9em; } .missing, .failed { color: #b00; }
.banner { padding: 0.6em 1em; border-radius: 4px; margin: 1em 0; }
.banner.synthetic { background: #fff4e0; border: 1px solid #e0b060; }
.banner.real { background: #e8f4ea; border: 1px solid #7cb887; }
.banner.mixed { background: #eef0ff; border: 1px solid #8c93d8; }
.source { font-size: 0.8em; padding: 1px 6px; border-radius: 3px; background: #eee; margin-left: 0.5em; }
table.preview { border-collapse: collapse; font-size: 0.85em; }
table.preview th, table.preview td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }
img.figure { max-width: 40em; max-height: 28em; border: 1px solid #eee; }
nav ol { line-height: 1.6; }
"""

_BANNERS = {
    "synthetic": "Every number on this page was regenerated from the <b>synthetic cohort</b>: it checks "
                 "the pipeline end to end and is <b>not</b> the study's result. Published values, where "
                 "shown, are in columns named <code>published_*</code>.",
    "real": "The numbers on this page were computed from <b>real data</b> (see each table's "
            "<code>data_source</code> column).",
    "mixed": "This page mixes results from <b>synthetic and real data</b>: each table says which in its "
             "<code>data_source</code> column and each caption names synthetic results.",
}


def _origin_of(entry: Mapping[str, Any]) -> str:
    return str(entry.get("notebook") or "")


def _source_badge(entry: Mapping[str, Any]) -> str:
    source = entry.get("data_source")
    return f"<span class='source'>{html.escape(str(source))}</span>" if source else ""


def _table_html(path: Path, entry: Mapping[str, Any]) -> str:
    import pandas as pd

    caption = html.escape(str(entry.get("caption", "")))
    head = f"<h3><a href='{html.escape(path.name)}'>{html.escape(path.name)}</a>{_source_badge(entry)}</h3>"
    if not path.exists():
        return f"<section class='result'>{head}<p>{caption}</p><p class='missing'>file missing</p></section>"
    try:
        preview = pd.read_csv(path, nrows=PREVIEW_ROWS)
        rows = entry.get("rows")
        if rows is None:
            rows = len(pd.read_csv(path))
        body = preview.to_html(index=False, border=0, classes="preview", na_rep="")
    except Exception as exc:  # an unreadable table must not break the whole page
        rows, body = "?", f"<p class='missing'>cannot read: {html.escape(str(exc))}</p>"
    return (f"<section class='result'>{head}<p>{caption}</p>"
            f"<p class='meta'>{rows} rows; first {PREVIEW_ROWS} shown</p>{body}</section>")


def _figure_html(path: Path, entry: Mapping[str, Any], index_dir: Path) -> str:
    src = html.escape(Path(os.path.relpath(path, index_dir)).as_posix())
    caption = html.escape(str(entry.get("caption", "")))
    pdf = path.with_name(str(entry["pdf"])) if entry.get("pdf") else None
    vector = ""
    if pdf is not None and pdf.exists():
        vector = f" · <a href='{html.escape(Path(os.path.relpath(pdf, index_dir)).as_posix())}'>PDF</a>"
    head = f"<h3><a href='{src}'>{html.escape(path.name)}</a>{vector}{_source_badge(entry)}</h3>"
    if not path.exists():
        return f"<section class='result'>{head}<p>{caption}</p><p class='missing'>file missing</p></section>"
    return (f"<section class='result'>{head}<p>{caption}</p>"
            f"<a href='{src}'><img class='figure' src='{src}' alt='{html.escape(path.name)}'></a></section>")


def _page_line(page: NotebookPage | None) -> str:
    if page is None:
        return "<p class='meta'>no executed page yet (run it with <code>run_all.sh</code>)</p>"
    state = "ran" if page.status == "ok" else f"<span class='failed'>{html.escape(page.status)}</span>"
    took = f" in {page.seconds:.0f} s" if page.seconds is not None else ""
    link = f"{NOTEBOOKS_DIRNAME}/{page.html_name}"
    return (f"<p class='meta'><a href='{html.escape(link)}'>open the executed notebook</a> · {state}{took}, "
            f"rendered {html.escape(page.rendered_utc)} · run folder <code>{html.escape(page.run_dir)}</code></p>")


def _source_counts(tables: Mapping[str, Mapping[str, Any]], figures: Mapping[str, Mapping[str, Any]]) -> str:
    """``<br>By data source: synthetic 80 tables, 24 figures; real 3 tables`` (empty when none recorded)."""
    counts: dict[str, list[int]] = {}
    for i, entries in enumerate((tables, figures)):
        for entry in entries.values():
            counts.setdefault(str(entry.get("data_source") or "not recorded"), [0, 0])[i] += 1
    if not counts:
        return ""
    parts = [f"{html.escape(src)}: {n_t} tables, {n_f} figures" for src, (n_t, n_f) in sorted(counts.items())]
    return "<br><span class='meta'>By data source: " + "; ".join(parts) + "</span>"


def _overall_source(entries: Iterable[Mapping[str, Any]], fallback: str) -> str:
    sources = {str(e.get("data_source")) for e in entries if e.get("data_source") and e.get("data_source") != "published"}
    if not sources:
        return fallback
    return sources.pop() if len(sources) == 1 else "mixed"


def write_index(tables_dir: Path, figures_dir: Path, *, profile: str, description: str = "",
                data_source: str = "synthetic", tables: Mapping[str, Mapping[str, Any]],
                figures: Mapping[str, Mapping[str, Any]], titles: Mapping[str, str] | None = None) -> Path:
    """Write the companion's front page ``<tables_dir>/index.html``; returns its path.

    Parameters
    ----------
    tables_dir, figures_dir : Path
        Where the profile's tables (CSV) and figures (PNG) are.
    profile : str
        The profile's name, shown in the title.
    description : str
        The profile's one-line description.
    data_source : str
        What the profile computes from when no saved result says (``synthetic``, ``real``, ``mixed``).
    tables, figures : mapping
        Registry entries by file name (``reporting.read_registry``): caption, notebook,
        data_source, rows.
    titles : mapping, optional
        Notebook number -> title, for notebooks that saved results but have no rendered page.

    Returns
    -------
    Path
        ``<tables_dir>/index.html``.
    """
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    pages = {p.number or p.stem: p for p in read_pages(tables_dir)}
    numbers = sorted({*pages, *(_origin_of(e) for e in [*tables.values(), *figures.values()])} - {""})
    source = _overall_source([*tables.values(), *figures.values()], data_source)
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>mskseg companion: {html.escape(profile)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>mskseg companion · profile <code>{html.escape(profile)}</code></h1>",
        f"<p class='meta'>{html.escape(description)}</p>" if description else "",
        f"<div class='banner {source}'>{_BANNERS.get(source, '')}{_source_counts(tables, figures)}</div>",
        f"<p class='meta'>{len(numbers)} notebooks, {len(tables)} tables, {len(figures)} figures; "
        f"page written {utc_now_iso()}</p>",
    ]
    names = {n: (pages[n].title if n in pages else (titles or {}).get(n, f"Notebook {n}")) for n in numbers}
    parts.append("<nav><ol>" + "".join(
        f"<li><a href='#nb{html.escape(n)}'>{html.escape(names[n])}</a></li>" for n in numbers) + "</ol></nav>")
    groups = [(n, names[n]) for n in numbers] + [("", "Other results")]
    for number, title in groups:
        figs = sorted((k, e) for k, e in figures.items() if _origin_of(e) == number)
        tabs = sorted((k, e) for k, e in tables.items() if _origin_of(e) == number)
        if not number and not figs and not tabs:
            continue
        parts.append(f"<section class='notebook' id='nb{html.escape(number)}'><h2>{html.escape(title)}</h2>")
        if number:
            parts.append(_page_line(pages.get(number)))
        if figs:
            parts.append("<h4>Figures</h4>")
            parts += [_figure_html(figures_dir / k, e, tables_dir) for k, e in figs]
        if tabs:
            parts.append("<h4>Tables</h4>")
            parts += [_table_html(tables_dir / k, e) for k, e in tabs]
        parts.append("</section>")
    parts.append("</body></html>")
    return atomic.write_text(tables_dir / INDEX_NAME, "\n".join(p for p in parts if p) + "\n")


def page_paths(tables_dir: Path, pages: Sequence[NotebookPage] | None = None) -> list[Path]:
    """The front page and every rendered notebook page of ``tables_dir``."""
    tables_dir = Path(tables_dir)
    pages = read_pages(tables_dir) if pages is None else pages
    return [tables_dir / INDEX_NAME] + [tables_dir / NOTEBOOKS_DIRNAME / p.html_name for p in pages]
