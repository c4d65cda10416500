"""Worker for the torchrun test: ``torchrun --nproc_per_node 2 ddp_train_worker.py cfg.yaml out``.

Every rank trains the same tiny experiment through ``train_run`` (gloo on CPU) with the profile's
arguments (``mskseg_lib.from_profile``), then saves the weights it holds as ``out/rank<R>.pt`` so
the test can compare ranks.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from mskseg_lib.finetuning.engine import train_run
from mskseg_lib.finetuning.grid import Experiment
from mskseg_lib.from_profile.data import prepared_dir
from mskseg_lib.from_profile.finetune import train_settings
from mskseg_lib.from_profile.models import model_settings
from mskseg_lib.from_profile.zero_shot import preparation
from mskseg_lib.models.zoo import build_tiny

HIP = "Hip_3D_CUBE_Research_Anatomical_42"


def tiny_segmenter(model_key: str, device: torch.device):
    """A picklable segmenter factory (``launch_torchrun``'s job file carries it to every rank)."""
    return build_tiny("medsam", device, seed=0)


def main() -> None:
    cfg = yaml.safe_load(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    held = {}

    def factory(model_key, device):
        held["seg"] = build_tiny("medsam", device, seed=0)
        return held["seg"]

    exp = Experiment(task=HIP, mix_kind="single", train_datasets=(HIP,), eval_datasets=(HIP,),
                     model_key="lite_medsam", strategy="partial", box_shift_grid_px=10, train_subjects="all")
    train_run(exp, prepared_dir=prepared_dir(cfg), run_dir=out / "run", settings=train_settings(cfg),
              models=model_settings(cfg), preparation=preparation(cfg), segmenter_factory=factory, progress=False)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in held["seg"].model.state_dict().items()}, out / f"rank{rank}.pt")
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
