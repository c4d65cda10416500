"""The SAM2 adapter on a tiny random model (CPU, no weights): shapes, agreement with the sam2
package's own ``SAM2ImagePredictor``, batch consistency, checkpoint loading and hydra hygiene."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")

from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.initialize import get_gh_backup, restore_gh_from_backup  # noqa: E402
from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

from mskseg_lib.models.checkpoints import StateDictMismatch  # noqa: E402
from mskseg_lib.models.interface import Prompts, Segmenter  # noqa: E402
from mskseg_lib.models.registry import get_spec  # noqa: E402
from mskseg_lib.models.sam2_hiera import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    TINY_SAM2_OVERRIDES,
    Sam2Segmenter,
    build_sam2_model,
    load_sam2_segmenter,
)

CONFIG = "configs/sam2/sam2_hiera_t.yaml"
CPU = torch.device("cpu")
SIZE = 256  # the tiny model's image_size

# sam2's predictor jit-scripts its transforms, which this torch marks as deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: the tiny model is faster so, and immune to a busy machine (with
    every core requested, OpenMP threads spinning against another process cost ~50x here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _hydra_state() -> list[tuple[str, str]] | None:
    """Hydra's global state as comparable data: None, or its config search path."""
    gh = GlobalHydra.instance()
    if not gh.is_initialized():
        return None
    return [(src.provider, src.path) for src in gh.config_loader().get_sources()]


@pytest.fixture(autouse=True)
def _hydra_isolated():
    """Every test starts and ends with the same hydra global state (builds must not leak it)."""
    backup = get_gh_backup()
    before = _hydra_state()
    yield
    assert _hydra_state() == before, "hydra global state leaked"
    restore_gh_from_backup(backup)


def _tiny_model(seed: int = 0, checkpoint: Path | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_sam2_model(CONFIG, checkpoint, CPU, TINY_SAM2_OVERRIDES)


@pytest.fixture(scope="module")
def seg() -> Sam2Segmenter:
    return Sam2Segmenter(_tiny_model(0), "tiny_sam2", CPU, autocast_bf16=True)


@pytest.fixture(scope="module")
def slices() -> np.ndarray:
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, size=(2, SIZE, SIZE), dtype=np.uint8)
    img[0, 60:180, 80:200] = 230  # a bright block so that prompts see some structure
    return img


