"""The synthetic cohort: deterministic, physically plausible, with recoverable truth."""
import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from mskseg_lib.data import anatomy, cohort, mr_physics
from mskseg_lib.data.catalog import DATASETS
from mskseg_lib.data.cohort import CohortSettings, generate_cohort, load_truth
from mskseg_lib.data.errors import SettingsError
from mskseg_lib.from_profile import data as fp_data

TINY = CohortSettings(seed=20261122, datasets=("Spine_2D_T2ax_Clinical_Anatomical_38",
                                               "Knee_3D_CUBE_Research_Anatomical_300"),
                      subjects_per_dataset=3, matrix_scale=0.25, slice_scale=0.15, supersample=2)


def test_generation_is_deterministic_and_resumable(tmp_path):
    manifest = generate_cohort(tmp_path / "cohort", TINY, progress=False)
    first = pd.read_csv(manifest)
    rec = manifest.parent / "raw" / first.dataset[0] / first.subject_id[0] / "record.json"
    mtime = rec.stat().st_mtime_ns
    assert generate_cohort(tmp_path / "cohort", TINY, progress=False) == manifest
    assert rec.stat().st_mtime_ns == mtime  # finished subjects are skipped
    spec = DATASETS["Spine_2D_T2ax_Clinical_Anatomical_38"]
    again = cohort.generate_subject(spec, 0, TINY, manifest.parent / "fresh")
    assert again["truth"] == json.loads(rec.read_text())["truth"]
    assert load_truth(tmp_path / "cohort")[f"{spec.name}/{again['manifest']['subject_id']}"] == again["truth"]
    assert len(first) == 6 and set(first.image_format) == {"dicom", "nifti"}
    reseeded = dataclasses.replace(TINY, seed=TINY.seed + 1)
    generate_cohort(tmp_path / "cohort", reseeded, progress=False)  # other settings: regenerated, not reused
    assert json.loads(rec.read_text())["truth"] != again["truth"]


def test_profile_cohort_settings_keep_the_subject_fingerprints(tiny_cfg):
    """The profile's values reach the settings as written, so a profile's existing cohort (its
    subjects' fingerprints: seed, dataset, index, matrix and slice scale, supersampling) is reused."""
    settings = fp_data.cohort_settings(tiny_cfg)
    assert settings == TINY
    spec = DATASETS["Knee_3D_CUBE_Research_Anatomical_300"]
    legacy = [tiny_cfg["seed"], spec.name, 2, 0.25, 0.15, 2, 1]  # the key fingerprinted before settings objects
    assert cohort.subject_fingerprint(settings, spec, 2) == hashlib.sha256(json.dumps(legacy).encode()).hexdigest()[:16]
    assert fp_data.cohort_dir(tiny_cfg).name == "cohort"
    tiny_cfg["cohort"]["enabled"] = False
    assert fp_data.cohort_settings(tiny_cfg) is None and fp_data.generate(tiny_cfg) is None
    with pytest.raises(SettingsError, match="supersample"):
        CohortSettings(supersample=0)


def _render(spec_name, **proto_changes):
    spec = DATASETS[spec_name]
    rng = np.random.default_rng(1)
    demo = {"age_years": 40.0, "sex": "F", "height_m": 1.65, "bmi": 24.0, "weight_kg": 65.0}
    proto = {**cohort.sample_protocol(spec, TINY, rng), **proto_changes}
    params = anatomy.sample_params(spec.geometry, demo, np.random.default_rng(2))
    return spec, cohort.render_subject(spec, proto, params, 2, np.random.default_rng(3))


def _cnr(rendered, spec, a_label, b_struct):
    img, struct, tissue = rendered["image"], rendered["struct"], rendered["tissue"]
    idx = {n: i for i, (n, _) in enumerate(tissue)}
    a = img[rendered["labels"] == spec.label_values()[a_label]]
    b = img[struct == idx[b_struct]]
    return abs(a.mean() - b.mean()) / (rendered["sigma"] * cohort.IMAGE_SCALE)


