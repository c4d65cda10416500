"""Notebook 04's subject-level sensitivity analysis and physics check on simulated grids whose
true effects are known; figure 5a's drawing."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from mskseg_lib.plots.mixed_effects import plot_forest
from mskseg_lib.stats.acquisition_effects import analyse_effects, data_summary, physics_check
from mskseg_lib.stats.mixed_effects import MixedEffectsSettings, assemble_table
from mskseg_lib.stats.study_effects import published_mixed_effects, with_published

TE_EFFECT_PER_MS = -0.004  # Dice per ms of echo time
FIELD_EFFECT = 0.05  # 3 T vs 1.5 T
FINETUNE_GAIN = {"single": 0.20, "anatomy": 0.15, "all_msk": 0.10}


def simulated_cohort(n_datasets: int = 10, n_subjects: int = 16, seed: int = 0):
    """Subjects with per-subject TE and field strength; dataset-level voxel size and vendor."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(n_datasets):
        spacing = rng.choice([0.3, 0.5, 0.7])
        thickness = rng.choice([0.7, 3.0, 4.0])
        te0 = rng.uniform(10, 40)
        for s in range(n_subjects):
            rows.append({"dataset": f"ds{d:02d}", "subject_id": f"s{s:02d}", "vendor": ["GE", "Siemens"][d % 2],
                         "acquisition": "3D" if thickness < 1 else "2D",
                         "field_strength_t": float(rng.choice([1.5, 3.0])), "te_ms": te0 * rng.uniform(0.6, 1.6),
                         "tr_ms": rng.uniform(500, 3000), "flip_angle_deg": float(rng.choice([10.0, 90.0])),
                         "slice_thickness_mm": thickness, "pixel_spacing_mm": spacing,
                         "rows_px": int(rng.choice([256, 384, 512])), "age_years": rng.uniform(20, 80)})
    subjects = pd.DataFrame(rows)
    effect = dict(zip(subjects["dataset"].unique(), rng.normal(0, 0.04, n_datasets)))
    base = (0.55 + TE_EFFECT_PER_MS * subjects["te_ms"] + FIELD_EFFECT * (subjects["field_strength_t"] == 3.0)
            + subjects["dataset"].map(effect))
    experiments = pd.DataFrame([
        {"experiment_id": "single/a", "mix_kind": "single", "encoder": "frozen", "box_shift_px": 0, "model_key": "m"},
        {"experiment_id": "single/b", "mix_kind": "single", "encoder": "trained", "box_shift_px": 20, "model_key": "m"},
        {"experiment_id": "anatomy/a", "mix_kind": "anatomy", "encoder": "frozen", "box_shift_px": 0, "model_key": "m"},
        {"experiment_id": "all_msk/a", "mix_kind": "all_msk", "encoder": "frozen", "box_shift_px": 0, "model_key": "m"},
    ])
    scores = []
    for eid, gain in [("zero_shot:m", 0.0), ("single/a", FINETUNE_GAIN["single"]), ("single/b", FINETUNE_GAIN["single"]),
                      ("anatomy/a", FINETUNE_GAIN["anatomy"]), ("all_msk/a", FINETUNE_GAIN["all_msk"])]:
        dice = base + gain + rng.normal(0, 0.02, len(subjects))
        scores.append(pd.DataFrame({"experiment_id": eid, "condition": "gt_box", "dataset": subjects["dataset"],
                                    "subject_id": subjects["subject_id"], "dice_mean_slice": dice, "model_key": "m"}))
    return subjects, experiments, pd.concat(scores, ignore_index=True)


@pytest.fixture(scope="module")
def cohort():
    return simulated_cohort()


@pytest.fixture(scope="module")
def analysis(cohort):
    subjects, experiments, scores = cohort
    hidden = subjects.copy()
    hidden.loc[hidden.index[::9], "flip_angle_deg"] = np.nan  # some headers lack the flip angle
    settings = MixedEffectsSettings(reference_model="sam_vit_b", seed=0)
    return analyse_effects(scores, experiments, hidden, settings), subjects


