"""Rank-sum comparison of two prompt conditions per (dataset, model), checked against scipy,
statsmodels and simulations with a known answer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mskseg_lib.stats.comparisons import ranksum_by_group

COLUMNS = ["dataset", "model", "condition_a", "condition_b", "n_a", "n_b", "median_a", "median_b",
           "median_difference", "statistic", "p_value", "p_bh", "note"]


def _long(samples: dict[tuple[str, str, str], list[float]]) -> pd.DataFrame:
    """{(dataset, model, prompt): values} -> one row per subject."""
    rows = [{"dataset": d, "model": m, "prompt": p, "subject_id": f"{d}_{p}_{i:02d}", "dice": v}
            for (d, m, p), values in samples.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def _shifted(rng: np.random.Generator, shift: float, n: int = 30) -> pd.DataFrame:
    """One (dataset, model): gt_box Dice ~ N(0.80, 0.07), detector Dice ``shift`` lower."""
    gt = np.clip(rng.normal(0.80, 0.07, n), 0, 1)
    det = np.clip(rng.normal(0.80 - shift, 0.07, n), 0, 1)
    return _long({("knee", "sam", "gt_box"): list(gt), ("knee", "sam", "detector"): list(det)})


# --- agreement with scipy / statsmodels ------------------------------------------------------
def test_matches_scipy_ranksums_on_known_sample():
    a = [0.81, 0.77, 0.92, 0.85, 0.69, 0.88, 0.73]
    b = [0.62, 0.71, 0.80, 0.55, 0.67]
    out = ranksum_by_group(_long({("knee", "sam", "gt_box"): a, ("knee", "sam", "detector"): b}))
    assert list(out.columns) == COLUMNS
    assert len(out) == 1
    row = out.iloc[0]
    ref = stats.ranksums(a, b, alternative="two-sided")
    assert row["statistic"] == pytest.approx(ref.statistic, rel=1e-12)
    assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    # by hand: a has ranks 4, 6, 7, 9, 10, 11, 12 of the 12 values (sum 59), E = 7 * 13 / 2 = 45.5,
    # sd = sqrt(7 * 5 * 13 / 12) -> z = 13.5 / 6.1577 = 2.1924
    assert row["statistic"] == pytest.approx(13.5 / np.sqrt(7 * 5 * 13 / 12), rel=1e-12)
    assert (row["n_a"], row["n_b"]) == (7, 5)
    assert row["median_a"] == pytest.approx(0.81)
    assert row["median_b"] == pytest.approx(0.67)
    assert row["median_difference"] == pytest.approx(0.14)
    assert (row["condition_a"], row["condition_b"]) == ("gt_box", "detector")
    assert row["note"] == ""
    assert row["p_bh"] == pytest.approx(row["p_value"])  # a family of one


def test_swapping_conditions_flips_the_statistic_not_p():
    df = _long({("k", "m", "gt_box"): [0.8, 0.7, 0.9, 0.85], ("k", "m", "detector"): [0.6, 0.72, 0.5]})
    ab = ranksum_by_group(df).iloc[0]
    ba = ranksum_by_group(df, conditions=("detector", "gt_box")).iloc[0]
    assert ba["statistic"] == pytest.approx(-ab["statistic"])
    assert ba["p_value"] == pytest.approx(ab["p_value"])
    assert ba["median_difference"] == pytest.approx(-ab["median_difference"])


def test_bh_over_all_groups_matches_statsmodels_and_skips_not_run():
    rng = np.random.default_rng(3)
    samples = {}
    for d, shift in (("knee", 0.0), ("hip", 0.05), ("spine", 0.12)):
        for m in ("sam", "medsam"):
            samples[(d, m, "gt_box")] = list(rng.normal(0.8, 0.06, 12))
            samples[(d, m, "detector")] = list(rng.normal(0.8 - shift, 0.06, 10))
    samples[("thigh", "sam", "gt_box")] = [0.9, 0.8, 0.85]
    samples[("thigh", "sam", "detector")] = [0.7]  # too small: not run, not in the family
    out = ranksum_by_group(_long(samples))
    assert len(out) == 7
    # rows sorted by (dataset, model)
    assert list(zip(out["dataset"], out["model"]))[:2] == [("hip", "medsam"), ("hip", "sam")]
    ran = out["note"] == ""
    assert ran.sum() == 6
    expected = multipletests(out.loc[ran, "p_value"].to_numpy(), method="fdr_bh")[1]
    np.testing.assert_allclose(out.loc[ran, "p_bh"].to_numpy(), expected, rtol=1e-12)
    assert out.loc[~ran, ["statistic", "p_value", "p_bh"]].isna().all(axis=None)
    for (d, m), row in out.set_index(["dataset", "model"]).loc[ran.to_numpy()].iterrows():
        ref = stats.ranksums(samples[(d, m, "gt_box")], samples[(d, m, "detector")])
        assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)


# --- known answers from simulation --------------------------------------------------------
def test_detects_a_detector_shift():
    rng = np.random.default_rng(11)
    out = ranksum_by_group(_shifted(rng, shift=0.15))
    row = out.iloc[0]
    assert row["p_value"] < 0.01
    assert row["statistic"] > 0  # gt_box scores higher
    assert row["median_difference"] == pytest.approx(0.15, abs=0.06)


def test_null_false_positive_rate_is_nominal():
    rng = np.random.default_rng(2024)
    p = np.array([ranksum_by_group(_shifted(rng, shift=0.0)).iloc[0]["p_value"] for _ in range(200)])
    assert np.isfinite(p).all()
    rate = float(np.mean(p < 0.05))
    assert 0.02 <= rate <= 0.09, rate


def test_power_against_shift_is_high():
    rng = np.random.default_rng(5)
    p = np.array([ranksum_by_group(_shifted(rng, shift=0.15)).iloc[0]["p_value"] for _ in range(50)])
    assert np.mean(p < 0.01) >= 0.95


# --- tests that cannot run ----------------------------------------------------------------
def test_too_small_and_constant_groups_get_a_note():
    nan = np.nan
    df = _long({
        ("knee", "sam", "gt_box"): [0.8, 0.9, 0.85], ("knee", "sam", "detector"): [0.4, nan, nan],
        ("knee", "yolo", "gt_box"): [0.8, 0.7], ("knee", "yolo", "detector"): [nan, nan, "x"],
        ("hip", "sam", "gt_box"): [0.5, 0.5, 0.5], ("hip", "sam", "detector"): [0.5, 0.5],
        ("hip", "medsam", "gt_box"): [1.0, 1.0, 1.0], ("hip", "medsam", "detector"): [0.5, 0.5],
        ("spine", "sam", "gt_box"): [0.8, 0.75, 0.9],  # the detector never ran here
        ("spine", "sam", "detector"): [np.inf, 0.6, 0.65],
    })
    out = ranksum_by_group(df).set_index(["dataset", "model"])
    small = out.loc[("knee", "sam")]
    assert small["note"] == "not run: needs >= 2 finite values per condition, have n_a=3, n_b=1"
    assert (small["n_a"], small["n_b"]) == (3, 1)
    assert small["median_b"] == pytest.approx(0.4)  # descriptive values are still reported
    assert np.isnan(small["p_value"]) and np.isnan(small["p_bh"]) and np.isnan(small["statistic"])
    assert out.loc[("knee", "yolo"), "note"].startswith("not run: needs >= 2 finite values")
    assert out.loc[("knee", "yolo"), "n_b"] == 0
    assert np.isnan(out.loc[("knee", "yolo"), "median_b"])
    assert out.loc[("hip", "sam"), "note"] == "not run: every value in both conditions equals 0.5"
    # constant within each side but different between sides: a real (perfect) separation
    medsam = out.loc[("hip", "medsam")]
    assert medsam["note"] == "" and np.isfinite(medsam["p_value"])
    assert medsam["p_value"] == pytest.approx(stats.ranksums([1.0] * 3, [0.5] * 2).pvalue)
    # inf is not a value: detector side keeps 2 finite values
    assert out.loc[("spine", "sam"), "n_b"] == 2
    assert out.loc[("spine", "sam"), "note"] == ""
    ran = out["note"] == ""
    assert ran.sum() == 2
    np.testing.assert_allclose(out.loc[ran, "p_bh"],
                               multipletests(out.loc[ran, "p_value"], method="fdr_bh")[1])


def test_group_missing_one_condition_keeps_its_row():
    df = _long({("knee", "sam", "gt_box"): [0.8, 0.9], ("knee", "sam", "jitter"): [0.7, 0.6]})
    out = ranksum_by_group(df)
    assert len(out) == 1
    assert out.iloc[0]["n_b"] == 0
    assert out.iloc[0]["note"].startswith("not run")


def test_custom_columns_and_single_group_column():
    df = _long({("knee", "sam", "gt_box"): [0.8, 0.9, 0.7], ("knee", "sam", "detector"): [0.5, 0.6]})
    df = df.rename(columns={"prompt": "arm", "dice": "dice_3d"})
    out = ranksum_by_group(df, group_cols="dataset", condition_col="arm", value_col="dice_3d")
    assert list(out.columns[:2]) == ["dataset", "condition_a"]
    assert out.iloc[0]["p_value"] == pytest.approx(stats.ranksums([0.8, 0.9, 0.7], [0.5, 0.6]).pvalue)


def test_missing_column_and_bad_conditions_raise():
    df = _long({("knee", "sam", "gt_box"): [0.8, 0.9]})
    with pytest.raises(ValueError, match="missing column 'prompt_type'"):
        ranksum_by_group(df, condition_col="prompt_type")
    with pytest.raises(ValueError, match="missing column 'model'"):
        ranksum_by_group(df.drop(columns="model"))
    with pytest.raises(ValueError, match="two different values"):
        ranksum_by_group(df, conditions=("gt_box", "gt_box"))


def test_empty_input_gives_empty_table():
    out = ranksum_by_group(pd.DataFrame(columns=["dataset", "model", "prompt", "dice"]))
    assert out.empty
    assert list(out.columns) == COLUMNS


# --- the paired variant beside the study's test (table S71) --------------------------------
def _paired(samples: dict[tuple[str, str], tuple[list[float], list[float]]]) -> pd.DataFrame:
    """{(dataset, model): (gt_box values, detector values)} -> long rows, subject i in both."""
    rows = [{"dataset": d, "model": m, "prompt": p, "subject_id": f"s{i:02d}", "dice": v}
            for (d, m), pair in samples.items() for p, values in zip(("gt_box", "detector"), pair)
            for i, v in enumerate(values)]
    return pd.DataFrame(rows)


GT = [0.50, 0.60, 0.70, 0.80, 0.90, 0.55, 0.65]


def test_signed_rank_exact_p_and_bh_on_a_known_example():
    """Knee: every subject loses 0.01 with detector boxes -> all 7 signed differences positive,
    W = 0, exact two-sided p = 2 / 2**7 = 0.015625. Hip: differences +.05 -.02 +.03 +.04 -.01
    +.06 +.07 -> W- = 1 + 2 = 3, exact p = 2 * 5 / 128 = 0.078125 (5 subsets of ranks 1..7 sum
    to <= 3). BH over the two: 0.015625 * 2 / 1 = 0.03125 and 0.078125."""
    from mskseg_lib.autolabel.prompt_tests import signed_rank_by_group

    hip_d = [0.05, -0.02, 0.03, 0.04, -0.01, 0.06, 0.07]
    df = _paired({("knee", "sam"): (GT, [g - 0.01 for g in GT]),
                  ("hip", "sam"): (GT, [g - d for g, d in zip(GT, hip_d)])})
    out = signed_rank_by_group(df).set_index("dataset")
    assert list(out.index) == ["hip", "knee"]
    assert out.loc["knee", "statistic"] == 0 and out.loc["knee", "p_value"] == pytest.approx(0.015625, rel=1e-12)
    assert out.loc["hip", "statistic"] == 3 and out.loc["hip", "p_value"] == pytest.approx(0.078125, rel=1e-12)
    for d in ("knee", "hip"):
        a = df[(df["dataset"] == d) & (df["prompt"] == "gt_box")]["dice"].to_numpy()
        b = df[(df["dataset"] == d) & (df["prompt"] == "detector")]["dice"].to_numpy()
        assert out.loc[d, "p_value"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)
        assert out.loc[d, "n_pairs"] == 7
    assert out.loc["knee", "p_bh"] == pytest.approx(0.03125) and out.loc["hip", "p_bh"] == pytest.approx(0.078125)
    assert out.loc["knee", "median_difference"] == pytest.approx(0.01)


def test_table_s71_has_the_study_rank_sum_and_the_paired_variant_beside_it():
    """A small consistent paired drop (0.01 on every subject, spread 0.5-0.9 between subjects):
    the study's rank-sum test, blind to the pairing, sees nothing (p = scipy's, about 0.85);
    the signed-rank variant finds it (p = 0.015625). Both BH-adjusted within their own family."""
    from mskseg_lib.autolabel.prompt_tests import prompt_condition_tests

    det = [g - 0.01 for g in GT]
    other = [0.3, 0.35, 0.4, 0.45, 0.5, 0.42, 0.38]
    df = _paired({("knee", "sam"): (GT, det), ("knee", "medsam"): (GT, other)})
    out = prompt_condition_tests(df).set_index("model")
    assert list(out.columns[:len(COLUMNS) - 1]) == ["dataset", *COLUMNS[2:]]  # the study's test first
    assert [c for c in out.columns if c.startswith("signed_rank_")] == [
        "signed_rank_n_pairs", "signed_rank_median_difference", "signed_rank_statistic", "signed_rank_p_value",
        "signed_rank_p_bh", "signed_rank_note"]
    rs = stats.ranksums(GT, det)
    assert out.loc["sam", "p_value"] == pytest.approx(rs.pvalue, rel=1e-12) and out.loc["sam", "p_value"] > 0.5
    assert out.loc["sam", "signed_rank_p_value"] == pytest.approx(0.015625)
    p_rank = [out.loc[m, "p_value"] for m in ("medsam", "sam")]
    np.testing.assert_allclose(out.loc[["medsam", "sam"], "p_bh"], multipletests(p_rank, method="fdr_bh")[1])
    p_signed = [out.loc[m, "signed_rank_p_value"] for m in ("medsam", "sam")]
    np.testing.assert_allclose(out.loc[["medsam", "sam"], "signed_rank_p_bh"],
                               multipletests(p_signed, method="fdr_bh")[1])


def test_signed_rank_pairs_by_subject_and_says_why_not_run():
    from mskseg_lib.autolabel.prompt_tests import signed_rank_by_group

    df = _paired({("knee", "sam"): ([0.8, 0.7, 0.9], [0.6, np.nan, 0.5]),  # one pair lost to NaN
                  ("hip", "sam"): ([0.8, 0.7], [0.8, 0.7]),  # identical
                  ("spine", "sam"): ([0.8], [0.6])})
    out = signed_rank_by_group(df).set_index("dataset")
    assert out.loc["knee", "n_pairs"] == 2 and out.loc["knee", "note"] == ""
    assert out.loc["knee", "p_value"] == pytest.approx(stats.wilcoxon([0.8, 0.9], [0.6, 0.5]).pvalue)
    assert out.loc["hip", "note"] == "not run: every paired difference is zero"
    assert out.loc["spine", "note"].startswith("not run: needs >= 2 subjects")
    assert out.loc["knee", "p_bh"] == pytest.approx(out.loc["knee", "p_value"])  # a family of one
    with pytest.raises(ValueError, match="duplicate rows"):
        signed_rank_by_group(pd.concat([df, df.head(1)]))
