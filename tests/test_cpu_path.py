"""The CPU execution variants of an encoder (``mskseg bench cpu-path``): agreement measured right."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from mskseg_lib.evaluation.cpu_path import bench_cpu_path, fastest_acceptable, foreground_dice, real_slices
from mskseg_lib.models.interface import Prompts
from mskseg_lib.models.settings import ModelSettings
from mskseg_lib.models.zoo import load_model


def test_foreground_dice_ignores_background_and_pools_masks():
    a = [np.zeros((4, 4), bool), np.zeros((4, 4), bool)]
    b = [np.zeros((4, 4), bool), np.zeros((4, 4), bool)]
    assert foreground_dice(a, b) == 1.0  # both empty
    a[0][:2, :2] = True  # 4 px
    b[0][:2, :1] = True  # 2 px, inside
    b[1][3, 3] = True  # 1 px, absent from a
    assert foreground_dice(a, b) == pytest.approx(2 * 2 / (4 + 3))


def test_fastest_acceptable_never_picks_a_variant_whose_masks_differ():
    rows = [{"variant": "fp32", "s_per_slice": 1.0, "acceptable": True},
            {"variant": "bf16", "s_per_slice": 0.5, "acceptable": False},
            {"variant": "channels_last", "s_per_slice": 0.7, "acceptable": True}]
    assert fastest_acceptable(rows)["variant"] == "channels_last"


def test_channels_last_gives_fp32_masks_on_a_phantom(tmp_path):
    """Two discs in a volume: the slices and boxes come out of ``real_slices`` and the real
    LiteMedSAM segments them identically in float32 and channels-last."""
    yy, xx = np.mgrid[:96, :96]
    image = np.zeros((96, 96, 6), np.float32)
    labels = np.zeros((96, 96, 6), np.int16)
    for k in range(1, 5):
        disc1 = (yy - 30) ** 2 + (xx - 35) ** 2 < 15 ** 2
        disc2 = (yy - 65) ** 2 + (xx - 60) ** 2 < 12 ** 2
        image[..., k] = 40 + 150 * disc1 + 100 * disc2 + np.random.default_rng(k).normal(0, 5, (96, 96))
        labels[..., k] = disc1 * 1 + disc2 * 2
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "im.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "lab.nii.gz")
    slices = real_slices([(tmp_path / "im.nii.gz", tmp_path / "lab.nii.gz")], 256, per_volume=2)
    assert len(slices) == 2 and all(s.boxes.shape == (2, 4) and s.image.shape == (256, 256) for s in slices)
    rows = bench_cpu_path(lambda: load_model("lite_medsam", ModelSettings(device="cpu")), slices,
                          ["fp32", "channels_last"], repeats=1)
    by = {r["variant"]: r for r in rows}
    assert by["fp32"]["dice_vs_fp32"] == 1.0
    assert by["channels_last"]["dice_vs_fp32"] >= 0.995 and by["channels_last"]["acceptable"]
    with pytest.raises(ValueError, match="unknown CPU variants"):
        bench_cpu_path(lambda: None, slices, ["fp64"])
    # on CPU ``decode`` runs one prompt per decoder pass: the logits of the all-prompts pass
    model = load_model("lite_medsam", ModelSettings(device="cpu"))
    emb = model.encode(slices[0].image[None])[0]
    prompts = Prompts(boxes=slices[0].boxes)
    with torch.inference_mode():
        together = model.predict(emb, prompts)
    apart = model.decode(emb, prompts)
    assert apart.shape == together.shape == (2, 256, 256)
    assert torch.allclose(apart, together, atol=1e-3)
    assert torch.equal(apart > 0, together > 0)
