"""The transcribed published values (mskseg_lib/reference) agree with each other the way the
study computes them: label -> tissue-class mean -> Mean Tissue, tier 3 -> tier 2 -> tier 1.
A cell misread from the scrambled text extraction breaks one of these identities."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.evaluation import aggregate
from mskseg_lib.reference import (
    T1SAG_111,
    published_table1,
    published_table1_labels,
    published_table1_tissues,
    published_zero_shot_tests,
)

DESS = "Knee_3D_DESS_Research_Anatomical_86"
T1AX = "Spine_2D_T1ax_Clinical_Anatomical_59"


def test_tier2_mean_tissue_is_the_mean_of_its_tissues_except_spine_t1sag_111():
    t2 = published_table1_tissues()
    assert set(t2["dataset"]) == {"Thigh_2D_T1ax_Clinical_Anatomical_50", "Spine_2D_T2ax_Clinical_Anatomical_38",
                                  "Spine_2D_T1sag_Clinical_Anatomical_23", T1SAG_111,
                                  "Knee_3D_CUBE_Research_Anatomical_300",
                                  "Knee_3D_CUBE_Undersampled_Research_Anatomical_50"}
    tissues = t2[t2.tissue_class != "mean_tissue"]
    computed = tissues.groupby(["dataset", "experiment"])["dice"].mean()
    printed = t2[t2.tissue_class == "mean_tissue"].set_index(["dataset", "experiment"])["dice"]
    gap = (computed - printed.reindex(computed.index)).abs()
    ok = gap[gap.index.get_level_values("dataset") != T1SAG_111]
    assert len(ok) == 5 * 4 and ok.max() < 1e-5  # every other row, every experiment
    assert gap.loc[(T1SAG_111, "SAM")] == pytest.approx(0.92899 - (0.87995 + 0.93290) / 2)
    assert (gap.loc[T1SAG_111] > 0.015).all()  # the published inconsistency: flagged, not fixed
    flagged = t2[t2.note != ""]
    assert set(flagged["dataset"]) == {T1SAG_111} and set(flagged["tissue_class"]) == {"mean_tissue"}


def test_tier3_labels_give_tier2_tissues_and_tier1_datasets():
    t3, t2, t1 = published_table1_labels(), published_table1_tissues(), published_table1()
    for dataset in ("Knee_3D_CUBE_Undersampled_Research_Anatomical_50", "Thigh_2D_T1ax_Clinical_Anatomical_50"):
        tissue_of = {lab.name: lab.tissue_class for lab in get_dataset(dataset).labels}
        labels = t3[(t3.dataset == dataset) & (t3.label_name != "mean_tissue") & (t3.experiment != "mixed_Muscle_SAM")]
        labels = labels.assign(tissue_class=labels.label_name.map(tissue_of))
        assert labels.tissue_class.notna().all()
        tissues = aggregate.tissue_dice(labels, ["experiment"]).set_index(["experiment", "tissue_class"])["dice"]
        ref = t2[(t2.dataset == dataset) & (t2.tissue_class != "mean_tissue")].set_index(["experiment", "tissue_class"])["dice"]
        assert (tissues.reindex(ref.index) - ref).abs().max() < 1.5e-4, dataset
        mean = aggregate.mean_tissue_dice(labels, ["experiment"]).set_index("experiment")["dice"]
        printed = t3[(t3.dataset == dataset) & (t3.label_name == "mean_tissue")].set_index("experiment")["dice"]
        assert (mean - printed.reindex(mean.index)).abs().max() < 1e-4, dataset
    # knee DESS: all six labels are cartilage (menisci included), so Mean Tissue = label mean
    dess = t3[(t3.dataset == DESS) & (t3.label_name != "mean_tissue")]
    assert {lab.tissue_class for lab in get_dataset(DESS).labels} == {"cartilage"}
    means = dess.groupby("experiment")["dice"].mean()
    tier1 = t1[t1.dataset == DESS].set_index(["model_key", "setting"])["dice"]
    assert means["SAM"] == pytest.approx(tier1[("sam_vit_b", "zero-shot")], abs=1e-4)
    assert means["mskSAM2"] == pytest.approx(tier1[("sam2_hiera_base_plus", "finetuned")], abs=1e-4)


def test_tier1_flags_the_spine_row_copied_from_knee_dess():
    t1 = published_table1()
    spine = t1[t1.dataset == T1AX].set_index(["model_key", "setting"])["dice"]
    knee = t1[t1.dataset == DESS].set_index(["model_key", "setting"])["dice"]
    pd.testing.assert_series_equal(spine, knee, check_names=False)
    assert (t1.loc[t1.dataset == T1AX, "note"].str.contains("copy error")).all()
    assert (t1.loc[t1.dataset != T1AX, "note"] == "").all()


def test_headline_zero_shot_results_and_p_values():
    t1 = published_table1().query("setting == 'zero-shot'").set_index(["dataset", "model_key"])["dice"]
    headline = {"Shoulder_3D_CUBE_Research_Anatomical_28": (0.680, 0.547, 0.320),
                "Thigh_2D_T1ax_Clinical_Anatomical_50": (0.843, 0.831, 0.580), DESS: (0.624, 0.610, 0.488)}
    for dataset, (sam2, sam, medsam) in headline.items():  # the text's values are tier 1 rounded
        assert round(t1[(dataset, "sam2_hiera_base_plus")], 3) == sam2
        assert round(t1[(dataset, "sam_vit_b")], 3) == sam
        assert round(t1[(dataset, "medsam_vit_b")], 3) == medsam
    tests = published_zero_shot_tests()
    fr = tests[tests.test == "friedman"].set_index("dataset")["p_value"].to_dict()
    assert fr == {"Shoulder_3D_CUBE_Research_Anatomical_28": 0.022, "Thigh_2D_T1ax_Clinical_Anatomical_50": 0.00274,
                  DESS: 0.000154, T1SAG_111: 0.127}
    wx = tests[tests.test == "wilcoxon"]
    assert set(zip(wx.arm_a, wx.arm_b)) == {("SAM ViT-B", "MedSAM ViT-B"), ("SAM2 hiera-b+", "MedSAM ViT-B")}
    assert np.allclose(wx["p_value"], 8.79e-4)
