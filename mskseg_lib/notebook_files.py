"""The stored notebooks: jupytext pairs, kept without outputs.

Every notebook in ``notebooks/`` is a pair configured by ``jupytext.toml``: ``NN_name.ipynb``
(what Jupyter and papermill open) and ``NN_name.py`` (jupytext percent format, the reviewable
diff). Either may be edited; ``jupytext --sync`` (or saving in the JupyterLab that
``run_lab.sh`` starts) brings the other up to date. The ``.ipynb`` is stored without outputs:
executed copies live in ``runs/`` and the rendered companion in ``tables/<profile>/``.

* ``pair_problems`` says what is wrong with one stored pair (the sync test runs it on each).
* ``strip_outputs`` empties outputs and execution counts of a notebook node.
* ``pre_save_hook`` is the Jupyter ``ContentsManager.pre_save_hook`` that ``run_lab.sh``
  installs, so a notebook saved from JupyterLab can be committed as it is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["PAIR_FORMAT", "pair_problems", "strip_outputs", "pre_save_hook"]

#: the text half of each pair
PAIR_FORMAT = "py:percent"
#: metadata papermill and nbclient add while executing; not part of the stored notebook
_EXECUTION_METADATA = ("execution", "papermill")


def strip_outputs(nb: Any) -> Any:
    """Remove outputs, execution counts and execution metadata from ``nb`` in place; returns it.

    ``nb`` is an nbformat notebook node or the equivalent plain dict (as Jupyter's contents
    API passes it).
    """
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        meta = cell.get("metadata", {})
        for key in _EXECUTION_METADATA:
            meta.pop(key, None)
    for key in _EXECUTION_METADATA:
        nb.get("metadata", {}).pop(key, None)
    return nb


def pre_save_hook(model: dict, path: str = "", contents_manager: Any = None, **kwargs: Any) -> None:
    """Jupyter ``pre_save_hook``: store notebooks without outputs (text files are untouched)."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        strip_outputs(model["content"])


def pair_problems(ipynb: Path) -> list[str]:
    """What is wrong with the stored pair of ``ipynb`` (empty list: in sync and output-free).

    Parameters
    ----------
    ipynb : Path
        ``notebooks/NN_name.ipynb``; its pair is the ``.py`` file of the same stem.

    Returns
    -------
    list of str
        One line per problem, each naming the file and the fix.
    """
    import jupytext
    import nbformat
    from jupytext.compare import compare_notebooks

    ipynb = Path(ipynb)
    text = ipynb.with_suffix(".py")
    problems = []
    if not text.exists():
        return [f"{ipynb}: no paired {text.name}; run `jupytext --sync {ipynb}`"]
    nb = nbformat.read(ipynb, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            problems.append(f"{ipynb}: cell {i} stores outputs; save from ./run_lab.sh or run "
                            f"`jupyter nbconvert --clear-output --inplace {ipynb}`")
            break
    paired = jupytext.read(text, fmt=PAIR_FORMAT)
    try:
        compare_notebooks(paired, nb, fmt=PAIR_FORMAT)
    except Exception as exc:  # jupytext raises NotebookDifference with the first difference
        first = " ".join(str(exc).split())[:300]
        problems.append(f"{ipynb}: differs from {text.name} ({first}); edit one, then run "
                        f"`jupytext --sync {text}`")
    return problems
