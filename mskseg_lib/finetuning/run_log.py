"""What a training run leaves besides weights: loss/Dice curves as PNG, optional W&B logging."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)


def plot_curves(history: list[Mapping[str, Any]], path: Path, title: str) -> Path | None:
    """Training and validation loss (left) and validation Dice and learning rate (right) per epoch.

    Drawn on a bare ``matplotlib.figure.Figure`` (no pyplot): it runs inside training, often in a
    notebook's kernel, and must neither switch that kernel's plotting backend (which would stop
    every later figure of the notebook from showing inline) nor leave a figure open.
    """
    if not history:
        return None
    from matplotlib.figure import Figure

    from mskseg_lib.atomic import save_figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.2))
    ax_loss, ax_dice = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="Dice + BCE loss")
    ax_loss.legend(frameon=False)
    ax_dice.plot(epochs, [h["val_dice"] for h in history], marker="o", color="C2")
    ax_dice.set(xlabel="epoch", ylabel="validation Dice", ylim=(0, 1))
    ax_lr = ax_dice.twinx()
    ax_lr.plot(epochs, [h["lr"] for h in history], color="grey", ls=":", lw=1)
    ax_lr.set_ylabel("learning rate", color="grey")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def wandb_logger(project: str | None, run_id: str, params: Mapping[str, Any]) -> Any:
    """A Weights & Biases run in ``project`` when one is named and ``wandb`` is installed; else None.

    Parameters
    ----------
    project : the W&B project (``TrainSettings.wandb_project``); None: no W&B logging.
    run_id : the run's name there.
    params : the training settings, recorded as the run's config.

    Returns
    -------
    The ``wandb`` run, or None. Asked for but not installed is logged as a warning, never an
    error: W&B is optional.
    """
    if not project:
        return None
    if importlib.util.find_spec("wandb") is None:
        log.warning("W&B logging asked for (project %s) but wandb is not installed; logging to JSON only", project)
        return None
    import wandb

    return wandb.init(project=project, name=run_id, config=dict(params), reinit=True)