@pytest.fixture(scope="module")
def predictor(seg: Sam2Segmenter) -> SAM2ImagePredictor:
    """The sam2 package's own predictor on the same tiny model (built once: it jit-scripts)."""
    pred = SAM2ImagePredictor(seg.model)
    # The predictor hard-codes the backbone feature sizes of a 1024-px model (256, 128, 64);
    # the tiny model's are image_size / 4, / 8, / 16.
    pred._bb_feat_sizes = [(SIZE // 4,) * 2, (SIZE // 8,) * 2, (SIZE // 16,) * 2]
    return pred


def _set_slice(pred: SAM2ImagePredictor, slice_: np.ndarray) -> SAM2ImagePredictor:
    """Give the predictor one slice as an H x W x 3 uint8 RGB image, as its users do."""
    pred.set_image(np.repeat(slice_[..., None], 3, axis=2))
    return pred


def test_tiny_model_builds_and_encodes(seg: Sam2Segmenter, slices: np.ndarray) -> None:
    assert isinstance(seg, Segmenter)
    assert seg.input_size_px == SIZE == seg.model.image_size
    assert sum(p.numel() for p in seg.model.parameters()) < 2_000_000
    emb = seg.encode(slices)
    assert len(emb) == 2
    c = seg.model.hidden_dim
    for e in emb:
        assert set(e) == {"image_embed", "high_res_0", "high_res_1"}
        assert e["image_embed"].shape == (c, SIZE // 16, SIZE // 16)
        assert e["high_res_0"].shape == (c // 8, SIZE // 4, SIZE // 4)
        assert e["high_res_1"].shape == (c // 4, SIZE // 8, SIZE // 8)
        assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in e.values())
    # per-slice tensors own their storage (a cache must not save the whole batch per slice)
    assert emb[0]["image_embed"].untyped_storage().nbytes() == emb[0]["image_embed"].numel() * 4
    with pytest.raises(ValueError, match="expects slices"):
        seg.encode(np.zeros((1, SIZE, SIZE + 1), np.uint8))


def test_embedding_matches_predictor(
    seg: Sam2Segmenter, predictor: SAM2ImagePredictor, slices: np.ndarray
) -> None:
    emb = seg.encode(slices[:1])[0]
    ref = _set_slice(predictor, slices[0])._features
    torch.testing.assert_close(emb["image_embed"], ref["image_embed"][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(emb["high_res_0"], ref["high_res_feats"][0][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(emb["high_res_1"], ref["high_res_feats"][1][0], atol=1e-5, rtol=0)


def _assert_same_as_reference(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape == (SIZE, SIZE)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    confident = np.abs(ref) > 1e-4
    assert np.array_equal((ours > 0)[confident], (ref > 0)[confident])


@pytest.mark.parametrize(
    "prompt",
    [
        {"box": [40.0, 50.0, 190.0, 200.0]},
        {"point_coords": [[130.0, 120.0], [20.0, 230.0], [140.0, 60.0]], "point_labels": [1, 0, 1]},
        {"box": [70.0, 55.0, 210.0, 185.0], "point_coords": [[30.0, 30.0]], "point_labels": [0]},
    ],
    ids=["box", "points_pos_neg", "box_and_point"],
)
def test_decode_matches_predictor(
    seg: Sam2Segmenter, predictor: SAM2ImagePredictor, slices: np.ndarray, prompt: dict
) -> None:
    emb = seg.encode(slices[:1])[0]
    box = np.asarray(prompt["box"], np.float32) if "box" in prompt else None
    pts = np.asarray(prompt["point_coords"], np.float32) if "point_coords" in prompt else None
    lab = np.asarray(prompt["point_labels"]) if "point_labels" in prompt else None
    ours = seg.decode(emb, Prompts(
        boxes=None if box is None else box[None],
        points=None if pts is None else pts[None],
        point_labels=None if lab is None else lab[None],
    ))
    assert ours.shape == (1, SIZE, SIZE) and ours.dtype == torch.float32
    ref, _, _ = _set_slice(predictor, slices[0]).predict(
        point_coords=pts, point_labels=lab, box=box, multimask_output=False, return_logits=True
    )
    _assert_same_as_reference(ours[0].numpy(), ref[0])


def test_decode_many_boxes_matches_predictor_and_single(
    seg: Sam2Segmenter, predictor: SAM2ImagePredictor, slices: np.ndarray
) -> None:
    emb = seg.encode(slices[1:])[0]
    boxes = np.array([[40, 50, 190, 200], [10, 10, 90, 120], [120, 100, 250, 250]], np.float32)
    together = seg.decode(emb, Prompts(boxes=boxes))
    assert together.shape == (3, SIZE, SIZE)
    for i in range(3):
        alone = seg.decode(emb, Prompts(boxes=boxes[i:i + 1]))
        torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=0)
    # prompts matter: different boxes give different logits
    assert (together[0] - together[1]).abs().max() > 1e-3
    ref, _, _ = _set_slice(predictor, slices[1]).predict(box=boxes, multimask_output=False, return_logits=True)
    for i in range(3):
        _assert_same_as_reference(together[i].numpy(), ref[i, 0])


def test_batch_encode_matches_single(seg: Sam2Segmenter, slices: np.ndarray) -> None:
    batch = seg.encode(slices)
    for i in range(2):
        alone = seg.encode(slices[i:i + 1])[0]
        for key in alone:
            torch.testing.assert_close(batch[i][key], alone[key], atol=1e-5, rtol=0)
    # valid_hw is accepted and ignored (SAM2 has no padding-aware normalisation)
    padded = seg.encode(slices[:1], valid_hw=[(100, SIZE)])[0]
    torch.testing.assert_close(padded["image_embed"], batch[0]["image_embed"], atol=1e-5, rtol=0)


def test_checkpoint_round_trip(seg: Sam2Segmenter, slices: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "tiny_sam2_ddp.pt"
    torch.save({"model": {"module." + k: v for k, v in seg.model.state_dict().items()}}, path)
    other = Sam2Segmenter(_tiny_model(seed=123, checkpoint=path), "tiny_sam2", CPU)
    prompts = Prompts(boxes=np.array([[40, 50, 190, 200]], np.float32),
                      points=np.array([[[100, 100]]], np.float32), point_labels=np.array([[1]]))
    for a, b in zip(seg.encode(slices), other.encode(slices)):
        for key in a:
            assert torch.equal(a[key], b[key])
        assert torch.equal(seg.decode(a, prompts), other.decode(b, prompts))
    # a fresh random model differs, so the equality above is the checkpoint's doing
    fresh = Sam2Segmenter(_tiny_model(seed=123), "tiny_sam2", CPU)
    assert not torch.equal(fresh.encode(slices[:1])[0]["image_embed"], seg.encode(slices[:1])[0]["image_embed"])


def test_checkpoint_with_wrong_keys_raises(seg: Sam2Segmenter, tmp_path: Path) -> None:
    state = dict(seg.model.state_dict())
    state.pop("no_mem_embed")
    state["not_a_sam2_layer.weight"] = torch.zeros(3)
    path = tmp_path / "wrong_keys_sam2.pt"
    torch.save({"model": state}, path)
    with pytest.raises(StateDictMismatch, match="wrong_keys_sam2.pt"):
        build_sam2_model(CONFIG, path, CPU, TINY_SAM2_OVERRIDES)


def test_load_from_registry_spec() -> None:
    spec = get_spec("sam2_hiera_tiny")
    seg = load_sam2_segmenter(spec, None, CPU, autocast_bf16=False, overrides=TINY_SAM2_OVERRIDES)
    assert (seg.name, seg.input_size_px, seg.autocast_bf16) == ("sam2_hiera_tiny", SIZE, False)
    assert not seg.model.training
    with pytest.raises(ValueError, match="not a SAM2 model"):
        load_sam2_segmenter(get_spec("sam_vit_b"), None, CPU)


def test_build_survives_cleared_hydra_and_restores_it() -> None:
    """Another library clearing hydra must not break builds; builds must not re-initialise it."""
    backup = get_gh_backup()
    try:
        GlobalHydra.instance().clear()
        model = _tiny_model(0)
        assert model.image_size == SIZE
        assert not GlobalHydra.instance().is_initialized()
    finally:
        restore_gh_from_backup(backup)


def test_study_input_is_the_unit_slice_without_imagenet_statistics(seg: Sam2Segmenter, slices: np.ndarray) -> None:
    """``unit`` (the MSK study's input: its code calls ``forward_image`` on the 0-1 slice) gives
    each slice min-max scaled to 0-1 in all three channels; ``imagenet_unit`` (SAM2's predictor)
    gives (x/255 - mean) / std. A slice spanning 10..110 shows the difference exactly."""
    study = Sam2Segmenter(seg.model, "tiny_sam2_study", CPU, autocast_bf16=False, normalisation="unit")
    img = np.full((1, SIZE, SIZE), 10, np.uint8)
    img[0, :, SIZE // 2:] = 110
    x = study.prepare(img)
    assert x.shape == (1, 3, SIZE, SIZE)
    assert torch.equal(torch.unique(x), torch.tensor([0.0, 1.0]))
    native = seg.prepare(img)
    want = (110 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(native[0, :, 0, -1], want.float(), atol=1e-6)
    # the encodings differ, so the two conventions cannot share cached embeddings
    assert not torch.allclose(study.encode(slices)[0]["image_embed"], seg.encode(slices)[0]["image_embed"])
    with pytest.raises(ValueError, match="unknown normalisation"):
        Sam2Segmenter(seg.model, "x", CPU, normalisation="sam_mean_std")