def test_each_finetuning_type_recovers_its_gain_and_the_echo_time_effect(analysis):
    result, subjects = analysis
    fits = result.fits.set_index("finetune_type")
    assert (fits["status"] == "fitted").all() and fits["converged"].all()
    assert set(fits["reference_arm"]) == {"m zero-shot"}  # sam_vit_b absent: fallback, stated
    coef = result.coefficients
    for kind, gain in [("single", FINETUNE_GAIN["single"]), ("mixed", FINETUNE_GAIN["anatomy"]),
                       ("all_msk", FINETUNE_GAIN["all_msk"])]:
        c = coef[coef["finetune_type"] == kind].set_index("term")
        # te_ms is z-scored on the model's rows: true effect = per-ms effect x SD of TE there
        truth = {"arm_m_finetuned": gain, "te_ms": TE_EFFECT_PER_MS * subjects["te_ms"].std(ddof=0),
                 "field_strength_t": FIELD_EFFECT, "age_years": 0.0, "rows_px": 0.0}
        for term, value in truth.items():  # within 3 standard errors (nine checks: not 95% CIs)
            assert abs(c.loc[term, "coef"] - value) < 3 * c.loc[term, "se"], (kind, term)
        assert c.loc["te_ms", "ci_high"] < 0 and c.loc["field_strength_t", "ci_low"] > 0
    single = coef[coef["finetune_type"] == "single"].set_index("term")
    # encoder finetuned and box shift are the same run here (perfectly collinear): one is dropped,
    # the other is null (that run has the same gain)
    assert len({"encoder_finetuned", "box_shift_applied"} & set(single.index)) == 1
    for term in {"encoder_finetuned", "box_shift_applied"} & set(single.index):
        assert abs(single.loc[term, "coef"]) < 3 * single.loc[term, "se"]
    fits = result.fits.set_index("finetune_type")
    assert "te_ms:encoder_finetuned" in fits.loc["single", "dropped_interactions"] or \
        "te_ms:encoder_finetuned" in set(single.index)


def test_tables_report_missingness_ks_vif_and_the_data(analysis, cohort):
    result, subjects = analysis
    miss = result.missingness.set_index("variable")
    assert miss.loc["flip_angle_deg", "n_missing"] == len(subjects[::9])
    assert miss.loc["te_ms", "n_missing"] == 0
    assert list(result.ks["variable"]) == ["flip_angle_deg"] and result.ks["ks_statistic"].iloc[0] < 0.1
    assert not result.table["flip_angle_deg"].isna().any()
    assert set(result.table["flip_angle_deg"]) <= {10.0, 90.0}
    assert set(result.vif["finetune_type"]) == {"single", "mixed", "all_msk"}
    assert (result.vif.loc[~result.vif["dropped"], "vif_after"].dropna() <= 10).all()
    summary = data_summary(result.table)
    single = summary[summary["finetune_type"] == "single"]
    assert len(single) == 10 and (single["n_experiments"] == 2).all() and (single["n_rows"] == 32).all()
    x04 = with_published(result.coefficients)
    mixed_te = x04[(x04["term"] == "te_ms") & (x04["finetune_type"] == "mixed")]
    assert mixed_te["published_coef"].iloc[0] == pytest.approx(-0.099)


def test_collinear_parameter_is_dropped_and_the_model_refit(cohort):
    subjects, experiments, scores = cohort
    dup = subjects.copy()
    dup["tr_ms"] = 50 * dup["te_ms"] + 1  # TR a copy of TE: one of the two must go
    result = analyse_effects(scores, experiments, dup)
    vif = result.vif[result.vif["finetune_type"] == "single"].set_index("feature")
    assert vif.loc[["te_ms", "tr_ms"], "dropped"].sum() == 1
    assert (result.fits["status"] == "fitted").all()


def test_absent_type_and_single_dataset_are_reported_not_raised(cohort):
    subjects, experiments, scores = cohort
    only_single = scores[~scores["experiment_id"].isin(["anatomy/a", "all_msk/a"])]
    one_dataset = only_single[(only_single["dataset"] == "ds00") | (only_single["experiment_id"] == "zero_shot:m")]
    result = analyse_effects(one_dataset, experiments, subjects)
    status = result.fits.set_index("finetune_type")["status"]
    assert status["mixed"].startswith("not run") and status["all_msk"].startswith("not run")
    assert status["single"].startswith("not estimable: fewer than 3 datasets")
    assert result.coefficients.empty


