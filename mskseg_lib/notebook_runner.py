"""Execute the numbered notebooks with papermill: the engine behind ``run_all.sh``.

One run = one folder ``<runs_dir>/<UTC YYYYmmdd-HHMMSS>/`` holding the executed copy of every
notebook and a ``manifest.json`` (provenance, per-notebook status and wall time). The manifest is
rewritten after every notebook, so an interrupted or failed run still says what ran. A failing
notebook stops the run with ``NotebookFailed``, which names the executed copy to open.

After each notebook (failed ones too) its executed copy is rendered to HTML in
``<tables_dir>/notebooks/`` and the front page ``<tables_dir>/index.html`` is rewritten
(``mskseg_lib.companion``), so the companion is readable even while a long run goes on.

Kernels run the project's own interpreter: ``ensure_kernelspec`` writes a ``python3`` kernel spec
pointing at ``sys.executable`` into the project-local Jupyter data folder (see ``settings``), which
Jupyter searches before any system-wide spec.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from mskseg_lib import atomic, companion, ledger, provenance, reporting, run_lock, run_progress
from mskseg_lib.config import profile_path, resolve_path
from mskseg_lib.errors import UserError
from mskseg_lib.from_profile import load_profile
from mskseg_lib.settings import PROJECT_ROOT, configure_environment, project_root

__all__ = [
    "KERNEL_NAME",
    "NotebookFailed",
    "NotebookSelectionError",
    "default_notebooks_dir",
    "discover_notebooks",
    "ensure_kernelspec",
    "run_notebooks",
]

KERNEL_NAME = "python3"
NOTEBOOK_RE = re.compile(r"^(\d{2})_.+\.ipynb$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookSelectionError(UserError, ValueError):
    """``--only`` names a notebook number that does not exist, or there are no notebooks."""


class NotebookFailed(RuntimeError):
    """A notebook raised; ``output_path`` is its executed copy with the traceback in it."""

    def __init__(self, notebook_name: str, output_path: Path, cause: BaseException | str) -> None:
        self.notebook_name = notebook_name
        self.output_path = Path(output_path)
        self.cause = cause
        super().__init__(
            f"notebook {notebook_name} failed: {_describe(cause)}; "
            f"open the executed copy: {self.output_path}"
        )


def _describe(cause: BaseException | str) -> str:
    """Short one-line description of a (papermill) exception."""
    if isinstance(cause, str):
        text = cause
    elif getattr(cause, "ename", None):  # papermill.PapermillExecutionError
        text = f"{cause.ename}: {getattr(cause, 'evalue', '')}"
        count = getattr(cause, "exec_count", None)
        if count is not None:
            text += f" (cell [{count}])"
    else:
        text = f"{type(cause).__name__}: {cause}"
    text = _ANSI_RE.sub("", text).strip()
    return " ".join(text.split())[:500]


def default_notebooks_dir() -> Path:
    """``<project>/notebooks``."""
    return project_root() / "notebooks"


def _normalise_number(item: str) -> str:
    item = item.strip()
    return item.zfill(2) if item.isdigit() and len(item) < 2 else item


def discover_notebooks(
    only: Sequence[str] | str | None = None, notebooks_dir: Path | None = None
) -> list[Path]:
    """Notebooks ``NN_*.ipynb`` sorted by number; ``only`` keeps the given numbers (``"01,03"`` ok).

    Raises ``NotebookSelectionError`` for a number that does not exist, listing those that do.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    found = sorted(
        (p for p in folder.glob("*.ipynb") if NOTEBOOK_RE.match(p.name)),
        key=lambda p: (NOTEBOOK_RE.match(p.name).group(1), p.name),  # type: ignore[union-attr]
    )
    if only is None:
        return found
    if isinstance(only, str):
        only = only.split(",")
    wanted = [_normalise_number(x) for x in only if x.strip()]
    by_number: dict[str, list[Path]] = {}
    for p in found:
        by_number.setdefault(p.name[:2], []).append(p)
    unknown = [w for w in wanted if w not in by_number]
    if unknown:
        have = ", ".join(p.stem for p in found) or "none"
        raise NotebookSelectionError(
            f"no notebook numbered {', '.join(unknown)} in {folder} (available: {have})"
        )
    return [p for p in found if p.name[:2] in set(wanted)]


