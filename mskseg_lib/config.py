"""Profiles: the YAML files in ``params/`` that papermill injects into every notebook.

All profiles share one schema (``SCHEMA`` below). Loading a profile checks it completely:
an unknown key, a missing key or a value of the wrong type is reported with the file and the
dotted key, so a typo in ``params/paper.yaml`` fails before hours of GPU time, not after.
Entries typed ``dict`` (per-dataset overrides, notebook sections) are free-form maps whose
values are checked by the code that reads them.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Mapping

import yaml

from mskseg_lib.errors import UserError
from mskseg_lib.settings import project_root

log = logging.getLogger(__name__)

# A leaf is a type or tuple of types; a nested dict is a section. ``None`` in a tuple allows null.
NUM = (int, float)
SCHEMA: dict[str, Any] = {
    "profile": str,
    "description": str,
    "seed": int,
    "paths": {
        "data_root": str,  # cohort, prepared data; relative paths are relative to the project
        "figures_dir": str,
        "tables_dir": str,
        "runs_dir": str,
    },
    "cohort": {
        "enabled": bool,  # generate the synthetic MSK MRI cohort
        "datasets": (list, str),  # "all" or a list of dataset names
        "subjects_per_dataset": int,
        "subjects_override": dict,  # dataset name -> subject count
        "matrix_scale": NUM,  # in-plane matrix relative to the protocol's nominal matrix
        "slice_scale": NUM,  # number of slices relative to nominal (thickness follows)
        "supersample": int,  # render finer by this factor per axis, then average (partial volume)
    },
    # dataset cards beyond the shipped ones: a card file's path (relative to the project root) or
    # an inline card ({name, anatomy, plane, ..., labels}); optional, default none
    "datasets": list,
    "sources": list,  # extra raw data: [{type: real_spine|manifest, ...}]
    "prepare": {
        "slice_sizes_px": list,  # model input sizes to store (256 LiteMedSAM, 1024 SAM/SAM2)
        "clip_percentiles": list,  # [low, high] of non-zero voxels (the study: [1, 99])
        "resize": str,  # "stretch" (the study's: straight to the square, cubic spline) or "pad" (aspect kept)
        "min_component_px": int,  # per slice, per label
        "min_component_voxels": int,  # per volume, per label
        "drop_labels": dict,  # dataset -> [label names]
        "per_dataset": dict,  # dataset -> {min_component_px, min_component_voxels}
        "on_bad_input": str,  # "raise" or "skip" (logged in skipped.csv)
        "split_fractions": list,  # train, val, test
        "stratify_by": list,  # subject columns
        "yolo_export": bool,
        "yolo_image_size_px": int,
    },
    "models": {
        "device": str,  # auto (CUDA when present), cpu, cuda, cuda:N
        "autocast_bf16": bool,  # bf16 autocast on CUDA (CPU always runs fp32)
        "cpu_threads": int,  # 0 = every core this process may use
        "encode_batch_size": int,  # slices per image-encoder call
        "cpu_compile": bool,  # CPU: torch.compile the SAM-layout encoders for inference (mskseg bench cpu-path)
        # study: every encoder gets 0-1 per-slice min-max input, as the MSK study's code fed SAM,
        # SAM2 and MedSAM; native: each model's own predictor convention (SAM/SAM2 mean/std)
        "input_normalisation": str,
        "checkpoints_dir": str,  # where the registry's file names are looked for
        "checkpoints": dict,  # zoo name -> explicit checkpoint path
        "sha256": dict,  # zoo name -> pinned digest (where the registry has none)
    },
    "zero_shot": {
        "tag": str,  # run folder name under runs_dir/zero_shot (reruns resume it)
        "models": list,  # zoo names; missing checkpoints are reported, not skipped silently
        "conditions": list,  # [{name, shift_grid_px}] (study: outward shift on the grid) or [{name, kind: jitter, jitter_px}]
        "mask_grid_px": int,  # square grid the conditions' shift is counted on (the study: 256)
        "split": (list, str),  # "test", a list of splits, or "all"
        "datasets": (list, str),  # "all" or dataset names
        "max_subjects_per_dataset": int,  # 0 = all
        "max_slices_per_subject": int,  # 0 = all (evenly spaced through the volume otherwise)
        "instance_prompts": bool,  # one box per connected piece of multi-instance labels
        "hd95": bool,
        "cache_embeddings": bool,  # keep image embeddings on disk for later prompt conditions
        "qc_overlays_per_dataset": int,
    },
    "finetune": {
        "tag": str,  # run folder name under runs_dir/finetune (reruns resume it)
        "repeats": int,  # Run_1..Run_N per experiment (seed + N - 1)
        "defaults": dict,  # model, strategy, box_shift_grid_px, train_subjects, evaluate_on
        "experiments": list,  # [{group, train_on, <any default as a value or a list>}]: the grid
        "training": {
            "lr": NUM,
            "weight_decay": NUM,
            "batch_size": int,  # samples (one slice, one drawn label) per micro-batch and process
            "grad_accum_steps": int,  # micro-batches per optimizer step
            "grad_clip_norm": NUM,  # 0 = no clipping
            "max_epochs": int,
            "max_samples_per_epoch": int,  # 0 = every training slice once per epoch (the study's epoch)
            "max_slices_per_subject": int,  # training slices per subject (0 = all, evenly spaced)
            "val_max_samples": int,  # validation slices (0 = all)
            "mask_grid_px": int,  # square grid of targets, loss, boxes and box shift (the study: 256)
            "scheduler_t0": int,  # CosineAnnealingWarmRestarts T_0 (the study's code: 10), in scheduler_t0_unit
            "scheduler_t0_unit": str,  # optimizer_steps (the study's code steps it once per optimizer step) or epochs
            "scheduler_t_mult": int,
            "min_lr": NUM,
            "early_stopping": bool,
            "patience": int,  # epochs without val-loss improvement
            "min_delta": NUM,
            "cache_embeddings": bool,  # frozen encoder: encode each training slice once
            "mixed_precision": bool,  # bf16 autocast on CUDA
            "overrides": dict,  # strategy -> {key: value} (e.g. fewer epochs for full training on CPU)
        },
        "evaluation": {
            "split": (list, str),
            "conditions": list,
            "max_subjects_per_dataset": int,
            "max_slices_per_subject": int,
            "hd95": bool,
        },
        "distributed": {
            "nproc_per_node": int,  # >1: each experiment is trained by torchrun with this many processes
            "backend": str,  # auto (NCCL on GPU, gloo on CPU), nccl, gloo
        },
        "wandb": {
            "enabled": bool,  # optional; never required
            "project": str,
        },
    },
    "mixed_effects": {
        "condition": str,  # prompt condition whose Dice (mean over subjects per experiment and dataset) is the response
        "reference_model": str,  # its zero-shot arm is the reference level (the study: sam_vit_b)
        "vif_threshold": NUM,  # drop features above it, largest first
        "interactions": list,  # [[a, b], ...] two-way interactions among te_ms, pixel_spacing_mm,
        # slice_thickness_mm, flip_angle_deg, acquisition_3d, finetuned, encoder_finetuned, box_shift_applied
        "physics": {  # zero-shot run of one model over the whole cohort for the direction check
            "enabled": bool,
            "tag": str,  # run folder under runs_dir/zero_shot
            "model": str,
            "split": (list, str),
            "max_subjects_per_dataset": int,  # 0 = all
            "max_slices_per_subject": int,
        },
    },
    "biomarkers": {  # notebook 05
        "split": (list, str),  # subjects whose biomarkers are compared (test: never trained on)
        "datasets": (list, str),  # "all" or names
        "max_subjects_per_dataset": int,  # 0 = all
        "zero_shot_model": str,  # zero-shot predictions for contrast (and the real spine)
        "tag": str,  # zero-shot whole-volume run folder under runs_dir/zero_shot
        "n_boot": int,  # subject bootstrap resamples (LMM ICC, non-parametric Bland-Altman); the study: 10000
        "mixedlm_check_resamples": int,  # bootstrap resamples refitted with MixedLM to check the closed-form ICC
        "normality_on_differences": bool,  # variant: Shapiro-Wilk on the differences also decides (study: arms only)
        "real_spine": bool,  # vertebral body volumes of the real fixture, every subject, zero-shot
        "max_real_subjects": int,  # the first N real volumes (by id); 0 = all (optional)
    },
    "autolabel": {  # notebook 06 and ``mskseg autolabel``: detector boxes -> segmenter -> 3D NIfTI
        "datasets": (list, str),  # one detector per dataset (its classes are the dataset's labels)
        "split": (list, str),  # volumes labelled and scored in notebook 06 (test: seen by no model)
        "max_subjects_per_dataset": int,  # 0 = all
        "tag": str,  # run folder under runs_dir/autolabel
        "models": list,  # zero-shot segmenters (unavailable ones are listed and skipped)
        "finetuned": bool,  # add the best finetuned model per dataset, with and without box shift
        "detector": {
            "model": str,  # ultralytics model YAML: yolov8n, yolov8s, yolo11n, rtdetr-l, ...
            "image_size_px": int,  # must be one of prepare.slice_sizes_px (the YOLO export)
            "epochs": int,
            "batch_size": int,
            "patience": int,  # early stopping on validation fitness (epochs)
            "workers": int,  # dataloader workers (0 on small CPU machines)
            "conf": NUM,  # detection score threshold at inference
            "iou": NUM,  # NMS IoU threshold
            "max_det": int,  # boxes per slice at most
            "augment": dict,  # ultralytics augmentation hyper-parameters, given to the trainer as they are
            "nominal_batch_size": int,  # ultralytics nbs: images per optimizer step (optional; 64)
            "max_train_images": int,  # training images per dataset, spread evenly; 0 = all (optional)
            "max_val_images": int,  # validation images scored each epoch, spread evenly; 0 = all (optional)
            "optimizer": str,  # ultralytics optimizer: auto, SGD, AdamW, ... (optional; auto)
            "lr0": NUM,  # initial learning rate (optional; ignored by optimizer auto)
        },
        "postprocess": {
            "enabled": bool,
            "min_component_px": int,  # isolated pieces smaller than this are removed (per slice, per label)
            "kernel_px": dict,  # tissue class -> odd kernel (closing and Gaussian blur), original pixels
            "kernel_px_by_label": dict,  # label name -> kernel, overrides the tissue class
            "largest_component_3d": bool,  # keep only the largest 3D component of each label
        },
        "overlay_every_n": int,  # review overlay of every Nth slice (0 = none)
    },
    "video3d": {  # notebook 07: slices as frames; SAM2's video predictor and carrying propagation
        "tag": str,  # run folder under runs_dir/video3d
        "datasets": list,  # cohort datasets (sagittal 3D knee sets: femur, tibia, patella)
        "split": (list, str),
        "max_subjects_per_dataset": int,  # 0 = all
        "real_spine": bool,  # also the real lumbar fixture (vertebral bodies)
        "max_real_subjects": int,  # 0 = all 8
        "tissues": list,  # structures scored: labels of these tissue classes (bone)
        "combined_structures": list,  # "combined" = 3D Dice of their union (study: femur, tibia)
        "models": list,  # SAM2 sizes and image-only models (unavailable ones are listed, not run)
        "schemes": list,  # points_per_slice, boxes_per_slice, point_video, points_neg_video, box_carry, point_carry
        "carry": {
            "margin_px": int,  # the carried box is the predicted mask's box widened by this (slice pixels)
            "min_area_px": int,  # a structure stops on the slice where its mask is smaller than this ...
            "min_area_fraction": NUM,  # ... or smaller than this fraction of its area on the prompted slice
            "min_consecutive_dice": NUM,  # ... or its Dice with the previous slice's mask is below this (a leak)
        },
        "offload_state": str,  # auto (CUDA: when short of memory), always, never
        "save_volumes": bool,  # predicted label NIfTIs under runs_dir/video3d/<tag>/volumes
        "pipeline_check": bool,  # tiny random SAM2: video path and in-memory vs JPEG route (not a result)
        "example_offsets": list,  # slices shown in figure 7c, relative to the prompted slice
    },
    "notebooks": dict,  # "01" -> options of that notebook
    "expected_minutes": dict,  # "01" -> wall minutes where the profile was sized: the ETA before a first run (optional)
}

# keys a profile may leave out (dotted: inside a section the profile has)
OPTIONAL_DEFAULTS: dict[str, Any] = {"datasets": [], "expected_minutes": {}, "models.cpu_compile": False,
                                     "biomarkers.max_real_subjects": 0,
                                     "autolabel.detector.nominal_batch_size": 64,
                                     "autolabel.detector.max_train_images": 0,
                                     "autolabel.detector.max_val_images": 0,
                                     "autolabel.detector.optimizer": "auto", "autolabel.detector.lr0": 0.01}

ALLOWED_VALUES = {
    "prepare.on_bad_input": {"raise", "skip"},
    "finetune.distributed.backend": {"auto", "nccl", "gloo"},
    "finetune.training.scheduler_t0_unit": {"optimizer_steps", "epochs"},
    "video3d.offload_state": {"auto", "always", "never"},
    "models.input_normalisation": {"study", "native"},
}


class ProfileError(UserError, ValueError):
    """A profile file is missing, unreadable or does not match the schema."""


def params_dir() -> Path:
    return project_root() / "params"


def profile_path(name_or_path: str | Path) -> Path:
    """``default`` -> ``params/default.yaml``; a path is taken as it is."""
    p = Path(name_or_path)
    if p.suffix in {".yaml", ".yml"}:
        return p
    return params_dir() / f"{name_or_path}.yaml"


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


def _check(node: Any, schema: Any, where: str, source: str, errors: list[str]) -> None:
    if isinstance(schema, dict):
        if not isinstance(node, dict):
            errors.append(f"{source}: '{where}' must be a mapping, got {type(node).__name__}")
            return
        for key in node:
            if key not in schema:
                known = ", ".join(sorted(schema))
                errors.append(f"{source}: unknown key '{_join(where, key)}' (known here: {known})")
        for key, sub in schema.items():
            if key not in node:
                errors.append(f"{source}: missing key '{_join(where, key)}'")
            else:
                _check(node[key], sub, _join(where, key), source, errors)
        return
    types = schema if isinstance(schema, tuple) else (schema,)
    ok = isinstance(node, types) and not (isinstance(node, bool) and bool not in types)
    if not ok:
        errors.append(
            f"{source}: '{where}' must be {_type_name(schema)}, got {type(node).__name__} ({node!r})"
        )
        return
    allowed = ALLOWED_VALUES.get(where)
    if allowed is not None and node not in allowed:
        errors.append(f"{source}: '{where}' must be one of {sorted(allowed)}, got {node!r}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def validate_profile(cfg: Mapping[str, Any], source: str = "<profile>") -> None:
    """Raise ``ProfileError`` listing every schema violation in ``cfg``."""
    errors: list[str] = []
    _check(dict(cfg), SCHEMA, "", source, errors)
    if not errors:
        fr = cfg["prepare"]["split_fractions"]
        if len(fr) != 3 or abs(sum(fr) - 1.0) > 1e-6 or min(fr) < 0:
            errors.append(f"{source}: 'prepare.split_fractions' must be 3 non-negative numbers summing to 1, got {fr}")
        lo_hi = cfg["prepare"]["clip_percentiles"]
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] < lo_hi[1] <= 100:
            errors.append(f"{source}: 'prepare.clip_percentiles' must be [low, high] with 0 <= low < high <= 100, got {lo_hi}")
        if cfg["prepare"]["resize"] not in ("stretch", "pad"):
            errors.append(f"{source}: 'prepare.resize' must be 'stretch' or 'pad', got {cfg['prepare']['resize']!r}")
        for where, grid in (("zero_shot.mask_grid_px", cfg["zero_shot"]["mask_grid_px"]),
                            ("finetune.training.mask_grid_px", cfg["finetune"]["training"]["mask_grid_px"])):
            if grid < 1:
                errors.append(f"{source}: '{where}' must be a positive number of pixels (the study: 256), got {grid}")
        ft = cfg["finetune"]
        entries = [("finetune.defaults", ft["defaults"])] + [(f"finetune.experiments[{i}]", e)
                                                            for i, e in enumerate(ft["experiments"])]
        for where, entry in entries:
            if isinstance(entry, Mapping) and "box_shift_px" in entry:
                errors.append(f"{source}: '{where}.box_shift_px' was renamed 'box_shift_grid_px' (largest outward "
                              "move of a box side, in pixels of the finetune.training.mask_grid_px grid)")
    if errors:
        raise ProfileError("invalid profile:\n  " + "\n  ".join(errors))


def merge(base: dict, overrides: Mapping[str, Any]) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_profile(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """Read and validate a profile; ``overrides`` (as papermill injects them) are merged first."""
    path = profile_path(name_or_path)
    log.debug("reading profile %s", path)
    if not path.exists():
        have = ", ".join(sorted(p.stem for p in params_dir().glob("*.yaml")))
        raise ProfileError(f"{path}: no such profile (available: {have})")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise ProfileError(f"{path}: a profile must be a YAML mapping")
    if overrides:
        cfg = merge(cfg, overrides)
    for key, default in OPTIONAL_DEFAULTS.items():
        *parents, leaf = key.split(".")
        section = cfg
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.setdefault(leaf, copy.deepcopy(default))
    validate_profile(cfg, str(path))
    log.info("profile %s: %s", cfg["profile"], path)
    return cfg


def resolve_path(cfg: Mapping[str, Any], key: str) -> Path:
    """Absolute path for ``paths.<key>``; relative paths are taken from the project root."""
    p = Path(cfg["paths"][key]).expanduser()
    return p if p.is_absolute() else project_root() / p


def notebook_options(cfg: Mapping[str, Any], notebook: str) -> dict:
    """Options of one notebook (``notebooks.<id>``); an absent section means defaults."""
    return dict(cfg["notebooks"].get(notebook, {}) or {})
