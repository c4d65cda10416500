"""Model comparisons: BH correction, Friedman per dataset, pairwise Wilcoxon, checked against
independent implementations (scipy, pingouin) and hand-computed values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats

from mskseg_lib.stats.comparisons import bh_correct, complete_blocks, friedman_by_group, gated_wilcoxon, pairwise_wilcoxon


def _long(groups: dict[str, tuple[list[str], int]], seed: int = 0) -> pd.DataFrame:
    """Long table of continuous (tie-free) scores: {group: (arms, n_subjects)}."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, (arms, n) in groups.items():
        for i in range(n):
            base = rng.uniform(0.6, 0.9)
            for j, arm in enumerate(arms):
                rows.append({"dataset": group, "subject_id": f"{group}_{i:02d}", "arm": arm,
                             "dice": base + 0.01 * j + rng.normal(0, 0.02)})
    return pd.DataFrame(rows)


def _effect(shift: float, n: int = 20, seed: int = 1) -> pd.DataFrame:
    """20 subjects; arm 'good' shifted by ``shift`` over 'mid' and 'bad', small noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        base = rng.uniform(0.6, 0.8)
        for arm, delta in (("bad", 0.0), ("mid", 0.0), ("good", shift)):
            rows.append({"dataset": "knee", "subject_id": f"s{i:02d}", "arm": arm,
                         "dice": base + delta + rng.normal(0, 0.01)})
    return pd.DataFrame(rows)


# --- Benjamini-Hochberg -------------------------------------------------------------------

def test_bh_matches_scipy_and_hand_values() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216, 0.5, 0.9])
    np.testing.assert_allclose(bh_correct(p), stats.false_discovery_control(p), rtol=0, atol=1e-12)
    # m = 4, sorted p: 0.005, 0.01, 0.03, 0.04 -> p*m/rank = 0.02, 0.02, 0.04, 0.04, already
    # monotone -> in input order [0.02, 0.04, 0.04, 0.02].
    np.testing.assert_allclose(bh_correct([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02])
    # m = 3: 0.02*3/1 = 0.06, 0.021*3/2 = 0.0315, 0.5*3/3 = 0.5 -> step-up minimum makes the
    # first 0.0315 too.
    np.testing.assert_allclose(bh_correct([0.02, 0.021, 0.5]), [0.0315, 0.0315, 0.5])


def test_bh_nan_excluded_from_family() -> None:
    out = bh_correct([0.01, np.nan, 0.04, 0.03, 0.005])
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2, 3, 4]], [0.02, 0.04, 0.04, 0.02])  # m = 4, not 5
    assert np.isnan(bh_correct([np.nan])).all()
    assert bh_correct([]).shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bh_correct([0.2, 1.5])


# --- complete blocks ----------------------------------------------------------------------

def test_complete_blocks_drops_incomplete_and_sorts() -> None:
    df = pd.DataFrame({"subject_id": ["b", "b", "b", "a", "a", "a", "c", "c", "d", "d", "d"],
                       "arm": ["z", "x", "y", "x", "y", "z", "x", "y", "x", "y", "z"],
                       "dice": [0.3, 0.1, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.1, np.nan, 0.2]})
    wide = complete_blocks(df, "subject_id", "arm", "dice")
    assert list(wide.columns) == ["x", "y", "z"]
    assert list(wide.index) == ["a", "b"]  # c lacks z, d has NaN for y
    np.testing.assert_allclose(wide.loc["b"].to_numpy(), [0.1, 0.2, 0.3])


# --- Friedman -----------------------------------------------------------------------------

def test_friedman_matches_pingouin() -> None:
    df = _long({"knee": (["a", "b", "c", "d"], 10), "hip": (["a", "b", "c"], 11)}, seed=3)
    out = friedman_by_group(df).set_index("dataset")
    assert list(out.index) == ["hip", "knee"]
    for group, k in (("knee", 4), ("hip", 3)):
        ref = pg.friedman(data=df[df.dataset == group], dv="dice", within="arm", subject="subject_id")
        row = out.loc[group]
        assert row.n_arms == k and row.note == ""
        assert row.statistic == pytest.approx(ref["Q"].iloc[0], abs=1e-10)
        assert row.p_value == pytest.approx(ref["p_unc"].iloc[0], abs=1e-10)
        assert row.kendall_w == pytest.approx(ref["W"].iloc[0], abs=1e-10)
    assert out.loc["knee", "arms"] == "a,b,c,d"
    assert out.loc["hip", "n_subjects"] == 11
    np.testing.assert_allclose(out["p_bh"], stats.false_discovery_control(out["p_value"]))


def test_friedman_recovers_effect_and_not_a_null() -> None:
    eff = friedman_by_group(_effect(0.1)).iloc[0]
    assert eff.p_value < 0.001
    pw = pairwise_wilcoxon(_effect(0.1)).set_index(["arm_a", "arm_b"])
    assert pw.loc[("bad", "good"), "p_bh"] < 0.01
    assert pw.loc[("bad", "good"), "median_difference"] == pytest.approx(-0.1, abs=0.02)
    null = friedman_by_group(_effect(0.0, seed=7)).iloc[0]
    assert null.p_value > 0.05


def test_friedman_not_run_notes_and_incomplete_blocks() -> None:
    df = pd.concat([
        _long({"two_arms": (["a", "b"], 8)}, seed=1),
        _long({"one_subject": (["a", "b", "c"], 1)}, seed=2),
        _long({"ok": (["a", "b", "c"], 10)}, seed=4),
        pd.DataFrame({"dataset": "flat", "subject_id": np.repeat(["s1", "s2", "s3"], 3),
                      "arm": ["a", "b", "c"] * 3, "dice": 0.5}),
    ], ignore_index=True)
    # make two "ok" subjects incomplete: one misses arm c, one has a NaN
    df = df.drop(df[(df.subject_id == "ok_00") & (df.arm == "c")].index)
    df.loc[(df.subject_id == "ok_01") & (df.arm == "a"), "dice"] = np.nan
    out = friedman_by_group(df).set_index("dataset")
    assert set(out.index) == {"two_arms", "one_subject", "ok", "flat"}  # nothing dropped
    assert out.loc["two_arms", "note"] == "not run: needs >= 3 arms, have 2"
    assert "needs >= 2 complete subjects, have 1" in out.loc["one_subject", "note"]
    assert "identical" in out.loc["flat", "note"]
    for g in ("two_arms", "one_subject", "flat"):
        assert np.isnan(out.loc[g, ["statistic", "p_value", "kendall_w", "p_bh"]].astype(float)).all()
    assert out.loc["ok", "n_subjects"] == 8
    wide = complete_blocks(df[df.dataset == "ok"], "subject_id", "arm", "dice")
    assert out.loc["ok", "statistic"] == pytest.approx(stats.friedmanchisquare(*wide.to_numpy().T).statistic)
    assert out.loc["ok", "p_bh"] == pytest.approx(out.loc["ok", "p_value"])  # family of one


# --- pairwise Wilcoxon --------------------------------------------------------------------

def test_pairwise_wilcoxon_matches_pingouin_and_scipy() -> None:
    df = _long({"knee": (["a", "b", "c"], 12), "hip": (["a", "b"], 9)}, seed=5)
    df = df.drop(df[(df.subject_id == "knee_03") & (df.arm == "a")].index)  # pairs use 11 or 12
    out = pairwise_wilcoxon(df)
    assert list(out.columns) == ["dataset", "arm_a", "arm_b", "n_subjects", "median_a", "median_b",
                                 "median_difference", "statistic", "p_value", "p_bh", "note"]
    assert len(out) == 3 + 1  # 3 pairs in knee, 1 in hip (two arms work)
    for row in out.itertuples():
        wide = df[df.dataset == row.dataset].pivot(index="subject_id", columns="arm", values="dice")
        pair = wide[[row.arm_a, row.arm_b]].dropna()
        x, y = pair[row.arm_a].to_numpy(), pair[row.arm_b].to_numpy()
        assert row.n_subjects == len(x)
        ref = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
        assert row.statistic == pytest.approx(ref.statistic) and row.p_value == pytest.approx(ref.pvalue)
        assert row.p_value == pytest.approx(pg.wilcoxon(x, y)["p_val"].iloc[0], abs=1e-12)
        assert row.median_difference == pytest.approx(np.median(x - y))
        assert row.median_a == pytest.approx(np.median(x)) and row.median_b == pytest.approx(np.median(y))
    knee = out[out.dataset == "knee"].set_index(["arm_a", "arm_b"])
    assert knee.loc[("a", "b"), "n_subjects"] == 11 and knee.loc[("b", "c"), "n_subjects"] == 12


def test_pairwise_correction_families() -> None:
    df = _long({"knee": (["a", "b", "c"], 12), "hip": (["a", "b", "c", "d"], 10)}, seed=6)
    per = pairwise_wilcoxon(df, correction="per_group")
    every = pairwise_wilcoxon(df, correction="all")
    for g in ("knee", "hip"):
        m = per.dataset == g
        np.testing.assert_allclose(per.loc[m, "p_bh"], stats.false_discovery_control(per.loc[m, "p_value"]))
    np.testing.assert_allclose(every["p_bh"], stats.false_discovery_control(every["p_value"]))
    assert not np.allclose(per["p_bh"], every["p_bh"])
    with pytest.raises(ValueError, match="correction"):
        pairwise_wilcoxon(df, correction="bonferroni")  # type: ignore[arg-type]


def test_pairwise_not_run_notes() -> None:
    df = pd.DataFrame({"dataset": "knee", "subject_id": ["s1", "s1", "s1", "s2", "s2", "s3", "s3"],
                       "arm": ["a", "b", "c", "a", "b", "a", "b"],
                       "dice": [0.5, 0.5, 0.7, 0.6, 0.6, 0.8, 0.8]})
    out = pairwise_wilcoxon(df).set_index(["arm_a", "arm_b"])
    assert out.loc[("a", "b"), "note"] == "not run: all paired differences are zero"
    assert out.loc[("a", "c"), "note"] == "not run: needs >= 2 paired subjects, have 1"
    assert out[["p_value", "p_bh", "statistic"]].isna().all().all()


# --- validation ---------------------------------------------------------------------------

def test_validation_errors() -> None:
    df = _long({"knee": (["a", "b", "c"], 4)})
    with pytest.raises(ValueError, match=r"missing column 'score'.*available.*'dice'"):
        friedman_by_group(df, value_col="score")
    with pytest.raises(ValueError, match="missing column 'site'"):
        pairwise_wilcoxon(df, group_col="site")
    with pytest.raises(ValueError, match="missing column 'arm'"):
        complete_blocks(df.drop(columns="arm"), "subject_id", "arm", "dice")
    dup = pd.concat([df, df.iloc[[5]]], ignore_index=True)
    example = str(tuple(df.iloc[5][["dataset", "subject_id", "arm"]]))
    for fn in (friedman_by_group, pairwise_wilcoxon):
        with pytest.raises(ValueError, match="duplicate") as err:
            fn(dup)
        assert example in str(err.value)


# --- the study's readings: arms fixed, post-hoc gated by the Friedman p ---------------------
def test_friedman_with_fixed_arms_names_the_missing_ones_and_keeps_requested_groups() -> None:
    df = _long({"hip": (["A", "B", "C", "D"], 8), "knee": (["A", "B"], 8)})
    out = friedman_by_group(df, arms=["A", "B", "C"], groups=["spine", "hip", "knee"]).set_index("dataset")
    assert list(out.index) == ["spine", "hip", "knee"]
    hip = df[(df.dataset == "hip") & df.arm.isin(["A", "B", "C"])]
    wide = hip.pivot(index="subject_id", columns="arm", values="dice")
    assert out.loc["hip", "p_value"] == pytest.approx(stats.friedmanchisquare(*wide.to_numpy().T).pvalue)
    assert out.loc["hip", "arms"] == "A,B,C"  # arm D ignored, not compared
    assert out.loc["knee", "note"] == "not run: no scores for C" and np.isnan(out.loc["knee", "p_value"])
    assert out.loc["spine", "note"] == "not run: no scores for A, B, C" and out.loc["spine", "n_subjects"] == 0
    assert out.loc["hip", "p_bh"] == pytest.approx(out.loc["hip", "p_value"])  # one test in the family


def _gate_table(p_raw: dict[str, float]) -> pd.DataFrame:
    """A Friedman table with given raw p-values (BH-adjusted here) for the gating tests."""
    fr = pd.DataFrame({"dataset": list(p_raw), "p_value": list(p_raw.values())})
    return fr.assign(p_bh=bh_correct(fr["p_value"]))


def test_gated_wilcoxon_runs_only_where_the_adjusted_friedman_p_is_significant() -> None:
    strong = _effect(0.1).assign(dataset="knee")
    null = _effect(0.0, seed=7).assign(dataset="spine", subject_id=lambda d: "p" + d["subject_id"])
    df = pd.concat([strong, null], ignore_index=True)
    fr = friedman_by_group(df)
    assert fr.set_index("dataset").loc["knee", "p_bh"] < 0.05 <= fr.set_index("dataset").loc["spine", "p_bh"]
    out = gated_wilcoxon(df, fr)
    knee, spine = out[out.dataset == "knee"], out[out.dataset == "spine"]
    assert len(knee) == len(spine) == 3 and knee["gate_passed"].all() and not spine["gate_passed"].any()
    assert spine["p_value"].isna().all() and spine["p_bh"].isna().all()
    assert spine["note"].str.startswith("not run: Friedman p_bh = ").all()
    # where it runs, the same numbers as the ungated test (scipy's signed-rank, BH within dataset)
    ref = pairwise_wilcoxon(strong).set_index(["arm_a", "arm_b"])
    got = knee.set_index(["arm_a", "arm_b"])
    for pair in ref.index:
        assert got.loc[pair, "p_value"] == pytest.approx(ref.loc[pair, "p_value"])
        assert got.loc[pair, "p_bh"] == pytest.approx(ref.loc[pair, "p_bh"])
    # today's ungated test reports the null dataset's pairs as if they had been run
    assert pairwise_wilcoxon(df)["p_value"].notna().all()


def test_gate_readings_raw_vs_adjusted_and_bh_families() -> None:
    # raw Friedman p 0.04 and 0.03 -> BH-adjusted 0.04 and 0.04; 0.04 and 0.9 -> 0.08 and 0.9
    df = pd.concat([_effect(0.1).assign(dataset="hip"),
                    _effect(0.1, seed=3).assign(dataset="knee", subject_id=lambda d: "k" + d["subject_id"])])
    fr = _gate_table({"hip": 0.04, "knee": 0.9})
    assert fr["p_bh"].tolist() == pytest.approx([0.08, 0.9])
    adjusted = gated_wilcoxon(df, fr)
    assert adjusted["p_value"].isna().all()  # 0.08 >= 0.05: the study's default reading runs nothing
    raw = gated_wilcoxon(df, fr, gate="p_value")
    hip = raw[raw.dataset == "hip"]
    assert hip["p_value"].notna().all() and raw.loc[raw.dataset == "knee", "p_value"].isna().all()
    assert (raw["gate"] == "p_value").all() and (adjusted["gate"] == "p_bh").all()
    # BH within dataset vs over every tested pair: both datasets pass at raw 0.01 / 0.02
    both = _gate_table({"hip": 0.01, "knee": 0.02})
    within = gated_wilcoxon(df, both)
    pooled = gated_wilcoxon(df, both, correction="all")
    assert within["p_value"].tolist() == pytest.approx(pooled["p_value"].tolist())
    for d in ("hip", "knee"):
        sel = within.dataset == d
        assert within.loc[sel, "p_bh"].tolist() == pytest.approx(bh_correct(within.loc[sel, "p_value"]).tolist())
    assert pooled["p_bh"].tolist() == pytest.approx(bh_correct(within["p_value"]).tolist())
    with pytest.raises(ValueError, match="gate"):
        gated_wilcoxon(df, fr, gate="raw")  # type: ignore[arg-type]