def test_longer_echo_time_lowers_contrast_to_noise():
    name = "Thigh_2D_T1ax_Clinical_Anatomical_50"
    spec, short = _render(name, te_ms=10.0, field_strength_t=3.0, tr_ms=600.0)
    _, long = _render(name, te_ms=60.0, field_strength_t=3.0, tr_ms=600.0)
    assert short["sigma"] == pytest.approx(long["sigma"])  # noise does not depend on TE
    snr = lambda r: r["image"][r["labels"] == spec.label_values()["extensors"]].mean() / (r["sigma"] * cohort.IMAGE_SCALE)  # noqa: E731
    assert snr(long) < 0.5 * snr(short)  # muscle T2 ~35 ms: exp(-50/35) ~ 0.24
    assert _cnr(long, spec, "extensors", "subcutaneous_fat") < 0.9 * _cnr(short, spec, "extensors", "subcutaneous_fat")


def test_noise_grows_with_smaller_voxels_and_lower_field():
    kw = dict(sequence="FSE", te_ms=20.0, tr_ms=1000.0, flip_angle_deg=90.0)
    big = mr_physics.snr_factor((1.0, 1.0, 3.0), 256, 20, "2D", 3.0)
    small = mr_physics.snr_factor((0.5, 0.5, 3.0), 256, 20, "2D", 3.0)
    low_field = mr_physics.snr_factor((1.0, 1.0, 3.0), 256, 20, "2D", 1.5)
    s = lambda snr, b0=3.0: mr_physics.noise_sigma(field_strength_t=b0, snr=snr, **kw)  # noqa: E731
    assert s(small) == pytest.approx(4 * s(big), rel=1e-9)
    assert s(low_field, 1.5) > s(big)


def test_rician_noise_statistics():
    rng = np.random.default_rng(0)
    out = mr_physics.add_rician_noise(np.zeros(200_000), 2.0, rng)
    assert out.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.01)  # Rayleigh mean on background


def test_truth_volume_matches_label_volume():
    """The stored true volume (sub-voxel rendering) agrees with the voxel-centre label volume
    for large muscle groups extruded along the slice axis, and the knee truth is the parameter."""
    spec, r = _render("Thigh_2D_T1ax_Clinical_Anatomical_50")
    truth = cohort.truth_of(spec, {}, r, {}, {})
    voxel_cm3 = abs(np.linalg.det(r["affine"][:3, :3])) / 1000.0
    for label in ("extensors", "hamstrings", "adductors", "subcutaneous_fat"):
        value = spec.label_values()[label]
        assert (r["labels"] == value).sum() * voxel_cm3 == pytest.approx(truth["volume_cm3"][label], rel=0.04), label
    knee, rk = _render("Knee_3D_CUBE_Research_Anatomical_300")
    demo = {"age_years": 40.0, "sex": "F", "bmi": 24.0, "weight_kg": 65.0}
    params = anatomy.sample_params("knee", demo, np.random.default_rng(2))
    assert cohort.truth_of(knee, params, rk, {}, {})["thickness_mm"]["femoral"] == params["femoral_thickness_mm"]


def test_demographic_effects_are_recoverable():
    """Cartilage thins with age, discs lose height with age, muscle grows with weight."""
    rng = np.random.default_rng(5)
    ages = rng.uniform(20, 80, 300)
    weights = rng.uniform(50, 110, 300)
    def woman(age):
        return {"age_years": age, "sex": "F", "weight_kg": 70, "bmi": 25}

    knee = [anatomy.sample_params("knee", woman(a), rng)["femoral_thickness_mm"] for a in ages]
    disc = [anatomy.sample_params("spine_axial_disc", woman(a), rng)["disc_height_mm"] for a in ages]
    muscle = [anatomy.sample_params("thigh", {"age_years": 50, "sex": "M", "weight_kg": w, "bmi": 25}, rng)["muscle_radius_mm"]
              for w in weights]
    slope = lambda x, y: np.polyfit(x, y, 1)[0]  # noqa: E731
    assert slope(ages, knee) == pytest.approx(-0.012, abs=0.004)
    assert slope(ages, disc) == pytest.approx(-0.045, abs=0.01)
    assert slope(weights, muscle) > 0.1


def test_undersampling_degrades_image():
    rng = np.random.default_rng(0)
    img = np.zeros((32, 48, 40), np.float32)
    img[8:24, 10:38, 10:30] = 1.0
    full = mr_physics.add_rician_noise(img, 0.01, rng)
    acc = mr_physics.undersample(img, 0.01, 8, rng)
    err = lambda x: np.sqrt(((x - img) ** 2).mean())  # noqa: E731
    assert err(acc) > 3 * err(full)
    assert acc[16, 24, 20] > 0.5  # the object is still there