def test_physics_check_gives_agrees_contradicts_and_inconclusive(cohort):
    subjects, _, scores = cohort
    zs = scores[scores["experiment_id"] == "zero_shot:m"]
    _, verdict = physics_check(zs, subjects, "m")
    v = verdict.set_index("term")["verdict"]
    assert v["te_ms"] == "agrees" and v["field_strength_t"] == "agrees"
    flipped = zs.copy()
    flipped["dice_mean_slice"] = 1.0 - flipped["dice_mean_slice"]  # every effect reversed
    _, verdict = physics_check(flipped, subjects, "m")
    v = verdict.set_index("term")["verdict"]
    assert v["te_ms"] == "contradicts" and v["field_strength_t"] == "contradicts"
    decisive = 0  # Dice without any effect: a decisive verdict is a 5% false positive
    for seed in range(12):
        rng = np.random.default_rng(seed)
        noise = zs.assign(dice_mean_slice=0.7 + rng.normal(0, 0.02, len(zs)))
        _, verdict = physics_check(noise, subjects, "m")
        decisive += not verdict.set_index("term").loc["te_ms", "verdict"].startswith("inconclusive")
    assert decisive <= 2  # binomial(12, 0.05): P(> 2) = 2%
    with pytest.raises(ValueError, match="no zero-shot scores"):
        physics_check(zs, subjects, "other")


def test_physics_verdict_uses_the_within_dataset_effect_when_datasets_confound_it(cohort):
    """Long-TE datasets segment better (their contrast suits the anatomy) while, inside each
    dataset, a longer TE costs Dice: the within-dataset estimate recovers the physics."""
    subjects, _, scores = cohort
    zs = scores[scores["experiment_id"] == "zero_shot:m"].copy()
    te = subjects.set_index(["dataset", "subject_id"])["te_ms"]
    te_mean = subjects.groupby("dataset")["te_ms"].transform("mean").to_numpy()
    rng = np.random.default_rng(11)
    within_effect = -0.004  # per ms, inside a dataset
    dice = 0.5 + 0.012 * (te_mean - 25) + within_effect * (subjects["te_ms"].to_numpy() - te_mean)
    zs["dice_mean_slice"] = dice + rng.normal(0, 0.01, len(dice))
    fit, verdict = physics_check(zs, subjects, "m")
    row = verdict.set_index("term").loc["te_ms"]
    assert fit["status"] == "fitted" and row["source"] == "within datasets" and row["verdict"] == "agrees"
    te_sd = te.std(ddof=0)
    assert abs(row["coef"] - within_effect * te_sd) < 3 * (row["ci_high"] - row["ci_low"]) / 3.92
    assert row["pooled_coef"] > row["coef"]  # the pooled estimate is pulled up by the between-dataset trend
    spacing = verdict.set_index("term").loc["pixel_spacing_mm"]  # constant inside each dataset
    assert spacing["source"].startswith("between datasets only") or spacing["verdict"].startswith("not estimable")


def test_assembled_rows_carry_arm_and_settings(cohort):
    subjects, experiments, scores = cohort
    table = assemble_table(scores, experiments, subjects)
    row = table[table["experiment_id"] == "single/b"].iloc[0]
    assert (row["arm"], row["encoder_finetuned"], row["box_shift_applied"], row["finetune_type"]) == \
        ("m finetuned", 1, 1, "single")
    zs = table[table["experiment_id"] == "zero_shot:m"].iloc[0]
    assert (zs["arm"], zs["finetune_type"]) == ("m zero-shot", "zero_shot")


def test_forest_plot_draws_every_estimate_and_the_published_values(analysis):
    result, _ = analysis
    coef = result.coefficients
    fig = plot_forest(coef, published_mixed_effects())
    ax = fig.axes[0]
    drawn = coef[~coef["term"].isin(["Intercept", "Group Var"])]
    assert len(ax.get_yticks()) == drawn["term"].nunique()
    n_points = sum(len(line.get_xdata()) for line in ax.lines if line.get_marker() == "o")
    assert n_points == len(drawn)
    # published estimates as diamonds: te_ms beside the mixed and all_msk points, pixel spacing (type not
    # stated) at its row's centre; the flip-angle and TE ranges are bands
    terms = set(drawn["term"])
    assert {"te_ms", "pixel_spacing_mm"} <= terms
    diamonds = sorted(float(line.get_xdata()[0]) for line in ax.lines if line.get_marker() == "D")
    assert diamonds == pytest.approx([-0.099, -0.080, -0.058])
    assert len(ax.collections) >= 1  # the TE range band (fill_betweenx) besides the error bars
    empty = plot_forest(coef.iloc[:0])
    assert "no fitted" in empty.axes[0].texts[0].get_text()


def test_subject_level_fit_reports_the_subject_variance(analysis):
    result, _ = analysis
    fits = result.fits.set_index("finetune_type")
    # the simulated subjects share a subject-level baseline across experiments (TE, field strength
    # are per subject) but no extra subject intercept: the component is small, and reported
    assert fits["subject_var"].notna().all() and (fits["subject_var"] < 0.02 ** 2).all()
    assert fits["formula"].str.endswith("(1 | dataset) + (1 | dataset:subject_id)").all()
