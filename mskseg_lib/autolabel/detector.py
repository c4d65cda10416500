"""Train, load, run and score ultralytics detectors (YOLO, RT-DETR) on the per-dataset YOLO export.

AutoLabel needs one box detector per dataset: its boxes prompt the segmenter. The detector is
trained from scratch (the model YAML, never a downloaded ``.pt``) on the export written by
:mod:`mskseg_lib.data.yolo_export`, validated on the export's *val* split only, and cached: a
second call with the same settings and export reuses ``best.pt``.

Settings are a :class:`DetectorSettings` (the study's values by default); folders are given
explicitly: the prepared data (``<prepared_dir>/yolo/<dataset>.yaml``) and the folder holding every
dataset's detector (``detectors_dir``, the profile's ``<runs_dir>/autolabel/detectors``).
Everything ultralytics writes lands under ``<detectors_dir>/<dataset>/``:

* ``data/``: the YAML ultralytics trains on and a mirror of the export made of symbolic links
  (file copies where links are not possible). ultralytics writes its label caches
  (``labels/<split>.cache``) next to the label files; the mirror keeps them out of the export.
* ``<model>/``: the ultralytics run (``args.yaml``, ``results.csv``, ``weights/best.pt``) and
  ``weights/detector_run.json``: the fingerprint of settings + export that decides reuse, and the
  run record (settings, seed, package versions, seconds).
* ``<model>/eval_<split>/``: what :func:`evaluate_detector` leaves.

ultralytics is kept offline by :mod:`mskseg_lib.settings`, which must run before ultralytics is
imported; this module imports ultralytics lazily, after it. Two more guards apply around every
ultralytics call here: on CUDA its AMP self-check (which downloads ``yolo26n.pt``) is replaced by
a check that downloads nothing, and the process-wide torch state ultralytics changes (thread count,
deterministic algorithms) is restored afterwards.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd
import yaml

from mskseg_lib.settings import configure_environment

configure_environment()  # before any ultralytics import: project-local config dir, offline

from mskseg_lib.atomic import replace_folder, write_guard, write_json, write_text  # noqa: E402
from mskseg_lib.data.errors import DataError  # noqa: E402
from mskseg_lib.errors import UserError  # noqa: E402
from mskseg_lib.provenance import fingerprint  # noqa: E402

__all__ = [
    "KNOWN_FAMILIES",
    "RUN_RECORD",
    "STUDY_AUGMENT",
    "DetectorError",
    "DetectorRun",
    "DetectorSettings",
    "Detections",
    "UltralyticsDetector",
    "build_model",
    "detector_dir",
    "evaluate_detector",
    "export_yaml_path",
    "load_detector",
    "train_detector",
    "trained_detector",
    "training_data_yaml",
    "validate_augment",
]

KNOWN_FAMILIES = ("yolov3", "yolov5", "yolov6", "yolov8", "yolov9", "yolov10", "yolo11", "yolo12", "yolo26", "rtdetr")
RUN_RECORD = "detector_run.json"
SPLITS = ("train", "val", "test")
_IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}
# Arguments train_detector sets itself; the augment mapping may not override them.
_RESERVED_TRAIN_ARGS = {
    "data", "imgsz", "epochs", "batch", "patience", "workers", "seed", "deterministic", "device", "project",
    "name", "exist_ok", "plots", "amp", "verbose", "val", "pretrained", "model", "task", "mode", "resume", "split",
    "nbs", "optimizer", "lr0",
}
# Files ultralytics drops in the current directory when a path or weight name goes astray.
_STRAY_NAMES = {"runs", "weights", "datasets"}
_STRAY_SUFFIXES = {".pt", ".ttf"}
#: the study's augmentation for grey-level MRI: brightness, small rotations, shifts and zooms,
#: mosaic; no hue/saturation (grey images) and no flips (laterality and anterior/posterior
#: position are part of what a label is)
STUDY_AUGMENT: dict[str, float] = {
    "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.3, "degrees": 5.0, "translate": 0.1, "scale": 0.3, "shear": 0.0,
    "fliplr": 0.0, "flipud": 0.0, "mosaic": 1.0, "mixup": 0.0, "close_mosaic": 10,
}


class DetectorError(UserError, ValueError):
    """A detector setting is wrong (unknown model name, unknown or reserved augmentation key)."""


@dataclass(frozen=True)
class DetectorSettings:
    """How a dataset's detector is trained and run; the defaults are the study's (``paper``).

    ``image_size_px`` must be the YOLO export's image size (``prepare.yolo_image_size_px``):
    the detector trains on, and at inference sees, slices resized to it. ``conf`` and ``iou``
    are the score and NMS IoU thresholds (0-1) at inference, ``max_det`` the most boxes per
    slice. ``augment`` holds ultralytics augmentation settings, given to the trainer as they
    are (see :func:`validate_augment`).

    ``nominal_batch_size`` is ultralytics' ``nbs``: gradients of ``nbs / batch_size`` batches
    are accumulated into one optimizer step (its default 64). On a few dozen training images an
    epoch is a handful of batches, so a small ``nbs`` (equal to ``batch_size``) gives the
    optimizer one step per batch instead of one per epoch. ``max_train_images`` (0: all) trains
    on that many training images spread evenly over the sorted export (subjects and slices), a
    count trim for CPU profiles; ``max_val_images`` (0: all) does the same for the validation
    images the trainer scores after every epoch to keep the best weights (that pass costs about
    as much per image as a training step on CPU). Test images are never trimmed. ``optimizer``
    and ``lr0`` are ultralytics' (``auto`` picks the optimizer and its learning rate itself and
    ignores ``lr0``).
    """

    model: str = "yolov8s"
    image_size_px: int = 1024
    epochs: int = 300
    batch_size: int = 16
    patience: int = 50
    workers: int = 0
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 50
    augment: Mapping[str, Any] = field(default_factory=lambda: dict(STUDY_AUGMENT))
    nominal_batch_size: int = 64
    max_train_images: int = 0
    max_val_images: int = 0
    optimizer: str = "auto"
    lr0: float = 0.01

    def as_record(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (the layout of the profile's ``autolabel.detector``)."""
        return {**dataclasses.asdict(self), "augment": dict(self.augment)}

    def inference(self) -> dict[str, Any]:
        """What shapes the boxes at inference: ``conf``, ``iou``, ``max_det``."""
        return {"conf": self.conf, "iou": self.iou, "max_det": self.max_det}


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def build_model(name: str, n_classes: int | None = None) -> Any:
    """An untrained ultralytics model built from its YAML (``yolov8n`` -> ``yolov8n.yaml``).

    Never loads a ``.pt``: the study trains detectors from scratch and must not download weights.
    ``n_classes`` sets the head's class count for stand-alone use; training rebuilds the head
    from the data YAML anyway (ultralytics ``get_model(cfg, nc=data["nc"])``).
    """
    name = str(name).strip()
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if stem.endswith(".pt") or not any(stem.startswith(f) for f in KNOWN_FAMILIES):
        raise DetectorError(
            f"unknown detector model {name!r}: give an ultralytics model YAML name of the families "
            f"{', '.join(KNOWN_FAMILIES)} (e.g. yolov8n, yolo11s, rtdetr-l); .pt weights are not accepted"
        )
    from ultralytics import RTDETR, YOLO

    cls = RTDETR if stem.startswith("rtdetr") else YOLO
    try:
        model = cls(f"{stem}.yaml")
    except FileNotFoundError as exc:
        raise DetectorError(f"unknown detector model {name!r}: ultralytics has no {stem}.yaml ({exc})") from None
    if n_classes is not None and int(n_classes) != int(model.model.yaml.get("nc", -1)):
        inner = model.model
        rebuilt = type(inner)(cfg={**inner.yaml, "nc": int(n_classes)}, nc=int(n_classes), verbose=False)
        rebuilt.args, rebuilt.task = getattr(inner, "args", {}), getattr(inner, "task", model.task)
        model.model = rebuilt
    return model


