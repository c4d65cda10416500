"""What a training run leaves besides weights: loss/Dice curves as PNG, optional W&B logging."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)


def plot_curves(history: list[Mapping[str, Any]], path: Path, title: str) -> Path | None:
    """Training and validation loss (left) and validation Dice and learning rate (right) per epoch."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mskseg_lib.atomic import save_figure

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(9, 3.2))
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
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def wandb_logger(cfg: Mapping[str, Any], run_id: str, params: Mapping[str, Any]) -> Any:
    """A W&B run when ``finetune.wandb.enabled`` and ``wandb`` is installed; otherwise None.

    Enabled but not installed is logged as a warning, never an error: W&B is optional.
    """
    w = cfg["finetune"]["wandb"]
    if not w["enabled"]:
        return None
    if importlib.util.find_spec("wandb") is None:
        log.warning("finetune.wandb.enabled is true but wandb is not installed; logging to JSON only")
        return None
    import wandb

    return wandb.init(project=w["project"], name=run_id, config=dict(params), reinit=True)
