"""Kill a stage with SIGKILL at seeded points, restart it until it completes, and compare its
outputs with an uninterrupted run's (used by ``test_kill_resume.py``).

A stage is a command line (``python -m mskseg_lib <stage> --profile <yaml>``) started in its own
process group, so a kill takes its children too (papermill kernels, torchrun ranks). After every
kill, each file under the watched folders that carries a final name (not a hidden
``.<name>.tmp-<pid><suffix>`` temporary) must open completely with the reader its suffix
implies: no partial file is ever visible under its final name.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

#: columns that hold wall times, dates or machine facts: they differ between any two runs
TIMING_WORDS = ("seconds", "minutes", "time", "elapsed", "created", "utc", "hostname", "duration", "per_frame",
                "s_per_", "status_run", "reused")


def is_temporary(path: Path) -> bool:
    """The project's temporaries: hidden names with ``.tmp-`` (``atomic.temp_path_for``) or inside
    a hidden temporary folder (``.dataset.tmp-<pid>``, ``.<name>.tmp-<pid>``)."""
    return any(part.startswith(".") and ".tmp-" in part for part in path.parts)


def _read_nifti(path: Path) -> None:
    import nibabel as nib

    np.asarray(nib.load(str(path)).dataobj)


def _read_npz(path: Path) -> None:
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            z[key]


def _read_safetensors(path: Path) -> None:
    from safetensors.numpy import load_file

    load_file(str(path))


def _read_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im.load()


def _read_yaml(path: Path) -> None:
    import yaml

    yaml.safe_load(path.read_text())


READERS: dict[str, Callable[[Path], object]] = {
    ".csv": lambda p: pd.read_csv(p) if p.stat().st_size else None,
    ".json": lambda p: json.loads(p.read_text()),
    ".ipynb": lambda p: json.loads(p.read_text()),
    ".parquet": pd.read_parquet,
    ".npy": lambda p: np.load(p, allow_pickle=False),
    ".npz": _read_npz,
    ".gz": _read_nifti,
    ".nii": _read_nifti,
    ".safetensors": _read_safetensors,
    ".png": _read_png,
    ".yaml": _read_yaml,
}


def partial_files(folders: Sequence[Path]) -> list[str]:
    """Files under a final name that do not open completely: ``path: error``, or empty."""
    bad = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")) if Path(folder).exists() else []:
            if not path.is_file() or is_temporary(path.relative_to(folder)) or path.suffix not in READERS:
                continue
            if path.suffix == ".gz" and not path.name.endswith(".nii.gz"):
                continue
            try:
                READERS[path.suffix](path)
            except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                bad.append(f"{path}: {type(exc).__name__}: {exc}"[:300])
    return bad


@dataclass
class KillReport:
    """What happened: kill times tried, how many landed before the stage finished, restarts."""

    kill_after_s: list[float]
    killed: int = 0
    finished_early: int = 0
    restarts: int = 0
    partial: list[str] = field(default_factory=list)


def run_stage(cmd: Sequence[str], env: dict[str, str], cwd: Path, timeout_s: float) -> float:
    """Run a stage to completion; its wall seconds. Raises with its output when it fails."""
    t0 = time.perf_counter()
    done = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def kill_and_resume(cmd: Sequence[str], env: dict[str, str], cwd: Path, watched: Sequence[Path],
                    kill_after_s: Sequence[float], timeout_s: float = 600) -> KillReport:
    """Start ``cmd``, SIGKILL its process group after each of ``kill_after_s`` seconds (one start
    per kill), check ``watched`` for partial files after each kill, then run it to completion."""
    report = KillReport([round(float(t), 2) for t in kill_after_s])
    for delay in kill_after_s:
        proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=delay)
            report.finished_early += 1  # the stage ended before the kill: nothing left to interrupt
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            report.killed += 1
        report.restarts += 1
        report.partial += partial_files(watched)
    run_stage(cmd, env, cwd, timeout_s)
    return report


def seeded_kill_points(seed: int, reference_s: float, n: int) -> list[float]:
    """``n`` kill delays spread over the stage: one in each of ``n`` equal slices of 10-90 % of
    the uninterrupted run's wall time, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(0.1, 0.9, n + 1)
    return [float(reference_s * rng.uniform(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def _timing(column: str) -> bool:
    c = column.lower()
    return c.endswith("_s") or any(w in c for w in TIMING_WORDS)  # "_s" only as a unit suffix, never "_slice"


#: logs of what one start did (a resumed start reports reused volumes as "skipped (done)"), not results
RUN_LOGS = {"autolabel_report.csv"}
#: float tolerance: a finetune resumed from its checkpoint repeats the killed epoch with float32 sums in
#: another order, so its losses agree to about 1e-7 relative, not bit for bit
RTOL = 1e-6


def table_differences(ref_root: Path, other_root: Path, pattern: str = "**/*.csv") -> list[str]:
    """CSV (or parquet) files under two roots compared by value (timing columns left out, the roots' own paths
    written as ``<root>``): ``file: what differs`` per difference, empty when equal."""
    diffs = []
    ref_files = {p.relative_to(ref_root) for p in ref_root.glob(pattern) if not is_temporary(p.relative_to(ref_root))}
    other_files = {p.relative_to(other_root) for p in other_root.glob(pattern)
                   if not is_temporary(p.relative_to(other_root))}
    ref_files = {p for p in ref_files if p.name not in RUN_LOGS}
    other_files = {p for p in other_files if p.name not in RUN_LOGS}
    for missing in sorted(ref_files ^ other_files):
        diffs.append(f"{missing}: only in {'the reference' if missing in ref_files else 'the resumed run'}")
    for rel in sorted(ref_files & other_files):
        a, b = (_read_for_compare(root / rel, root) for root in (ref_root, other_root))
        cols = [c for c in a.columns if not _timing(c)]
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            diffs.append(f"{rel}: shape {a.shape} vs {b.shape}")
            continue
        try:
            pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False, check_exact=False, rtol=RTOL, atol=1e-12)
        except AssertionError as exc:
            diffs.append(f"{rel}: {str(exc)[:400]}")
    return diffs


def _read_for_compare(path: Path, root: Path) -> pd.DataFrame:
    if not path.stat().st_size:
        return pd.DataFrame()
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    for col in frame.select_dtypes(include="object").columns:
        frame[col] = frame[col].astype(str).str.replace(str(root), "<root>", regex=False)
    return frame


def nifti_differences(ref_root: Path, other_root: Path) -> list[str]:
    """NIfTI arrays under two roots, compared exactly."""
    import nibabel as nib

    diffs = []
    ref = {p.relative_to(ref_root) for p in ref_root.rglob("*.nii.gz") if not is_temporary(p.relative_to(ref_root))}
    other = {p.relative_to(other_root) for p in other_root.rglob("*.nii.gz")
             if not is_temporary(p.relative_to(other_root))}
    diffs += [f"{m}: only in one run" for m in sorted(ref ^ other)]
    for rel in sorted(ref & other):
        a, b = (np.asarray(nib.load(str(root / rel)).dataobj) for root in (ref_root, other_root))
        if a.shape != b.shape or not np.array_equal(a, b):
            diffs.append(f"{rel}: arrays differ")
    return diffs


def stage_command(stage: str, profile_yaml: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mskseg_lib", stage, "--profile", str(profile_yaml), *extra]