def ensure_kernelspec(python: str | None = None) -> Path:
    """Make sure a ``python3`` kernel spec running ``python`` (default: this interpreter) exists
    in the project-local Jupyter data folder; returns the spec folder. Rewritten only on change."""
    configure_environment()
    data_dir = Path(os.environ["JUPYTER_DATA_DIR"])
    spec_dir = data_dir / "kernels" / KERNEL_NAME
    spec = {
        "argv": [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (mskseg)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    path = spec_dir / "kernel.json"
    try:
        current = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        current = None
    if current != spec:
        atomic.write_json(path, spec)
    return spec_dir


@contextmanager
def _kernel_environment(profile: str, ledger_path: Path) -> Iterator[None]:
    """Environment the kernels inherit: the profile, the run's encoder ledger, and the project
    importable from notebooks/ (``MSKSEG_NOTEBOOK`` is set per notebook by the caller)."""
    saved = {k: os.environ.get(k) for k in ("MSKSEG_PROFILE", "PYTHONPATH", ledger.LEDGER_ENV, ledger.NOTEBOOK_ENV)}
    os.environ["MSKSEG_PROFILE"] = profile
    os.environ[ledger.LEDGER_ENV] = str(ledger_path)
    parts = [str(PROJECT_ROOT)] + [p for p in (saved["PYTHONPATH"] or "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _new_run_dir(runs_dir: Path) -> Path:
    """``runs_dir/<UTC timestamp>``; a suffix ``-2``, ``-3``... when that second is taken."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    runs_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = runs_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run folder under {runs_dir}")


def _floor(cfg: Mapping[str, Any], ledger_path: Path) -> dict[str, Any] | None:
    """The run's compute floor per notebook (``workload.ledger_floor``) priced with the profile's
    measured unit costs (``<runs_dir>/bench/unit_costs.csv``); None when they were never measured."""
    from mskseg_lib.workload import UNIT_COSTS_CSV, ledger_floor, read_costs

    path = resolve_path(cfg, "runs_dir") / "bench" / UNIT_COSTS_CSV
    if not path.is_file():
        return None
    try:
        return {"unit_costs": str(path), "notebooks": ledger_floor(ledger_path, read_costs(path))}
    except (OSError, ValueError) as exc:  # the run goes on; the manifest says why there is no floor
        return {"unit_costs": str(path), "error": str(exc)}


def _log(message: str) -> None:
    print(message, flush=True)


def notebook_titles(notebooks: Sequence[Path]) -> dict[str, str]:
    """Notebook number -> the first heading of the stored notebook (for the companion's front page)."""
    import nbformat

    titles = {}
    for nb in notebooks:
        try:
            titles[nb.name[:2]] = companion.notebook_title(nbformat.read(nb, as_version=4), nb.stem)
        except Exception:  # an unreadable notebook fails later, with its own message
            titles[nb.name[:2]] = nb.stem
    return titles


def _publish(output: Path, cfg: Mapping[str, Any], record: Mapping[str, Any], titles: Mapping[str, str],
             log: Callable[[str], None]) -> None:
    """Render the executed copy to the companion and refresh the front page; never fails the run."""
    try:
        companion.render_notebook(output, resolve_path(cfg, "tables_dir"), status=str(record["status"]),
                                  seconds=record.get("seconds"), run_dir=output.parent)
        reporting.write_index(cfg, titles)
    except Exception as exc:  # the results are written; a page that cannot be drawn is reported
        log(f"    could not render {output.name} to HTML: {_describe(exc)}")


def run_notebooks(
    profile: str,
    only: Sequence[str] | str | None = None,
    *,
    notebooks_dir: Path | None = None,
    kernel_name: str = KERNEL_NAME,
    progress_bar: bool = True,
    log: Callable[[str], None] = _log,
    heartbeat_s: float = 60.0,
) -> Path:
    """Execute the notebooks of ``profile`` (a name in ``params/`` or a YAML path) in order.

    Returns the run folder. Raises ``ProfileError`` before anything runs when the profile is
    invalid, ``NotebookSelectionError`` for a bad ``only``, ``RunLocked`` when another command is
    writing the profile's runs folder (its kernels inherit this run's lock, :mod:`.run_lock`),
    and ``NotebookFailed`` when a notebook raises (the manifest then marks it failed and the
    later ones not run). Before each notebook and every ``heartbeat_s`` seconds while it runs
    (0: never), ``log`` gets the run's progress: notebook i of N, elapsed, and an ETA from the
    profile's earlier runs (``run_progress``).
    """
    import papermill as pm  # heavy; only needed here

    cfg = load_profile(profile, check_lock=False)  # the lock is taken below
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    notebooks = discover_notebooks(only, folder)
    if not notebooks:
        raise NotebookSelectionError(f"no notebooks matching NN_*.ipynb in {folder}")
    titles = notebook_titles(discover_notebooks(None, folder))

    selected = (only if isinstance(only, str) else ",".join(only)) if only else ""
    command = f"mskseg run --profile {profile}" + (f" --only {selected}" if selected else "")
    with run_lock.hold(resolve_path(cfg, "runs_dir"), command):  # one run per profile; kernels run under it
        if kernel_name == KERNEL_NAME:
            ensure_kernelspec()
        run_dir = _new_run_dir(resolve_path(cfg, "runs_dir"))
        manifest_path = run_dir / "manifest.json"
        ledger_path = run_dir / "encoder_ledger.jsonl"
        timings: dict[str, float] = {}
        records: list[dict[str, Any]] = [
            {"notebook": nb.stem, "status": "pending", "seconds": None, "output": str(run_dir / nb.name)}
            for nb in notebooks
        ]
        started = time.perf_counter()

        def write(status: str, error: str | None = None) -> None:
            provenance.write_manifest(
                manifest_path,
                profile=str(cfg["profile"]),
                seed=cfg.get("seed"),
                config=cfg,
                timings=timings,
                extra={
                    "status": status,
                    "error": error,
                    "profile_source": str(profile_path(profile).resolve()),
                    "run_dir": str(run_dir),
                    "notebooks_dir": str(folder.resolve()),
                    "only": list(only.split(",")) if isinstance(only, str) else (list(only) if only else None),
                    "notebooks": records,
                    "total_seconds": round(time.perf_counter() - started, 3),
                    # per notebook and model: slices encoded and unique slices; run: their ratio
                    "encoders": ledger.summarise(ledger_path),
                    # compute floor per notebook from the ledger and `mskseg bench units` (when measured)
                    "floor_s": _floor(cfg, ledger_path),
                },
            )

        write("running")
        here = run_progress.recorded_seconds(resolve_path(cfg, "runs_dir"), exclude=run_dir)
        stems = [nb.stem for nb in notebooks]
        # before this profile has run here: the times it was sized by (its expected_minutes)
        recorded = {**run_progress.profile_seconds(cfg.get("expected_minutes") or {}, stems), **here}
        origin = ("from earlier runs" if all(s in here for s in stems) else
                  "from the profile's expected_minutes" if not any(s in here for s in stems) else
                  "from earlier runs and the profile's expected_minutes")
        total = len(notebooks)
        eta, unknown = run_progress.eta_seconds(stems, recorded)
        expected = (f"expected {run_progress.format_duration(eta)} {origin}" if not unknown else
                    f"no recorded time yet for {len(unknown)} of them" if len(unknown) < total else "no earlier run recorded")
        log(f"run {cfg['profile']}: {total} notebook(s) -> {run_dir} ({expected})")
        with _kernel_environment(str(profile), ledger_path):
            for i, (nb, record) in enumerate(zip(notebooks, records), start=1):
                output = run_dir / nb.name
                prefix = f"[{i}/{total}] {nb.stem}"
                nb_started = time.perf_counter()
                remaining = [later.stem for later in notebooks[i:]]

                def line(nb: Path = nb, i: int = i, nb_started: float = nb_started, remaining: list = remaining) -> str:
                    now = time.perf_counter()
                    return run_progress.progress_line(i, total, nb.stem, now - started, now - nb_started, remaining,
                                                      recorded)

                log(line())
                os.environ[ledger.NOTEBOOK_ENV] = nb.stem
                record["status"] = "running"
                write("running")
                # papermill rewrites its output after every cell: it works on a temporary name, and
                # the executed copy appears under its final name only whole (done or failed)
                partial = atomic.temp_path_for(output)
                try:
                    with provenance.timed(timings, nb.stem), run_progress.Heartbeat(line, log, heartbeat_s):
                        try:
                            pm.execute_notebook(
                                str(nb),
                                str(partial),
                                parameters={"profile": str(profile), "params": cfg},
                                kernel_name=kernel_name,
                                progress_bar=progress_bar,
                                cwd=str(folder),
                            )
                        finally:
                            if partial.exists():
                                os.replace(partial, output)
                except BaseException as exc:
                    interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
                    record["status"] = "interrupted" if interrupted else "failed"
                    record["seconds"] = timings.get(nb.stem)
                    for later in records[i:]:
                        later["status"] = "not run"
                    error = _describe(exc)
                    write(record["status"], f"{nb.stem}: {error}")
                    if not interrupted and output.exists():
                        _publish(output, cfg, record, titles, log)
                    log(f"{prefix} ... {record['status'].upper()} after {record['seconds']:.1f} s: {error}")
                    if interrupted:
                        raise
                    raise NotebookFailed(nb.stem, output, exc) from exc
                record["status"] = "ok"
                record["seconds"] = timings[nb.stem]
                write("running" if i < total else "ok")
                log(f"{prefix} ... done in {timings[nb.stem]:.1f} s")
                _publish(output, cfg, record, titles, log)

        index = reporting.write_index(cfg, titles)
        write("ok")
        log(f"all {total} notebook(s) done in {time.perf_counter() - started:.1f} s; "
            f"manifest {manifest_path}; results index {index}")
        return run_dir
