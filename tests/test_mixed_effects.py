"""Mixed-effects pipeline: known-answer checks on simulated and constructed tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mskseg_lib.stats.mixed_effects import (
    VariableTypes,
    drop_collinear,
    encode,
    fit_mixed,
    formula_string,
    impute,
    ks_sensitivity,
    missingness,
    simulate_table,
    vif_table,
)


def test_fit_recovers_known_coefficients_and_random_variance():
    truth = {"te_ms": -0.08, "flip_angle_deg": 0.12, "pixel_spacing_mm": -0.05}
    data = simulate_table(truth, n_datasets=15, n_subjects=30, random_sd=0.06, noise_sd=0.03, seed=3)
    fit = fit_mixed(data, "dice", list(truth))
    assert fit.converged and fit.n_groups == 15 and fit.n_obs == 450
    coef = fit.coefficients.set_index("term")
    for name, value in truth.items():  # each estimate within 3.5 standard errors of the truth
        assert abs(coef.loc[name, "coef"] - value) < 3.5 * coef.loc[name, "se"], name
    assert abs(coef.loc["Intercept", "coef"] - 0.7) < 3.5 * coef.loc["Intercept", "se"]
    assert fit.random_intercept_var == pytest.approx(0.06 ** 2, rel=0.8)  # 15 groups: a loose check
    assert fit.residual_var == pytest.approx(0.03 ** 2, rel=0.2)


def test_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time():
    truth = {"te_ms": -0.08, "flip_angle_deg": 0.12}
    hits = []
    for seed in range(40):
        data = simulate_table(truth, n_datasets=10, n_subjects=15, seed=100 + seed)
        coef = fit_mixed(data, "dice", list(truth)).coefficients.set_index("term")
        hits += [coef.loc[k, "ci_low"] <= v <= coef.loc[k, "ci_high"] for k, v in truth.items()]
    assert 0.85 <= np.mean(hits) <= 1.0  # 80 intervals; a broken CI (e.g. 1 SE wide, 68%) fails


def test_interaction_is_estimated_when_present_and_null_when_absent():
    rng = np.random.default_rng(99)
    data = simulate_table({"a": 0.1, "b": -0.05}, n_datasets=10, n_subjects=40, seed=1)
    data["dice"] += 0.07 * data["a"] * data["b"]
    fit = fit_mixed(data, "dice", ["a", "b"], interactions=[("a", "b")]).coefficients.set_index("term")
    assert fit.loc["a:b", "ci_low"] <= 0.07 <= fit.loc["a:b", "ci_high"] and fit.loc["a:b", "p_value"] < 1e-6
    data["dice"] -= 0.07 * data["a"] * data["b"]
    data["c"] = rng.standard_normal(len(data))
    null = fit_mixed(data, "dice", ["a", "c"], interactions=[("a", "c")]).coefficients.set_index("term")
    assert null.loc["a:c", "ci_low"] <= 0 <= null.loc["a:c", "ci_high"]
    data["d"] = 2 * data["a"]  # an exact copy: refused with a message, not a LinAlgError
    with pytest.raises(ValueError, match="linearly dependent"):
        fit_mixed(data, "dice", ["a", "d"])


def test_vif_matches_one_over_one_minus_r2_and_collinear_feature_is_dropped():
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal(500)
    x2 = rng.standard_normal(500)
    x3 = x1 + 0.05 * rng.standard_normal(500)  # nearly a copy of x1
    feats = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3})
    v = vif_table(feats).set_index("feature")["vif"]
    design = np.column_stack([np.ones(500), x1, x2])
    resid = x3 - design @ np.linalg.lstsq(design, x3, rcond=None)[0]
    r_squared = 1 - np.sum(resid ** 2) / np.sum((x3 - x3.mean()) ** 2)
    expected = 1 / (1 - r_squared)
    assert v["x3"] == pytest.approx(expected, rel=1e-6) and v["x3"] > 100 and v["x2"] < 1.1
    kept, table = drop_collinear(feats, keep=["x1"])
    assert kept == ["x1", "x2"]
    assert table.set_index("feature").loc["x3", "dropped"] and table["vif_after"].max() < 10


def test_imputation_fills_snaps_levels_and_keeps_distributions():
    rng = np.random.default_rng(2)
    n = 300
    fs = rng.choice([1.5, 3.0], n)
    te = 10 + 20 * (fs == 3.0) + rng.normal(0, 1, n)  # TE predicts field strength
    vendor = np.where(te > 20, "GE", "Siemens")
    df = pd.DataFrame({"field_strength_t": fs, "te_ms": te, "vendor": vendor, "flip_angle_deg": rng.choice([10, 25, 90], n)})
    hidden = df.copy()
    idx = rng.choice(n, 40, replace=False)
    hidden.loc[idx[:20], "field_strength_t"] = np.nan
    hidden.loc[idx[20:], "vendor"] = np.nan
    hidden.loc[idx[:10], "flip_angle_deg"] = np.nan
    types = VariableTypes(nominal=("vendor",), ordinal={"field_strength_t": (1.5, 3.0)}, continuous=("te_ms",),
                          discrete=("flip_angle_deg",))
    miss = missingness(hidden, types).set_index("variable")
    assert miss.loc["vendor", "n_missing"] == 20 and miss.loc["field_strength_t", "type"] == "ordinal"
    filled = impute(hidden, types, seed=0)
    assert not filled.isna().any().any()
    assert set(filled["field_strength_t"]) <= {1.5, 3.0} and set(filled["flip_angle_deg"]) <= {10, 25, 90}
    # field strength and vendor are recoverable from TE: the forest gets them right
    assert (filled.loc[idx[:20], "field_strength_t"] == df.loc[idx[:20], "field_strength_t"]).mean() >= 0.9
    assert (filled.loc[idx[20:], "vendor"] == df.loc[idx[20:], "vendor"]).mean() >= 0.9
    ks = ks_sensitivity(hidden, filled, types).set_index("variable")
    assert set(ks.index) == {"field_strength_t", "flip_angle_deg"} and (ks["ks_statistic"] < 0.1).all()


def test_encoding_drops_the_reference_and_scales_by_type():
    df = pd.DataFrame({"vendor": ["GE", "Siemens", "Philips", "GE"], "field_strength_t": [1.5, 3.0, 3.0, 1.5],
                       "te_ms": [10.0, 20.0, 30.0, 40.0], "flip_angle_deg": [10, 90, 50, 10]})
    types = VariableTypes(nominal=("vendor",), ordinal={"field_strength_t": (1.5, 3.0)}, continuous=("te_ms",),
                          discrete=("flip_angle_deg",))
    x = encode(df, types, references={"vendor": "Siemens"})
    assert [c for c in x if c.startswith("vendor")] == ["vendor_GE", "vendor_Philips"]
    assert x["vendor_GE"].tolist() == [1, 0, 0, 1]
    assert x["field_strength_t"].tolist() == [0, 1, 1, 0]
    assert x["te_ms"].mean() == pytest.approx(0) and x["te_ms"].std(ddof=0) == pytest.approx(1)
    assert x["flip_angle_deg"].tolist() == [0, 1, 0.5, 0]
    with pytest.raises(ValueError, match="reference level"):
        encode(df, types, references={"vendor": "Canon"})


def test_discrete_values_are_imputed_by_a_classifier_not_a_rounded_regression():
    """In group A the flip angle is 10 or 90 (never 50), in group B always 50. A regressor
    averages group A to about 50 and snapping keeps 50, a level group A never has; the study's
    random-forest classifier predicts one of the levels group A does have."""
    rng = np.random.default_rng(4)
    n = 200
    group_b = np.arange(n) >= n // 2
    x = np.where(group_b, 5.0, -5.0) + rng.normal(0, 0.1, n)
    flip = np.where(group_b, 50.0, rng.choice([10.0, 90.0], n))
    df = pd.DataFrame({"te_ms": x, "flip_angle_deg": flip})
    hidden = df.copy()
    idx_a = rng.choice(np.flatnonzero(~group_b), 15, replace=False)
    hidden.loc[idx_a, "flip_angle_deg"] = np.nan
    types = VariableTypes(nominal=(), ordinal={}, continuous=("te_ms",), discrete=("flip_angle_deg",))
    filled = impute(hidden, types, seed=0)
    assert set(filled.loc[idx_a, "flip_angle_deg"]) <= {10.0, 90.0}


def test_nested_subject_variance_component_is_recovered():
    """Every subject scored by four experiments: a subject intercept (SD 0.04) inside each
    dataset's intercept (SD 0.05); the nested component recovers the subject variance."""
    rng = np.random.default_rng(8)
    rows = []
    for d in range(12):
        u_d = rng.normal(0, 0.05)
        for s in range(10):
            u_s = rng.normal(0, 0.04)
            for _ in range(4):
                x = rng.standard_normal()
                rows.append({"dataset": f"d{d}", "subject_id": f"d{d}s{s}", "x": x,
                             "dice": 0.7 + 0.05 * x + u_d + u_s + rng.normal(0, 0.02)})
    data = pd.DataFrame(rows)
    fit = fit_mixed(data, "dice", ["x"], variance_components={"subject": "subject_id"})
    assert fit.variance_components["subject"] == pytest.approx(0.04 ** 2, rel=0.35)
    assert fit.residual_var == pytest.approx(0.02 ** 2, rel=0.2)
    coef = fit.coefficients.set_index("term")
    assert coef.loc["x", "ci_low"] <= 0.05 <= coef.loc["x", "ci_high"]
    plain = fit_mixed(data, "dice", ["x"])  # without it, the subject variance lands in the residual
    assert plain.residual_var > 3 * fit.residual_var and plain.variance_components == {}


def test_formula_string_is_the_fitted_formula():
    assert formula_string("dice", ["a", "b"], [("a", "b"), ("a", "c")]) == "dice ~ a + b + a:b"
    assert formula_string("dice", []) == "dice ~ 1"
    data = simulate_table({"a": 0.1, "b": -0.05}, n_datasets=6, n_subjects=10, seed=2)
    assert fit_mixed(data, "dice", ["a", "b"], interactions=[("a", "b")]).formula == "dice ~ a + b + a:b"
