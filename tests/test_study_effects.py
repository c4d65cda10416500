"""The study's mixed-effects analysis (mean Dice per experiment and dataset): known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mskseg_lib.data.errors import DataError
from mskseg_lib.stats.mixed_effects import MixedEffectsSettings
from mskseg_lib.stats.study_effects import (
    analyse_study_effects,
    dataset_acquisition,
    dataset_level_scores,
    published_mixed_effects,
    study_formula,
    with_published,
)

# true effects of the simulated study, in raw units (Dice per ms, per degree, per 0/1)
TRUTH = {"te_per_ms": -0.002, "flip_per_deg": 0.001, "finetuned": 0.15, "encoder": 0.05, "shift": -0.03,
         "medsam": -0.04, "te_x_encoder_per_ms": 0.0015}


def simulated_study(n_datasets: int = 40, n_subjects: int = 4, seed: int = 0, random_sd: float = 0.01,
                    subject_sd: float = 0.02):
    """Datasets with their own (constant) protocol; per dataset the SAM and MedSAM zero-shot
    baselines and four single-dataset finetunes (SAM frozen, SAM trained, SAM trained with box
    shift, MedSAM trained). Mean Dice follows TRUTH plus a dataset intercept; the MedSAM
    zero-shot rows carry an extra +0.1 that must not reach the model (not its reference)."""
    rng = np.random.default_rng(seed)
    subjects, experiments, scores = [], [], []
    for d in range(n_datasets):
        ds = f"ds{d:02d}"
        acq = {"te_ms": rng.uniform(5, 100), "tr_ms": rng.uniform(10, 4000),
               "flip_angle_deg": float(rng.choice([10, 25, 90, 120, 150])),
               "slice_thickness_mm": rng.uniform(0.5, 6), "pixel_spacing_mm": rng.uniform(0.3, 1.0),
               "acquisition": str(rng.choice(["2D", "3D"])), "vendor": str(rng.choice(["GE", "Siemens", "Philips"])),
               "field_strength_t": float(rng.choice([1.5, 3.0])), "rows_px": int(rng.choice([256, 384, 512]))}
        for s in range(n_subjects):
            subjects.append({"dataset": ds, "subject_id": f"s{s}", "age_years": rng.uniform(20, 80), **acq})
        intercept = rng.normal(0, random_sd)
        arms = [("zero_shot:sam_vit_b", None), ("zero_shot:medsam_vit_b", None),
                (f"{ds}/sam-frozen", ("sam_vit_b", "frozen", 0)), (f"{ds}/sam-trained", ("sam_vit_b", "trained", 0)),
                (f"{ds}/sam-trained-shift", ("sam_vit_b", "trained", 5)),
                (f"{ds}/medsam-trained", ("medsam_vit_b", "trained", 0))]
        for eid, spec in arms:
            if spec is None:
                tuned = enc = shift = medsam = 0
                extra = 0.1 if "medsam" in eid else 0.0
            else:
                tuned, enc, shift, medsam = 1, int(spec[1] == "trained"), int(spec[2] > 0), int(spec[0] == "medsam_vit_b")
                extra = 0.0
                experiments.append({"experiment_id": eid, "mix_kind": "single", "model_key": spec[0],
                                    "encoder": spec[1], "box_shift_grid_px": spec[2]})
            mean = (0.5 + TRUTH["te_per_ms"] * acq["te_ms"] + TRUTH["flip_per_deg"] * acq["flip_angle_deg"]
                    + TRUTH["finetuned"] * tuned + TRUTH["encoder"] * enc + TRUTH["shift"] * shift
                    + TRUTH["medsam"] * medsam + TRUTH["te_x_encoder_per_ms"] * acq["te_ms"] * enc + intercept + extra)
            for s in range(n_subjects):
                scores.append({"experiment_id": eid, "condition": "gt_box", "dataset": ds, "subject_id": f"s{s}",
                               "dice_mean_slice": mean + rng.normal(0, subject_sd)})
    return pd.DataFrame(subjects), pd.DataFrame(experiments), pd.DataFrame(scores)


@pytest.fixture(scope="module")
def study():
    subjects, experiments, scores = simulated_study()
    return subjects, experiments, scores, analyse_study_effects(scores, experiments, subjects)


def test_response_is_the_mean_over_subjects_per_experiment_and_dataset():
    scores = pd.DataFrame({
        "experiment_id": ["ds1/a", "ds1/a", "ds1/a", "zero_shot:sam_vit_b", "zero_shot:sam_vit_b", "ds1/a"],
        "condition": ["gt_box"] * 5 + ["shifted"],
        "dataset": ["ds1", "ds1", "ds2", "ds1", "ds1", "ds1"],
        "subject_id": ["s1", "s2", "s3", "s1", "s2", "s1"],
        "dice_mean_slice": [0.6, 0.8, 0.5, 0.4, 0.6, 0.0]})
    experiments = pd.DataFrame([{"experiment_id": "ds1/a", "mix_kind": "anatomy", "model_key": "medsam_vit_b",
                                 "encoder": "trained", "box_shift_grid_px": 20}])
    out = dataset_level_scores(scores, experiments, condition="gt_box").set_index(["experiment_id", "dataset"])
    assert out.loc[("ds1/a", "ds1"), "mean_dice"] == pytest.approx(0.7)  # the shifted-condition 0.0 is not in it
    assert out.loc[("ds1/a", "ds1"), "n_subjects"] == 2 and out.loc[("ds1/a", "ds2"), "mean_dice"] == pytest.approx(0.5)
    a = out.loc[("ds1/a", "ds1")]
    assert (a["finetune_type"], a["finetuned"], a["encoder_finetuned"], a["box_shift_applied"], a["initial_weights"]) == \
        ("mixed", 1, 1, 1, "medsam_vit_b")
    z = out.loc[("zero_shot:sam_vit_b", "ds1")]
    assert z["mean_dice"] == pytest.approx(0.5) and (z["finetuned"], z["encoder_finetuned"], z["box_shift_applied"]) == (0, 0, 0)
    assert z["arm"] == "sam_vit_b zero-shot"
    # an older grid (box_shift_px, strategy) and a renamed subject Dice column read the same
    legacy = experiments.drop(columns=["encoder", "box_shift_grid_px"]).assign(strategy="partial", box_shift_px=0)
    renamed = scores.rename(columns={"dice_mean_slice": "dice_subject"})
    old = dataset_level_scores(renamed, legacy).set_index(["experiment_id", "dataset"]).loc[("ds1/a", "ds1")]
    assert (old["encoder_finetuned"], old["box_shift_applied"], old["mean_dice"]) == (0, 0, pytest.approx(0.7))
    assert old["dice_column"] == "dice_subject"
    with pytest.raises(DataError, match="subject scores: no subject Dice column"):
        dataset_level_scores(scores.drop(columns=["dice_mean_slice"]), experiments)


def test_acquisition_per_dataset_is_the_mean_of_numbers_and_the_mode_of_categories():
    subjects = pd.DataFrame({
        "dataset": ["d1", "d1", "d1", "d2", "d2"], "subject_id": ["a", "b", "c", "d", "e"],
        "te_ms": [10.0, 20.0, np.nan, 5.0, 7.0], "flip_angle_deg": [90.0, 90.0, 150.0, np.nan, np.nan],
        "vendor": ["GE", "Siemens", "Siemens", "GE", None], "field_strength_t": [1.5, 3.0, np.nan, 3.0, 3.0],
        "acquisition": ["3D", "3D", "2D", "2D", "2D"]})
    out = dataset_acquisition(subjects, numeric=("te_ms", "flip_angle_deg"),
                              categorical=("vendor", "field_strength_t", "acquisition_3d")).set_index("dataset")
    assert out.loc["d1", "te_ms"] == pytest.approx(15.0) and out.loc["d1", "flip_angle_deg"] == pytest.approx(110.0)
    assert out.loc["d1", "vendor"] == "Siemens" and out.loc["d2", "vendor"] == "GE"
    assert out.loc["d1", "field_strength_t"] == 1.5  # a 1.5 / 3.0 tie: the smaller value
    assert out.loc["d1", "acquisition_3d"] == 1 and out.loc["d2", "acquisition_3d"] == 0
    assert np.isnan(out.loc["d2", "flip_angle_deg"]) and out.loc["d1", "n_subjects"] == 3
    with pytest.raises(DataError, match="'2D' or '3D'"):
        dataset_acquisition(subjects.assign(acquisition="4D"), numeric=("te_ms",), categorical=("acquisition_3d",))


def test_formula_is_the_studys_terms_and_named_interactions():
    assert study_formula(weights=("medsam_vit_b", "sam2_hiera_base_plus")) == (
        "mean_dice ~ te_ms + pixel_spacing_mm + slice_thickness_mm + flip_angle_deg + acquisition_3d"
        " + finetuned + encoder_finetuned + box_shift_applied + initial_weights_medsam_vit_b"
        " + initial_weights_sam2_hiera_base_plus + te_ms:slice_thickness_mm + te_ms:encoder_finetuned")


def test_reference_level_is_sam_zero_shot_and_other_zero_shot_rows_stay_out(study):
    subjects, experiments, scores, result = study
    fit = result.fits.set_index("finetune_type").loc["single"]
    assert result.reference_arm == "sam_vit_b zero-shot" and fit["reference_arm"] == "sam_vit_b zero-shot"
    assert result.excluded_arms == ["medsam_vit_b zero-shot"]
    assert fit["n_obs"] == 40 * 5 and fit["n_groups"] == 40  # SAM zero-shot + four finetunes per dataset
    assert fit["formula"] == study_formula(weights=("medsam_vit_b",))  # every term estimable: the full formula
    terms = set(result.coefficients["term"])
    assert "initial_weights_medsam_vit_b" in terms and "initial_weights_sam_vit_b" not in terms
    # without SAM ViT-B zero-shot the first zero-shot model stands in, and says so
    no_sam = scores[scores["experiment_id"] != "zero_shot:sam_vit_b"]
    fallback = analyse_study_effects(no_sam, experiments, subjects)
    assert fallback.reference_arm == "medsam_vit_b zero-shot"
    assert set(fallback.fits["reference_arm"]) == {"medsam_vit_b zero-shot"}


def test_simulated_dataset_level_effects_are_recovered(study):
    subjects, _, _, result = study
    fit = result.fits.set_index("finetune_type").loc["single"]
    assert fit["status"] == "fitted" and fit["converged"] and fit["dropped_terms"] == ""
    coef = result.coefficients[result.coefficients["finetune_type"] == "single"].set_index("term")
    per_dataset = subjects.groupby("dataset").first()
    te_sd, te_mean = per_dataset["te_ms"].std(ddof=0), per_dataset["te_ms"].mean()  # every dataset has 5 rows
    flip_span = per_dataset["flip_angle_deg"].max() - per_dataset["flip_angle_deg"].min()
    # truths on the model's scales: TE z-scored (StandardScaler), flip angle min-max scaled; the encoder's
    # main effect is taken at the mean TE because of the TE x encoder interaction
    truth = {"te_ms": TRUTH["te_per_ms"] * te_sd, "flip_angle_deg": TRUTH["flip_per_deg"] * flip_span,
             "finetuned": TRUTH["finetuned"], "encoder_finetuned": TRUTH["encoder"] + TRUTH["te_x_encoder_per_ms"] * te_mean,
             "box_shift_applied": TRUTH["shift"], "initial_weights_medsam_vit_b": TRUTH["medsam"],
             "te_ms:encoder_finetuned": TRUTH["te_x_encoder_per_ms"] * te_sd,
             "pixel_spacing_mm": 0.0, "slice_thickness_mm": 0.0, "acquisition_3d": 0.0, "te_ms:slice_thickness_mm": 0.0}
    tolerance = {"flip_angle_deg": 0.03, "acquisition_3d": 0.015}  # between-dataset terms: 40 datasets
    for term, value in truth.items():
        row = coef.loc[term]
        assert row["ci_low"] <= value <= row["ci_high"], (term, value, row["ci_low"], row["ci_high"])
        assert abs(row["coef"] - value) < tolerance.get(term, 0.01), (term, value, row["coef"])
    assert coef.loc["Group Var", "coef"] == pytest.approx(0.01 ** 2, rel=0.8)


def test_few_datasets_are_reported_not_raised_and_between_dataset_terms_limited(study):
    subjects, experiments, scores, _ = study
    four = [f"ds{d:02d}" for d in range(4)]
    exps = experiments.copy()
    exps.loc[exps["experiment_id"].str.startswith(tuple(four)), "mix_kind"] = "anatomy"  # a 'mixed' type on 4 datasets
    two = scores[scores["dataset"].isin([*four, "ds10", "ds11"])]
    result = analyse_study_effects(two, exps, subjects)
    fits = result.fits.set_index("finetune_type")
    assert fits.loc["single", "status"].startswith("not estimable: 2 dataset(s)")
    assert fits.loc["all_msk", "status"].startswith("not run")
    assert fits.loc["mixed", "status"] == "fitted"
    between = [t for t in result.coefficients.loc[result.coefficients["finetune_type"] == "mixed", "term"]
               if t in ("te_ms", "pixel_spacing_mm", "slice_thickness_mm", "flip_angle_deg", "acquisition_3d")]
    assert len(between) <= 4 - 2  # four datasets: intercept + two dataset-level terms + the random intercept
    assert "beyond what 4 datasets allow" in fits.loc["mixed", "dropped_terms"]


def test_vif_screen_imputation_and_ks_at_dataset_level(study):
    subjects, experiments, scores, _ = study
    s = subjects.copy()
    s["tr_ms"] = 40 * s["te_ms"] + 3  # TR a copy of TE: the screen must drop one of the two
    s.loc[s["dataset"] == "ds05", "flip_angle_deg"] = np.nan  # one dataset's headers lack the flip angle
    result = analyse_study_effects(scores, experiments, s)
    vif = result.vif.set_index("feature")
    assert vif.loc[["te_ms", "tr_ms"], "dropped"].sum() == 1 and vif.loc["te_ms", "vif_before"] > 1e6
    assert (vif.loc[~vif["dropped"], "vif_after"] <= 10).all()
    miss = result.missingness.set_index("variable")
    assert miss.loc["flip_angle_deg", "n_missing_subjects"] == 4 and miss.loc["flip_angle_deg", "n_missing_datasets"] == 1
    assert list(result.ks["variable"]) == ["flip_angle_deg"] and result.ks["n_imputed"].iloc[0] == 1
    observed_levels = set(subjects.loc[subjects["dataset"] != "ds05", "flip_angle_deg"])
    imputed = result.data.loc[result.data["dataset"] == "ds05", "flip_angle_deg"]
    assert set(imputed) <= observed_levels  # a classifier: an observed flip angle
    assert (result.data.loc[result.data["dataset"] == "ds05", "imputed_variables"] == "flip_angle_deg").all()


def test_published_values_sit_beside_the_matching_type_and_term():
    published = published_mixed_effects()
    assert set(published["term"]) == {"flip_angle_deg", "te_ms", "pixel_spacing_mm"}
    coef = pd.DataFrame({"finetune_type": ["single", "mixed", "all_msk", "mixed", "all_msk", "single"],
                         "term": ["te_ms", "te_ms", "te_ms", "pixel_spacing_mm", "flip_angle_deg", "Intercept"],
                         "coef": [0.0] * 6})
    out = with_published(coef).set_index(["finetune_type", "term"])
    assert out.loc[("mixed", "te_ms"), ["published_coef", "published_ci_low", "published_ci_high"]].tolist() == \
        [-0.099, -0.158, -0.040]
    assert out.loc[("all_msk", "te_ms"), ["published_coef", "published_ci_low", "published_ci_high"]].tolist() == \
        [-0.058, -0.096, -0.019]
    single = out.loc[("single", "te_ms")]  # no single-dataset value is printed; the range over types is
    assert np.isnan(single["published_coef"])
    assert (single["published_range_low"], single["published_range_high"]) == (-0.099, -0.058)
    ps = out.loc[("mixed", "pixel_spacing_mm")]
    assert (ps["published_coef"], ps["published_ci_low"], ps["published_ci_high"], ps["published_finetune_type"]) == \
        (-0.080, -0.136, -0.025, "not stated")
    fa = out.loc[("all_msk", "flip_angle_deg")]
    assert (fa["published_range_low"], fa["published_range_high"]) == (0.714, 0.773) and np.isnan(fa["published_coef"])
    assert np.isnan(out.loc[("single", "Intercept"), "published_coef"])


def test_an_unknown_interaction_is_refused_with_the_setting_named(study):
    subjects, experiments, scores, _ = study
    with pytest.raises(ValueError, match=r"mixed_effects.interactions: \['te_ms', 'encoder_trained'\]"):
        analyse_study_effects(scores, experiments, subjects,
                              MixedEffectsSettings(interactions=[["te_ms", "encoder_trained"]]))
    with pytest.raises(ValueError, match="pairs"):
        MixedEffectsSettings(interactions=[["te_ms"]])
    assert MixedEffectsSettings(interactions=[["te_ms", "slice_thickness_mm"]]).interactions == (
        ("te_ms", "slice_thickness_mm"),)


def test_a_parameter_no_dataset_records_is_left_out_and_said_so(study):
    subjects, experiments, scores, _ = study
    result = analyse_study_effects(scores, experiments, subjects.assign(rows_px=np.nan))
    miss = result.missingness.set_index("variable")
    assert miss.loc["rows_px", "role"] == "left out: no dataset records it" and miss.loc["rows_px", "n_missing_datasets"] == 40
    assert "rows_px" not in set(result.vif["feature"])
    assert result.fits.set_index("finetune_type").loc["single", "status"] == "fitted"
