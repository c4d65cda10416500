"""Progress of a whole run: notebook i of N, elapsed, and an ETA from recorded timings.

A run's ETA comes from the wall times earlier runs of the same profile recorded in their
``manifest.json`` (``<runs_dir>/<stamp>/manifest.json``, the newest successful time of each
notebook), so it needs no model of the work and improves as the profile is run. Before a
profile has run here, its ``expected_minutes`` (the times measured where the profile was sized,
e.g. ``default`` on a 2-core CPU) stand in (:func:`profile_seconds`). A notebook without any
time makes the ETA a lower bound, and the message says so. While a notebook
runs, ``Heartbeat`` repeats the line every ``every_s`` seconds (papermill's own bar counts cells,
and the notebooks show per-slice and per-step bars inside long cells).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["Heartbeat", "eta_seconds", "format_duration", "profile_seconds", "progress_line", "recorded_seconds"]


def recorded_seconds(runs_dir: Path, exclude: Path | None = None) -> dict[str, float]:
    """Notebook stem -> its wall time in the newest earlier run where it finished ``ok``.

    Parameters
    ----------
    runs_dir : the profile's runs folder (holding ``<stamp>/manifest.json``).
    exclude : a run folder to leave out (the run in progress).
    """
    found: dict[str, float] = {}
    for manifest in sorted(Path(runs_dir).glob("*/manifest.json"), reverse=True):  # stamps sort in time
        if exclude is not None and manifest.parent.resolve() == Path(exclude).resolve():
            continue
        try:
            records = json.loads(manifest.read_text()).get("notebooks") or []
        except (OSError, ValueError):
            continue
        for r in records:
            if r.get("status") == "ok" and r.get("seconds") is not None:
                found.setdefault(str(r["notebook"]), float(r["seconds"]))
    return found


def profile_seconds(expected_minutes: Mapping[str, float], notebooks: Sequence[str]) -> dict[str, float]:
    """Notebook stem -> seconds from a profile's ``expected_minutes`` (keys are notebook numbers,
    ``"03"``, or whole stems); the stand-in for a notebook no earlier run here recorded.

    Parameters
    ----------
    expected_minutes : the profile's ``expected_minutes`` mapping (may be empty).
    notebooks : stems of the notebooks of the run (``03_finetune_ablations``).
    """
    out = {}
    for stem in notebooks:
        for key in (stem, stem.split("_", 1)[0]):
            if key in expected_minutes:
                out[stem] = 60.0 * float(expected_minutes[key])
                break
    return out


def eta_seconds(remaining: Sequence[str], recorded: Mapping[str, float], current: str | None = None,
                current_elapsed_s: float = 0.0) -> tuple[float, list[str]]:
    """Seconds left: the current notebook's recorded time minus what it has run (at least 0),
    plus the recorded times of the notebooks after it; and the notebooks without a record."""
    unknown = [nb for nb in ([current] if current else []) + list(remaining) if nb not in recorded]
    left = max(0.0, recorded.get(current, 0.0) - current_elapsed_s) if current else 0.0
    return left + sum(recorded.get(nb, 0.0) for nb in remaining), unknown


def format_duration(seconds: float) -> str:
    """``1h02m``, ``4m05s`` or ``12s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def progress_line(index: int, total: int, notebook: str, run_elapsed_s: float, notebook_elapsed_s: float,
                  remaining: Sequence[str], recorded: Mapping[str, float]) -> str:
    """``[3/7] 03_finetune_ablations: 2m10s in (recorded 9m00s); run 12m40s, ETA 31m05s``."""
    eta, unknown = eta_seconds(remaining, recorded, notebook, notebook_elapsed_s)
    own = f" (recorded {format_duration(recorded[notebook])})" if notebook in recorded else ""
    if unknown and len(unknown) == len(remaining) + 1:
        tail = "ETA unknown: no earlier run of this profile recorded these notebooks"
    elif unknown:
        tail = f"ETA at least {format_duration(eta)} (no recorded time for {', '.join(unknown)})"
    else:
        tail = f"ETA {format_duration(eta)}"
    return (f"[{index}/{total}] {notebook}: {format_duration(notebook_elapsed_s)} in{own}; "
            f"run {format_duration(run_elapsed_s)}, {tail}")


class Heartbeat:
    """Calls ``say(line())`` every ``every_s`` seconds in a daemon thread until stopped."""

    def __init__(self, line: Callable[[], str], say: Callable[[str], None], every_s: float = 60.0):
        self._line, self._say, self._every = line, say, float(every_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._say(self._line())

    def __enter__(self) -> "Heartbeat":
        if self._every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
