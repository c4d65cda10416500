"""Notebook 05's measurement layer on a tiny prepared cohort."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mskseg_lib.biomarkers.study import best_experiment_per_dataset, measure_all, measure_subject, paired, truth_rows
from mskseg_lib.data.cohort import load_truth
from mskseg_lib.data.tables import load_tables
from mskseg_lib.from_profile import data as fp_data


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    import copy

    from mskseg_lib.config import load_profile

    root = tmp_path_factory.mktemp("study")
    cfg = copy.deepcopy(load_profile("fixture"))
    cfg["paths"] = {k: str(root / k) for k in cfg["paths"]}
    cfg["cohort"]["datasets"] = ["Knee_3D_CUBE_Research_Anatomical_300", "Spine_2D_T1sag_Clinical_Anatomical_23"]
    cfg["cohort"]["subjects_per_dataset"] = 2
    fp_data.prepare(cfg, progress=False)
    subjects, _ = load_tables(fp_data.prepared_dir(cfg))
    return cfg, subjects


def test_manual_and_identical_prediction_agree_and_a_missing_label_is_nan_with_reason(prepared):
    cfg, subjects = prepared
    knee = subjects[subjects["dataset"].str.startswith("Knee")].iloc[0].to_dict()
    manual = measure_subject(knee)
    assert {"thickness_mm", "volume_cm3"} <= set(manual["biomarker"])
    mask = np.asarray(nib.load(knee["mask_nifti"]).dataobj).astype(np.int16)
    same = measure_subject(knee, mask, source="copy")
    pd.testing.assert_series_equal(manual["value"], same["value"])
    names = {n: int(v) for v, n in json.loads(knee["label_names"]).items()}
    without = mask.copy()
    without[without == names["patellar_cartilage"]] = 0
    pred = measure_subject(knee, without, source="pred").set_index(["biomarker", "structure"])
    assert np.isnan(pred.loc[("thickness_mm", "patellar"), "value"])
    assert pred.loc[("thickness_mm", "patellar"), "reason"] == "empty mask"
    assert pred.loc[("thickness_mm", "femoral"), "value"] == pytest.approx(
        manual.set_index(["biomarker", "structure"]).loc[("thickness_mm", "femoral"), "value"])
    with pytest.raises(ValueError, match="not on the mask's grid"):
        measure_subject(knee, mask[:-1])


def test_paired_table_lines_up_manual_predicted_and_truth(prepared):
    cfg, subjects = prepared
    long = measure_all(subjects, {"pred": lambda s: None if s["dataset"].startswith("Spine")
                                  else np.asarray(nib.load(s["mask_nifti"]).dataobj)}, progress=False)
    long = pd.concat([long, truth_rows(load_truth(fp_data.cohort_dir(cfg)), subjects)], ignore_index=True)
    pairs = paired(long, "pred")
    knee = pairs[pairs["dataset"].str.startswith("Knee")]
    assert (knee["manual"] == knee["predicted"]).all()  # the prediction is the manual mask
    assert pairs[pairs["dataset"].str.startswith("Spine")]["predicted"].isna().all()  # no prediction given
    disc = pairs[pairs["biomarker"] == "disc_height_mm"].dropna(subset=["manual", "truth"])
    assert len(disc) >= 2 and (abs(disc["manual"] - disc["truth"]) < 2.0).all()  # fixture pixels ~1.9 mm
    assert pairs["subject"].str.contains("/").all() and not pairs.duplicated(["subject", "biomarker", "structure"]).any()


def test_best_experiment_is_chosen_on_validation_dice_among_those_trained_on_the_dataset():
    experiments = pd.DataFrame({"experiment_id": ["a", "b", "c", "d"], "status": ["finished"] * 3 + ["pending"],
                                "train_datasets": ["X", "X,Y", "Y", "X"]})
    history = pd.DataFrame({"experiment_id": ["a", "a", "b", "c", "d"], "val_dice": [0.5, 0.7, 0.6, 0.9, 0.99]})
    assert best_experiment_per_dataset(experiments, history, ["X", "Y", "Z"]) == {"X": "a", "Y": "c"}


# ----------------------------------------------------------------------------- numbering, published values
def test_supplement_numbering_is_fixed_unique_and_within_s39_s64():
    from mskseg_lib.biomarkers import study
    from mskseg_lib.data.catalog import get_dataset

    assert set(study.DEFINITIONS) == {*study.PRIMARY_BIOMARKERS, *study.VARIANT_OF} == set(study.UNITS)
    numbers = [n for n, _, _ in study.SUPPLEMENT_TABLES]
    assert len(set(numbers)) == len(numbers) and set(numbers) | set(study.UNUSED_SUPPLEMENT_NUMBERS) == set(range(39, 65))
    pairs = [(b, d) for _, b, d in study.SUPPLEMENT_TABLES]
    assert len(set(pairs)) == len(pairs)
    for _, biomarker, dataset in study.SUPPLEMENT_TABLES:
        get_dataset(dataset)  # a real catalog name
        assert biomarker in study.PRIMARY_BIOMARKERS
    assert study.supplement_table_name(44, "t1rho_ms", "Knee_2D_MAPSS-echo1_Research_Compositional_39") \
        == "tableS44_t1rho_knee_2d_mapss_39"
    mapping = study.supplement_mapping()
    assert list(mapping["table"]) == [f"S{n}" for n in range(39, 65)]
    assert (mapping.set_index("table").loc[["S63", "S64"], "definition"] == "unused").all()


def test_published_ranges_go_beside_the_rows_they_cover():
    """The study prints: T1rho ICC 0.980-0.997 and rho 0.964 for the lateral femoral condyle
    (MAPSS 39); muscle volume ICC 0.985-0.9997 (thigh and spine T1ax muscles, not bone); thickness
    ICC 0.898-0.995 (DESS and CUBE only); disc height ICC 0.808-0.971 (T1sag 23 only)."""
    from mskseg_lib.biomarkers import study

    rows = pd.DataFrame([
        ("Knee_2D_MAPSS-echo1_Research_Compositional_39", "t1rho_ms", "fc_lat"),
        ("Knee_2D_MAPSS-echo1_Research_Compositional_39", "t1rho_ms", "tc_med"),
        ("Knee_2D_MAPSS-echo1_Research_Compositional_22", "t1rho_ms", "fc_lat"),
        ("Thigh_2D_T1ax_Clinical_Anatomical_50", "volume_cm3", "extensors"),
        ("Thigh_2D_T1ax_Clinical_Anatomical_50", "volume_cm3", "femoral_cortex"),
        ("Knee_3D_DESS_Research_Anatomical_86", "thickness_mm", "patellar"),
        ("Knee_2D_MAPSS-echo1_Research_Compositional_39", "thickness_mm", "femoral"),
        ("Spine_2D_T1sag_Clinical_Anatomical_23", "disc_height_mm", "L4_L5"),
        ("Spine_2D_T1sag_Clinical_Anatomical_111", "disc_height_mm", "L4_L5"),
    ], columns=["dataset", "biomarker", "structure"])
    icc = study.with_published(rows, "icc").set_index(["dataset", "biomarker", "structure"])
    expected = {0: (0.980, 0.997), 1: (0.980, 0.997), 2: None, 3: (0.985, 0.9997), 4: None, 5: (0.898, 0.995),
                6: None, 7: (0.808, 0.971), 8: None}
    for i, want in expected.items():
        row = icc.iloc[i]
        if want is None:
            assert np.isnan(row["published_icc_low"]) and row["published_family"] == "", icc.index[i]
        else:
            assert (row["published_icc_low"], row["published_icc_high"]) == want, icc.index[i]
    rho = study.with_published(rows, "spearman_rho").set_index(["dataset", "biomarker", "structure"])
    assert rho.iloc[0]["published_spearman_rho_low"] == 0.964 and np.isnan(rho.iloc[1]["published_spearman_rho_low"])
    regenerated = rows.assign(icc=[0.95, 0.99, 0.5, 0.97, 0.9, 0.93, 0.6, 0.85, 0.7])
    table = study.published_vs_regenerated(regenerated, pd.DataFrame(columns=["dataset", "biomarker", "structure",
                                                                               "method", "r2"]),
                                           pd.DataFrame(columns=["dataset", "biomarker", "structure", "rho"]))
    t1rho = table[(table["family"] == "t1rho") & (table["statistic"] == "icc")].iloc[0]
    assert (t1rho["regenerated_low"], t1rho["regenerated_high"], t1rho["n_groups"]) == (0.95, 0.99, 2)
    assert (t1rho["regenerated_low_any_dataset"], t1rho["n_groups_any_dataset"]) == (0.5, 3)
    muscle = table[(table["family"] == "muscle_volume") & (table["statistic"] == "icc")].iloc[0]
    assert (muscle["regenerated_low"], muscle["n_groups"]) == (0.97, 1)  # the bone row is not muscle
    # a statistic with rows, none of them of a published family's biomarker: no group, no error
    knee_only = pd.DataFrame({"dataset": ["Knee_2D_MAPSS-echo1_Research_Compositional_22"], "biomarker": ["t2_ms"],
                              "structure": ["fc_lat"], "method": ["linear"], "r2": [0.9]})
    table = study.published_vs_regenerated(regenerated, knee_only, pd.DataFrame(columns=["dataset", "biomarker",
                                                                                          "structure", "rho"]))
    r2 = table[table["statistic"] == "r2"]
    assert len(r2) and (r2["n_groups_any_dataset"] == 0).all()


def test_errors_vs_truth_compare_every_definition_with_its_biomarkers_truth():
    from mskseg_lib.biomarkers import study

    base = {"dataset": "D", "subject_id": "s1", "structure": "femoral", "reason": ""}
    long = pd.DataFrame([
        {**base, "source": "truth", "biomarker": "thickness_mm", "value": 2.0},
        {**base, "source": "manual", "biomarker": "thickness_mm", "value": 2.1},
        {**base, "source": "manual", "biomarker": "thickness_study_text_mm", "value": 1.2},
        {**base, "source": "finetuned", "biomarker": "thickness_study_code_mm", "value": 9.0},
        {**base, "source": "manual", "biomarker": "volume_cm3", "value": 5.0},  # no truth: left out
    ])
    errors = study.errors_vs_truth(long).set_index(["definition", "source"])
    assert len(errors) == 3 and (errors["biomarker"] == "thickness_mm").all() and (errors["truth"] == 2.0).all()
    assert errors.loc[("thickness_mm", "manual"), "error"] == pytest.approx(0.1)
    assert errors.loc[("thickness_study_text_mm", "manual"), "error"] == pytest.approx(-0.8)
    assert errors.loc[("thickness_study_code_mm", "finetuned"), "relative_error"] == pytest.approx(3.5)
    summary = study.error_summary(study.errors_vs_truth(long)).set_index(["definition", "source"])
    assert summary.loc[("thickness_study_text_mm", "manual"), "mean_abs_error"] == pytest.approx(0.8)
    pairs = study.truth_error_pairs(study.errors_vs_truth(long), panel="definition")
    text = pairs.set_index("definition").loc["thickness_study_text_mm"]
    assert text["manual"] == pytest.approx(1.2) and text["true"] == 2.0 and np.isnan(text["predicted"])


# ----------------------------------------------------------------------------- subjects and agreement without a profile
def test_choose_subjects_picks_the_split_the_datasets_and_the_first_subjects():
    from mskseg_lib.biomarkers.study import BiomarkerSelection, choose_subjects, selected_datasets

    subjects = pd.DataFrame({"dataset": ["B", "A", "A", "A", "B", "RealSpine_MyoSegmenTUM_VB_8"],
                             "subject_id": ["b1", "a3", "a1", "a2", "b2", "vb3_01"],
                             "split": ["test", "test", "test", "train", "test", "test"]})
    assert selected_datasets(subjects) == ["A", "B"]  # "all" without the real fixture
    test = choose_subjects(subjects)
    assert list(zip(test.dataset, test.subject_id)) == [("A", "a1"), ("A", "a3"), ("B", "b1"), ("B", "b2")]
    first = choose_subjects(subjects, BiomarkerSelection(datasets=("A",), split="all", max_subjects_per_dataset=2))
    assert list(first.subject_id) == ["a1", "a2"]
    assert list(choose_subjects(subjects, BiomarkerSelection(split=("train",))).subject_id) == ["a2"]


def test_agreement_by_source_is_the_agreement_table_of_each_sources_pairs():
    from mskseg_lib.biomarkers import study
    from mskseg_lib.stats.agreement import AgreementSettings, agreement_table

    rng = np.random.default_rng(5)
    rows = []
    for i in range(12):
        manual = 2.0 + rng.normal(0, 0.3)
        for source, value in (("manual", manual), ("good", manual + rng.normal(0, 0.05)),
                              ("poor", manual + rng.normal(0, 0.6))):
            rows.append({"dataset": "D", "subject_id": f"s{i}", "source": source, "biomarker": "thickness_mm",
                         "structure": "femoral", "value": value, "reason": ""})
            rows.append({"dataset": "D", "subject_id": f"s{i}", "source": source, "biomarker": "volume_cm3",
                         "structure": "femoral", "value": 10 * value, "reason": ""})
    long = pd.DataFrame(rows)
    settings = AgreementSettings(n_boot=80, seed=1)
    tables = study.agreement_by_source(long, ["good", "poor"], settings, biomarkers=["thickness_mm"])
    direct = agreement_table(study.paired(long[long["biomarker"] == "thickness_mm"], "good"), "manual", "predicted",
                             by=study.AGREEMENT_GROUPS, subject_col="subject", settings=settings)
    pd.testing.assert_frame_equal(tables["good"].icc, direct.icc)
    assert tables["good"].icc["icc"].iloc[0] > tables["poor"].icc["icc"].iloc[0]  # noise lowers agreement
    both = study.stacked(tables, "icc")
    assert list(both["predicted_by"]) == ["good", "poor"] and set(both["biomarker"]) == {"thickness_mm"}
    two = study.agreement_by_source(long, ["good"], settings)["good"].results
    assert study.most_pairs_per_biomarker(two).keys() == {("thickness_mm", "femoral", "d"),
                                                          ("volume_cm3", "femoral", "d")}


def test_profile_biomarker_inputs():
    from mskseg_lib.biomarkers.study import BiomarkerSelection
    from mskseg_lib.config import load_profile
    from mskseg_lib.from_profile.biomarkers import biomarker_inputs
    from mskseg_lib.stats.agreement import AgreementSettings

    cfg = load_profile("fixture")
    b = cfg["biomarkers"]
    bi = biomarker_inputs(cfg)
    assert bi["selection"] == BiomarkerSelection(datasets=tuple(b["datasets"]), split="all")
    assert bi["agreement"] == AgreementSettings(n_boot=10_000, seed=cfg["seed"], check_resamples=5)
    assert bi["prepared_dir"].name == "prepared" and bi["cohort_dir"].name == "cohort"