def _device_arg(device: Any) -> str | int:
    """ultralytics' device argument (``"cpu"`` or a CUDA index) from a setting ("auto", "cpu",
    "cuda:0"), a torch device or a CUDA index."""
    import torch

    from mskseg_lib.models.interface import pick_device

    if isinstance(device, int):
        return device
    dev = device if isinstance(device, torch.device) else pick_device(str(device or "auto"))
    if dev.type == "cuda":
        return dev.index or 0
    return dev.type  # "cpu" (or "mps")


def _is_cuda(device: str | int) -> bool:
    return not isinstance(device, str) or device.startswith("cuda")


@contextlib.contextmanager
def _ultralytics_guard(cuda: bool) -> Iterator[None]:
    """Undo ultralytics' process-wide side effects; on CUDA, an AMP check that downloads nothing.

    ultralytics sets ``torch.set_num_threads(min(8, cpu_count - 1))`` on every CPU call (one
    thread on a two-core machine) and switches deterministic algorithms off after training, for
    the whole process. Its AMP self-check loads ``yolo26n.pt`` (a download on first use); here
    it is replaced by "AMP on CUDA", the outcome of the check on any GPU it does not blacklist.
    """
    import torch

    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    patched = None
    if cuda:
        import ultralytics.engine.trainer as trainer_mod
        from ultralytics.utils import WEIGHTS_DIR

        original = trainer_mod.check_amp
        if not (WEIGHTS_DIR / "yolo26n.pt").is_file():
            patched = (trainer_mod, original)
            trainer_mod.check_amp = lambda model: next(model.parameters()).device.type == "cuda"
    try:
        yield
    finally:
        if patched is not None:
            patched[0].check_amp = patched[1]
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def _stray_entries(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir() if p.name in _STRAY_NAMES or p.suffix in _STRAY_SUFFIXES}
    except OSError:
        return set()


