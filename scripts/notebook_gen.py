"""Shared by ``make_notebook_NN.py``: cell helpers, building a notebook without outputs and with
stable cell ids, and the write / ``--check`` command line."""
from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    return cell


def parameters_cells() -> list[nbformat.NotebookNode]:
    """The papermill parameters cell (profile from ``MSKSEG_PROFILE``, ``params`` injected) and
    the heading of the setup section, as every study notebook starts."""
    return [
        code("""
import os

profile = os.environ.get("MSKSEG_PROFILE", "default")
params = None
""", tags=["parameters"]),
        md("""
## Setup

`params` is the full profile as injected by papermill (or `None` when run interactively).
"""),
    ]


def build(cells: list[nbformat.NotebookNode], id_prefix: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (mskseg)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids: regeneration gives an identical file
        cell["id"] = f"{id_prefix}-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(nb)
    return nb


def render(cells: list[nbformat.NotebookNode], id_prefix: str) -> str:
    return nbformat.writes(build(cells, id_prefix)) + "\n"


def main(target: Path, text: str, n_cells: int, description: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the stored notebook differs from the generated one")
    args = parser.parse_args(argv)
    if args.check:
        same = target.exists() and target.read_text() == text
        print(f"{target.relative_to(ROOT)}: {'up to date' if same else 'out of date'}")
        return 0 if same else 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target.relative_to(ROOT)} ({n_cells} cells)")
    return 0
