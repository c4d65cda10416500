"""Settings of a finetuning run and of the grid: small frozen dataclasses with the study's defaults.

* :class:`TrainSettings`: how one run trains (the profile's ``finetune.training``, the study's
  values by default) plus its base seed, the torchrun process-group backend and an optional
  Weights & Biases project. Where the models come from and which device runs them is
  :class:`mskseg_lib.models.settings.ModelSettings`, shared with every other stage.
* :class:`EvaluationSettings`: how a finetuned model and its zero-shot baseline are scored (the
  profile's ``finetune.evaluation``).

A researcher calls ``train_run(experiment, prepared_dir=..., run_dir=...,
settings=TrainSettings(max_epochs=5))``; :mod:`mskseg_lib.from_profile.finetune` builds the same
objects from a profile.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from mskseg_lib.errors import UserError

__all__ = ["TRAINING_KEYS", "TrainSettings", "EvaluationSettings", "SettingsError", "STUDY_CONDITIONS"]

# the keys of the profile's ``finetune.training`` (without ``overrides``): what a run folder's
# fingerprint records under "training" (max_epochs excepted) and what config.yaml lists
TRAINING_KEYS: tuple[str, ...] = (
    "lr", "weight_decay", "batch_size", "grad_accum_steps", "grad_clip_norm", "max_epochs",
    "max_samples_per_epoch", "max_slices_per_subject", "mask_grid_px", "val_max_samples", "scheduler_t0",
    "scheduler_t0_unit", "scheduler_t_mult", "min_lr", "early_stopping", "patience", "min_delta",
    "cache_embeddings", "mixed_precision")
# added after run folders existed: recorded (and fingerprinted) only when they differ from the study
LOSS_WEIGHTS: dict[str, float] = {"dice_weight": 0.5, "bce_weight": 0.5}
AT_LEAST_ONE = ("max_epochs", "batch_size", "grad_accum_steps")
T0_UNITS = ("optimizer_steps", "epochs")
STUDY_CONDITIONS: tuple[Mapping[str, Any], ...] = ({"name": "gt_box", "shift_grid_px": 0},)


class SettingsError(UserError, ValueError):
    """A training setting (or a strategy's override of one) is unknown or out of range."""


@dataclass(frozen=True)
class TrainSettings:
    """How one finetuning run trains; the defaults are the study's (Methods, its code).

    Optimisation: AdamW (``lr``, ``weight_decay``) on micro-batches of ``batch_size`` samples per
    process, gradients accumulated over ``grad_accum_steps`` micro-batches and clipped to
    ``grad_clip_norm`` (0: no clipping); ``CosineAnnealingWarmRestarts`` with period
    ``scheduler_t0`` counted in ``scheduler_t0_unit`` (``optimizer_steps`` as the study's code,
    or ``epochs``), ``scheduler_t_mult`` and floor ``min_lr`` (eta_min); loss
    ``dice_weight`` x Dice + ``bce_weight`` x BCE on the ``mask_grid_px`` grid. Budget:
    ``max_epochs``, an epoch being one pass over the training slices (``max_samples_per_epoch``
    > 0 caps it), ``max_slices_per_subject`` (0: all), ``val_max_samples`` (0: all); early
    stopping after ``patience`` epochs without a validation-loss gain above ``min_delta``.
    ``cache_embeddings``: a frozen encoder encodes each slice once; ``mixed_precision``: bf16
    autocast on CUDA.

    Not training settings (outside a run folder's "training" fingerprint): ``seed`` (repeat ``r``
    uses ``seed + r - 1``, fingerprinted on its own), ``backend`` of the torchrun process group
    (``auto``, ``nccl``, ``gloo``) and ``wandb_project`` (None: no Weights & Biases logging).

    ``strategy_overrides`` maps a strategy (``partial``, ``full``) to settings that differ for
    it (e.g. fewer epochs for full training on a CPU); :meth:`for_strategy` applies them.
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    batch_size: int = 2
    grad_accum_steps: int = 4
    grad_clip_norm: float = 1.0
    max_epochs: int = 100
    max_samples_per_epoch: int = 0
    max_slices_per_subject: int = 0
    mask_grid_px: int = 256
    val_max_samples: int = 0
    scheduler_t0: int = 10
    scheduler_t0_unit: str = "optimizer_steps"
    scheduler_t_mult: int = 1
    min_lr: float = 1e-5
    early_stopping: bool = True
    patience: int = 10
    min_delta: float = 1e-4
    cache_embeddings: bool = True
    mixed_precision: bool = True
    dice_weight: float = 0.5
    bce_weight: float = 0.5
    seed: int = 42
    backend: str = "auto"
    wandb_project: str | None = None
    strategy_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in AT_LEAST_ONE:
            if int(getattr(self, key)) < 1:
                raise SettingsError(f"finetune.training.{key} must be >= 1, got {getattr(self, key)}")
        if self.scheduler_t0_unit not in T0_UNITS:
            raise SettingsError(f"finetune.training.scheduler_t0_unit must be one of {T0_UNITS}, "
                                f"got {self.scheduler_t0_unit!r}")

    def for_strategy(self, strategy: str) -> "TrainSettings":
        """These settings with ``strategy_overrides[strategy]`` applied (and no overrides left).

        Parameters
        ----------
        strategy : ``partial`` (encoder frozen) or ``full``.

        Returns
        -------
        TrainSettings
            The settings a run of that strategy trains with.

        Raises
        ------
        SettingsError
            An override names a setting that does not exist, or sets one out of range.
        """
        over = dict(self.strategy_overrides.get(strategy, {}) or {})
        unknown = sorted(set(over) - set(TRAINING_KEYS) - set(LOSS_WEIGHTS))
        if unknown:
            raise SettingsError(f"finetune.training.overrides.{strategy}: unknown keys {unknown}")
        try:
            return dataclasses.replace(self, **over, strategy_overrides={})
        except SettingsError as exc:
            raise SettingsError(f"{exc} (strategy {strategy})") from None

    def training_record(self) -> dict[str, Any]:
        """The training settings as the profile names them: what a run folder fingerprints (with
        ``max_epochs`` left out there) and records in ``config.yaml``; the loss weights only when
        they differ from the study's 0.5 / 0.5, so run folders made before they were settings
        stay valid."""
        record = {k: getattr(self, k) for k in TRAINING_KEYS}
        record.update({k: getattr(self, k) for k, v in LOSS_WEIGHTS.items() if getattr(self, k) != v})
        return record


@dataclass(frozen=True)
class EvaluationSettings:
    """How finetuned models and their zero-shot baselines are scored (on the same slices).

    ``split``: ``test``, a list of splits or ``all``; ``conditions``: prompt conditions as the
    zero-shot engine reads them (``{"name": "gt_box", "shift_grid_px": 0}``: the exact box; a
    shift counts grid pixels of ``TrainSettings.mask_grid_px``, as the training box shift);
    ``max_subjects_per_dataset`` / ``max_slices_per_subject`` (0: all); ``hd95`` adds the 95th
    percentile Hausdorff distance.
    """

    split: str | tuple[str, ...] = "test"
    conditions: tuple[Mapping[str, Any], ...] = STUDY_CONDITIONS
    max_subjects_per_dataset: int = 0
    max_slices_per_subject: int = 0
    hd95: bool = True