def _warn_new_strays(before: set[str], folder: Path) -> None:
    new = _stray_entries(folder) - before
    if new:
        warnings.warn(
            f"ultralytics wrote {sorted(new)} in the current directory {folder} (expected everything "
            "under the project's runs_dir)",
            RuntimeWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def export_yaml_path(prepared_dir: Path, dataset: str) -> Path:
    """``<prepared_dir>/yolo/<dataset>.yaml`` as written by ``prepare``."""
    return Path(prepared_dir) / "yolo" / f"{dataset}.yaml"


def detector_dir(detectors_dir: Path, dataset: str) -> Path:
    """``<detectors_dir>/<dataset>``: every detector file of one dataset."""
    return Path(detectors_dir) / dataset


@dataclass(frozen=True)
class _Export:
    """One dataset's YOLO export: image/label pairs per split, class names, content digest."""

    yaml_path: Path
    names: dict[int, str]
    files: dict[str, list[tuple[Path, Path | None]]]
    digest: str


def _label_path(image: Path) -> Path:
    """ultralytics' rule: the last ``/images/`` of the image path becomes ``/labels/``, suffix ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1))).with_suffix(".txt")


def _scan_export(export_yaml: Path) -> _Export:
    """Read the export YAML and list its images; the digest covers names, sizes and label text.

    Image files enter the digest by name and size (cheap); label files by content, because a moved
    box keeps the size of its line.
    """
    export_yaml = Path(export_yaml)
    if not export_yaml.is_file():
        raise DataError(export_yaml, "YOLO export not found (run prepare with prepare.yolo_export: true)")
    meta = yaml.safe_load(export_yaml.read_text()) or {}
    missing = [k for k in ("train", "val", "names") if k not in meta]
    if missing:
        raise DataError(export_yaml, f"YOLO export YAML lacks {missing}")
    root = Path(meta.get("path") or export_yaml.with_suffix(""))
    if not root.is_absolute():
        root = export_yaml.parent / root
    names = {int(k): str(v) for k, v in (meta["names"].items() if isinstance(meta["names"], dict)
                                         else enumerate(meta["names"]))}
    h = hashlib.sha256(json.dumps(names, sort_keys=True).encode())
    files: dict[str, list[tuple[Path, Path | None]]] = {}
    for split in SPLITS:
        pairs: list[tuple[Path, Path | None]] = []
        if meta.get(split):
            img_dir = Path(meta[split]) if Path(meta[split]).is_absolute() else root / meta[split]
            images = sorted(p for p in img_dir.glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES) \
                if img_dir.is_dir() else []
            for img in images:
                lab: Path | None = _label_path(img)
                lab = lab if lab.is_file() else None
                pairs.append((img, lab))
                h.update(f"{split}/{img.name}:{img.stat().st_size}\n".encode())
                if lab is not None:
                    h.update(f"{split}/{lab.name}:".encode() + hashlib.sha256(lab.read_bytes()).digest())
        files[split] = pairs
    if not files["train"]:
        raise DataError(export_yaml, "the train split has no images")
    if not files["val"]:
        raise DataError(
            export_yaml, "the val split has no images; detectors are validated on the validation split "
            "only (never on the training images), so the export needs validation subjects"
        )
    return _Export(export_yaml, names, files, h.hexdigest()[:20])


def _even_spread(pairs: list, at_most: int) -> list:
    """At most ``at_most`` items of ``pairs``, spread evenly through the list (0: all)."""
    if at_most <= 0 or len(pairs) <= at_most:
        return pairs
    keep = np.unique(np.round(np.linspace(0, len(pairs) - 1, at_most)).astype(int))
    return [pairs[i] for i in keep]


def _capped(export: _Export, max_train_images: int, max_val_images: int = 0) -> _Export:
    """The export with at most ``max_train_images`` training and ``max_val_images`` validation
    images, each spread evenly through its sorted list (so every subject and the whole slice range
    stay represented); 0 keeps all, and the test split is never cut. The digest names each cap in
    force, so a capped mirror and trained weights are never taken for full ones."""
    caps = {"train": int(max_train_images), "val": int(max_val_images)}
    files = {**export.files, **{split: _even_spread(export.files[split], n) for split, n in caps.items()}}
    cut = [f"{split}<={n}" for split, n in caps.items() if len(files[split]) < len(export.files[split])]
    if not cut:
        return export
    digest = hashlib.sha256(":".join([export.digest, *cut]).encode()).hexdigest()[:20]
    return dataclasses.replace(export, files=files, digest=digest)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # no symlink rights (e.g. Windows without developer mode)
        shutil.copy2(src, dst)


def _write_training_data(export: _Export, out_dir: Path) -> Path:
    """Mirror the export under ``out_dir/dataset`` (rebuilt only when its digest changes) + YAML."""
    out_dir = Path(out_dir)
    mirror = out_dir / "dataset"
    stamp = mirror / ".export-digest"
    if not (stamp.is_file() and stamp.read_text().strip() == export.digest):
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".dataset.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with write_guard(mirror, tmp):
                for split, pairs in export.files.items():
                    (tmp / "images" / split).mkdir(parents=True)
                    (tmp / "labels" / split).mkdir(parents=True)
                    for img, lab in pairs:
                        _link_or_copy(img, tmp / "images" / split / img.name)
                        if lab is not None:
                            _link_or_copy(lab, tmp / "labels" / split / lab.name)
                (tmp / ".export-digest").write_text(export.digest + "\n")
                replace_folder(tmp, mirror)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    meta: dict[str, Any] = {"path": str(mirror.resolve())}
    for split in SPLITS:
        meta[split] = str((mirror / "images" / split).resolve())
    meta["nc"] = len(export.names)
    meta["names"] = dict(sorted(export.names.items()))
    meta["mskseg_export"] = {"yaml": str(export.yaml_path.resolve()), "digest": export.digest}
    out = out_dir / f"{export.yaml_path.stem}.yaml"
    write_text(out, yaml.safe_dump(meta, sort_keys=False))
    return out


def training_data_yaml(export_yaml: Path, out_dir: Path) -> Path:
    """Write the data YAML ultralytics trains on (absolute train/val/test paths) into ``out_dir``.

    The paths point at a link mirror of the export inside ``out_dir`` so ultralytics' label
    caches stay out of the export. Raises ``DataError`` naming the file when the export is
    missing or its train or val split has no images: validation must run on the validation
    split, so there is deliberately no fallback to train.

    Parameters
    ----------
    export_yaml : the export's dataset YAML (``<prepared_dir>/yolo/<dataset>.yaml``).
    out_dir : folder for the mirror and the YAML (``<detectors_dir>/<dataset>/data``).

    Returns
    -------
    Path of the YAML written.
    """
    return _write_training_data(_scan_export(Path(export_yaml)), Path(out_dir))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorRun:
    """One trained (or reused) detector.

    ``seconds`` is the wall time of the call that returned it (tiny when ``reused``); the
    training time of the run that made the weights is in ``run_dir/weights/detector_run.json``.
    """

    dataset: str
    model: str
    weights: Path
    run_dir: Path
    train_args: dict[str, Any]
    seconds: float
    reused: bool


def validate_augment(augment: Mapping[str, Any] | None) -> dict[str, Any]:
    """The augmentation settings as trainer arguments; unknown or reserved keys raise DetectorError.

    Keys must be ultralytics settings (``ultralytics.cfg.DEFAULT_CFG_DICT``) that
    :func:`train_detector` does not set itself, so a typo cannot silently train with defaults.

    Parameters
    ----------
    augment : ultralytics augmentation settings (``hsv_v``, ``degrees``, ``mosaic`` ...), or None.

    Returns
    -------
    dict of the same keys and values, ready to pass to ``model.train``.
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT

    out: dict[str, Any] = {}
    for key, value in dict(augment or {}).items():
        if key not in DEFAULT_CFG_DICT:
            raise DetectorError(
                f"autolabel.detector.augment.{key}: {key!r} is not an ultralytics setting "
                "(augmentation keys include hsv_h, hsv_s, hsv_v, degrees, translate, scale, shear, "
                "perspective, flipud, fliplr, mosaic, mixup, cutmix, copy_paste, erasing, close_mosaic)"
            )
        if key in _RESERVED_TRAIN_ARGS:
            raise DetectorError(
                f"autolabel.detector.augment.{key}: {key!r} is set by train_detector from its "
                "settings (DetectorSettings, seed, device), not an augmentation"
            )
        out[key] = value
    return out


def _fingerprint_inputs(settings: DetectorSettings, seed: int, dataset: str, augment: Mapping[str, Any],
                        export: _Export) -> dict[str, Any]:
    """What decides the trained weights (not device, workers or inference thresholds)."""
    return {
        "dataset": dataset,
        "model": str(settings.model),
        "image_size_px": int(settings.image_size_px),
        "epochs": int(settings.epochs),
        "batch_size": int(settings.batch_size),
        "patience": int(settings.patience),
        **({"nominal_batch_size": int(settings.nominal_batch_size)} if settings.nominal_batch_size != 64 else {}),
        **({"max_train_images": int(settings.max_train_images)} if settings.max_train_images else {}),
        **({"max_val_images": int(settings.max_val_images)} if settings.max_val_images else {}),
        **({"optimizer": str(settings.optimizer), "lr0": float(settings.lr0)} if settings.optimizer != "auto" else {}),
        "seed": int(seed),
        "augment": dict(sorted(augment.items())),
        "export_digest": export.digest,
    }


def _fingerprint(inputs: Mapping[str, Any]) -> str:
    return fingerprint(inputs, length=20)


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class _Plan:
    """Where one dataset's detector lives and what decides whether it can be reused."""

    dataset: str
    export: _Export
    root: Path  # <detectors_dir>/<dataset>
    run_dir: Path  # <root>/<model>
    inputs: dict[str, Any]  # the fingerprint's payload
    fingerprint: str

    @property
    def weights(self) -> Path:
        return self.run_dir / "weights" / "best.pt"

    @property
    def record_path(self) -> Path:
        return self.run_dir / "weights" / RUN_RECORD


def _plan(dataset: str, prepared_dir: Path, detectors_dir: Path, settings: DetectorSettings, seed: int) -> _Plan:
    """Scan the export and name the run folder; the fingerprint covers settings, seed and export."""
    augment = validate_augment(settings.augment)
    export = _capped(_scan_export(export_yaml_path(prepared_dir, dataset)), int(settings.max_train_images),
                     int(settings.max_val_images))
    root = detector_dir(detectors_dir, dataset)
    inputs = _fingerprint_inputs(settings, seed, dataset, augment, export)
    return _Plan(dataset, export, root, root / str(settings.model), inputs, _fingerprint(inputs))


def _train_args(plan: _Plan, data_yaml: Path, settings: DetectorSettings, seed: int, device: str | int,
                progress: bool) -> dict[str, Any]:
    """The keyword arguments of ultralytics' ``model.train`` (AMP only on CUDA)."""
    args: dict[str, Any] = {
        "data": str(data_yaml),
        "imgsz": int(settings.image_size_px),
        "epochs": int(settings.epochs),
        "batch": int(settings.batch_size),
        "nbs": int(settings.nominal_batch_size),
        "optimizer": str(settings.optimizer),
        "lr0": float(settings.lr0),
        "patience": int(settings.patience),
        "workers": int(settings.workers),
        "seed": int(seed),
        "deterministic": True,
        "device": device,
        "project": str(plan.root.resolve()),
        "name": str(settings.model),
        "exist_ok": True,
        "plots": False,
        "verbose": bool(progress),
        "val": True,
        "pretrained": False,
        **validate_augment(settings.augment),
    }
    if not _is_cuda(device):
        args["amp"] = False
    return args


def _fit(plan: _Plan, model_name: str, train_args: Mapping[str, Any],
         callbacks: Mapping[str, Callable[[Any], None]] | None) -> tuple[Any, float]:
    """Train from scratch in a clean run folder; returns (ultralytics model, seconds)."""
    shutil.rmtree(plan.run_dir, ignore_errors=True)  # stale record, results.csv (appended to) and weights
    model = build_model(model_name)
    for event, fn in (callbacks or {}).items():
        model.add_callback(event, fn)
    cwd = Path.cwd()
    strays = _stray_entries(cwd)
    t0 = time.perf_counter()
    with _ultralytics_guard(_is_cuda(train_args["device"])):
        model.train(**train_args)
    seconds = round(time.perf_counter() - t0, 3)
    _warn_new_strays(strays, cwd)
    best = Path(model.trainer.best)
    if best.resolve() != plan.weights.resolve() or not plan.weights.is_file():
        raise RuntimeError(f"ultralytics saved no best.pt at {plan.weights} (trainer reported {best})")
    return model, seconds


def _write_run_record(plan: _Plan, settings: DetectorSettings, train_args: Mapping[str, Any], seed: int,
                      model: Any, seconds: float) -> None:
    """The record next to ``best.pt`` that marks a *finished* training: fingerprint and provenance."""
    from mskseg_lib.ledger import record_work
    from mskseg_lib.provenance import collect_versions, git_info, utc_now_iso

    epochs_run = int(getattr(model.trainer, "epoch", -1)) + 1
    record_work("detector_image", str(settings.model), len(plan.export.files.get("train", [])) * epochs_run, seconds)
    write_json(plan.record_path, {
        "fingerprint": plan.fingerprint,
        "fingerprint_inputs": plan.inputs,
        "dataset": plan.dataset,
        "model": str(settings.model),
        "weights": str(plan.weights),
        "export_yaml": str(plan.export.yaml_path.resolve()),
        "settings": settings.as_record(),
        "n_images": {split: len(pairs) for split, pairs in plan.export.files.items()},
        "train_args": dict(train_args),
        "seed": int(seed),
        "seconds": seconds,
        "epochs_run": epochs_run,
        "created_utc": utc_now_iso(),
        "git": git_info(),
        "versions": collect_versions(),
    })


def train_detector(
    dataset: str,
    prepared_dir: Path,
    detectors_dir: Path,
    settings: DetectorSettings = DetectorSettings(),
    *,
    seed: int = 0,
    device: Any = "auto",
    progress: bool = True,
    callbacks: Mapping[str, Callable[[Any], None]] | None = None,
) -> DetectorRun:
    """Train a detector on one dataset's YOLO export, or reuse identical earlier weights.

    The fingerprint (settings, seed, export digest) is stored next to ``best.pt`` only after
    training finished, so an interrupted run is retrained, and a run with other settings or
    another export is retrained from scratch.

    Parameters
    ----------
    dataset : dataset name; its export is ``<prepared_dir>/yolo/<dataset>.yaml``.
    prepared_dir : the prepared data folder (``<data_root>/prepared``).
    detectors_dir : folder of every dataset's detector (``<runs_dir>/autolabel/detectors``);
        this one trains in ``<detectors_dir>/<dataset>/<settings.model>``.
    settings : model, image size, epochs, batch, patience, workers, augmentation.
    seed : ultralytics' training seed (deterministic algorithms on).
    device : "auto", "cpu", "cuda:N", a torch device or a CUDA index.
    progress : ultralytics' verbose output.
    callbacks : ultralytics event names (``on_train_start``, ``on_fit_epoch_end`` ...) mapped
        to functions of the trainer.

    Returns
    -------
    DetectorRun with the weights path; ``reused`` says whether training was skipped.
    """
    start = time.perf_counter()
    plan = _plan(dataset, prepared_dir, detectors_dir, settings, seed)
    data_yaml = _write_training_data(plan.export, plan.root / "data")
    record = _read_record(plan.record_path)
    if plan.weights.is_file() and record is not None and record.get("fingerprint") == plan.fingerprint:
        return DetectorRun(dataset, str(settings.model), plan.weights, plan.run_dir,
                           dict(record.get("train_args", {})), round(time.perf_counter() - start, 3), True)
    train_args = _train_args(plan, data_yaml, settings, seed, _device_arg(device), progress)
    model, seconds = _fit(plan, str(settings.model), train_args, callbacks)
    _write_run_record(plan, settings, train_args, seed, model, seconds)
    return DetectorRun(dataset, str(settings.model), plan.weights, plan.run_dir, train_args,
                       round(time.perf_counter() - start, 3), False)


def trained_detector(dataset: str, prepared_dir: Path, detectors_dir: Path,
                     settings: DetectorSettings = DetectorSettings(), *, seed: int = 0) -> Path:
    """``best.pt`` of a *finished* training with these settings, seed and the current export.

    ultralytics saves ``best.pt`` during training, so the file alone can be a half-trained
    detector; the run record is written only when training finished. Raises ``DataError``
    naming the file when the record is missing or was made with other settings or data.

    Parameters
    ----------
    dataset, prepared_dir, detectors_dir, settings, seed : as for :func:`train_detector`.

    Returns
    -------
    Path of the weights (``<detectors_dir>/<dataset>/<model>/weights/best.pt``).
    """
    run_dir = detector_dir(detectors_dir, dataset) / str(settings.model)
    weights, record_path = run_dir / "weights" / "best.pt", run_dir / "weights" / RUN_RECORD
    hint = f"train it first: mskseg train-detector --dataset {dataset}, or autolabel.detector.train_detector"
    record = _read_record(record_path)
    if not weights.is_file() or record is None:
        raise DataError(record_path, f"no finished detector training here ({hint})")
    if record.get("fingerprint") != _plan(dataset, prepared_dir, detectors_dir, settings, seed).fingerprint:
        raise DataError(record_path, f"the detector was trained with other settings or another export ({hint})")
    return weights


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


@dataclass
class Detections:
    """Boxes found in one image, in that image's pixel coordinates (x0, y0, x1, y1)."""

    boxes_xyxy: np.ndarray  # (N, 4) float32
    class_ids: np.ndarray  # (N,) int64, YOLO class = label value - 1
    scores: np.ndarray  # (N,) float32

    def __post_init__(self) -> None:
        self.boxes_xyxy = np.asarray(self.boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not (len(self.boxes_xyxy) == len(self.class_ids) == len(self.scores)):
            raise ValueError(
                f"Detections: {len(self.boxes_xyxy)} boxes, {len(self.class_ids)} classes, {len(self.scores)} scores"
            )

    def __len__(self) -> int:
        return len(self.class_ids)

    @property
    def label_values(self) -> np.ndarray:
        """Label values of the dataset's label maps (YOLO class + 1)."""
        return self.class_ids + 1


@dataclass
class UltralyticsDetector:
    """A loaded ultralytics detector with its inference settings (input size, thresholds, device)."""

    model: Any = field(repr=False)
    name: str
    image_size_px: int
    conf: float
    iou: float
    max_det: int
    device: str | int

    def detect(self, images: np.ndarray) -> list[Detections]:
        """Detections for a (B, S, S) uint8 grey batch, in one batched ``predict`` call."""
        images = np.asarray(images)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"detect expects a (B, S, S) uint8 batch, got shape {images.shape} {images.dtype}")
        if len(images) == 0:
            return []
        batch = [np.ascontiguousarray(np.repeat(im[:, :, None], 3, axis=2)) for im in images]  # grey -> BGR
        with _ultralytics_guard(cuda=False):
            results = self.model.predict(
                batch, imgsz=self.image_size_px, conf=self.conf, iou=self.iou, max_det=self.max_det,
                device=self.device, verbose=False, save=False,  # a list source is one batch
            )
        out = []
        for res in results:
            boxes = res.boxes
            out.append(Detections(boxes.xyxy.cpu().numpy(), boxes.cls.cpu().numpy().astype(np.int64),
                                  boxes.conf.cpu().numpy()))
        return out


def load_detector(weights: Path, settings: DetectorSettings = DetectorSettings(),
                  device: Any = None) -> UltralyticsDetector:
    """Load ``best.pt`` (YOLO or RT-DETR) to run with the inference settings of ``settings``.

    A missing or unreadable file raises ``DataError`` naming it (ultralytics would otherwise
    try to download a missing name).

    Parameters
    ----------
    weights : the detector's ``best.pt``.
    settings : ``image_size_px`` (the export's), ``conf``, ``iou``, ``max_det``; ``model``
        names the detector when the weights do not.
    device : "auto", "cpu", "cuda:N", a torch device or a CUDA index; None means "auto".

    Returns
    -------
    UltralyticsDetector whose ``detect`` takes a (B, S, S) uint8 batch.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise DataError(weights, "detector weights not found")
    from ultralytics import RTDETR, YOLO
    from ultralytics.nn.tasks import RTDETRDetectionModel

    try:
        model = YOLO(str(weights))
        if isinstance(model.model, RTDETRDetectionModel):
            model = RTDETR(str(weights))  # RT-DETR needs its own predictor (no NMS)
    except Exception as exc:  # torch/pickle errors differ by corruption; all mean "not a checkpoint"
        raise DataError(weights, f"cannot load detector weights: {type(exc).__name__}: {exc}") from exc
    yaml_file = str(getattr(model.model, "yaml", {}).get("yaml_file", "") or "")
    name = Path(yaml_file).stem if yaml_file else str(settings.model or weights.stem)
    return UltralyticsDetector(
        model=model,
        name=name,
        image_size_px=int(settings.image_size_px),
        conf=float(settings.conf),
        iou=float(settings.iou),
        max_det=int(settings.max_det),
        device=_device_arg(device),
    )


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluate_detector(weights: Path, dataset: str, prepared_dir: Path, detectors_dir: Path,
                      settings: DetectorSettings = DetectorSettings(), *, split: str = "test",
                      device: Any = "auto") -> pd.DataFrame:
    """Box precision, recall, mAP50 and mAP50-95 on one split: one row per class, then ``all``.

    Runs ultralytics ``val`` (confidence 0.001, as for mAP; NMS IoU and max_det from
    ``settings``); precision/recall are ultralytics' values at the max-F1 confidence. Outputs go
    to ``<weights' run folder>/eval_<split>`` with plots off.

    Parameters
    ----------
    weights : the detector's ``best.pt``.
    dataset, prepared_dir, detectors_dir : as for :func:`train_detector` (the export to score on,
        and where its link mirror lives).
    settings : image size, batch size, workers, ``iou``, ``max_det``.
    split : ``train``, ``val`` or ``test``.
    device : "auto", "cpu", "cuda:N", a torch device or a CUDA index.

    Returns
    -------
    DataFrame, one row per class then ``all``: dataset, split, class_id, label_value,
    class_name, precision, recall, mAP50, mAP50_95 (0-1; NaN for a class without instances in
    the split), n_images (images holding the class; every image of the split on ``all``),
    n_instances.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    export = _capped(_scan_export(export_yaml_path(prepared_dir, dataset)), int(settings.max_train_images),
                     int(settings.max_val_images))
    n_split = len(export.files[split])
    if n_split == 0:
        raise DataError(export.yaml_path, f"the {split} split has no images to evaluate on")
    data_yaml = _write_training_data(export, detector_dir(detectors_dir, dataset) / "data")
    det = load_detector(weights, settings, device)
    run_dir = Path(weights).resolve().parent.parent
    seen: dict[str, int] = {}
    det.model.add_callback("on_val_end", lambda v: seen.update(n=int(v.seen)))
    cwd = Path.cwd()
    strays = _stray_entries(cwd)
    with _ultralytics_guard(_is_cuda(det.device)):
        metrics = det.model.val(
            data=str(data_yaml), split=split, imgsz=det.image_size_px, batch=int(settings.batch_size),
            conf=0.001, iou=det.iou, max_det=det.max_det, device=det.device, workers=int(settings.workers),
            project=str(run_dir), name=f"eval_{split}", exist_ok=True, plots=False, save_json=False,
            verbose=False,
        )
    _warn_new_strays(strays, cwd)
    if seen.get("n", n_split) != n_split:
        raise RuntimeError(f"ultralytics evaluated {seen['n']} images, the {split} split has {n_split}")
    nt_class = np.asarray(metrics.nt_per_class if metrics.nt_per_class is not None else np.zeros(len(export.names)))
    nt_image = np.asarray(metrics.nt_per_image if metrics.nt_per_image is not None else np.zeros(len(export.names)))
    per_class = {int(c): metrics.box.class_result(i) for i, c in enumerate(metrics.box.ap_class_index)}
    rows = []
    for cid, cname in sorted(export.names.items()):
        p, r, ap50, ap = per_class.get(cid, (np.nan,) * 4)
        rows.append({"class_id": cid, "label_value": cid + 1, "class_name": cname, "precision": p, "recall": r,
                     "mAP50": ap50, "mAP50_95": ap, "n_images": int(nt_image[cid]) if cid < len(nt_image) else 0,
                     "n_instances": int(nt_class[cid]) if cid < len(nt_class) else 0})
    mp, mr, map50, map5095 = metrics.box.mean_results()
    rows.append({"class_id": -1, "label_value": 0, "class_name": "all", "precision": mp, "recall": mr,
                 "mAP50": map50, "mAP50_95": map5095, "n_images": n_split, "n_instances": int(nt_class.sum())})
    df = pd.DataFrame(rows)
    df.insert(0, "split", split)
    df.insert(0, "dataset", dataset)
    for col in ("precision", "recall", "mAP50", "mAP50_95"):
        df[col] = df[col].astype(float)
    return df
