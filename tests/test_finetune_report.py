"""Finetuning tables (Table 1 tiers 1-3, S6-S9, the class-level S10-S33) on small hand-made
result tables whose answers are known: the study's Mean Tissue worked out by hand, p-values from
scipy, subject means, the Table 1 arm chosen by the study's definition, published values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mskseg_lib.finetuning import report as rp
from mskseg_lib.stats import finetune_tests

NAN = np.nan
DESS = "Knee_3D_DESS_Research_Anatomical_86"
THIGH = "Thigh_2D_T1ax_Clinical_Anatomical_50"
CUBE_US = "Knee_3D_CUBE_Undersampled_Research_Anatomical_50"
SPINE = "Spine_2D_T1ax_Clinical_Anatomical_59"
HIP = "Hip_3D_CUBE_Research_Anatomical_42"
E_FULL = "all_msk/lite_medsam-trained-gridshift0-nall/Run_1"  # Table 1's arm: the study's mskSAM
E_PART = "all_msk/lite_medsam-frozen-gridshift0-nall/Run_1"  # the second arm of S9
E_SAM = "knee/sam_vit_b-frozen-gridshift0-nall/Run_1"  # only a fallback for Table 1
E_SAM2 = "all_msk/sam2_hiera_base_plus-trained-gridshift0-nall/Run_1"
E_SIZE = f"{DESS}/lite_medsam-frozen-gridshift0-n5/Run_1"

# zero-shot subject Dice of LiteMedSAM; its finetuned arm is exactly 0.1 higher everywhere
ZS_LITE = {DESS: [0.50, 0.61, 0.42, 0.70], THIGH: [0.30, 0.55, 0.47], CUBE_US: [0.40]}
THIGH_GAIN = [0.05, -0.02, 0.20]  # a thigh effect of mixed sign, so its p differs from DESS
ZS_SAM = {DESS: [0.20, 0.25, 0.33]}  # SAM's finetuned arm equals it: no difference to test


def _exp(eid: str, groups: str, model_key: str, model: str, status: str = "finished",
         train: str = f"{DESS},{THIGH}", evals: str = f"{DESS},{THIGH},{CUBE_US}",
         n: str = "all", seconds: float = 600.0, strategy: str = "full", task: str = "all_msk",
         mix: str = "all_msk", shift: int = 0) -> dict:
    return {"experiment_id": eid, "task": task, "mix_kind": mix, "groups": groups,
            "model_key": model_key, "model": model, "strategy": strategy,
            "encoder": "trained" if strategy == "full" else "frozen",
            "box_shift_grid_px": shift, "train_subjects": n, "n_train_subjects_max": 60,
            "train_datasets": train, "eval_datasets": evals, "n_train_samples": 1200,
            "status": status, "epochs_run": 12 if status == "finished" else NAN,
            "best_epoch": 9 if status == "finished" else NAN,
            "stop_reason": "early stopping" if status == "finished" else "",
            "train_seconds": seconds if status == "finished" else NAN,
            "seconds_per_epoch": 50.0, "run_dir": f"runs/{eid}"}


def make_experiments() -> pd.DataFrame:
    return pd.DataFrame([
        _exp(E_PART, "initial_weights", "lite_medsam", "LiteMedSAM", strategy="partial"),
        _exp(E_FULL, "initial_weights", "lite_medsam", "LiteMedSAM"),
        _exp(E_SAM, "mixing,initial_weights", "sam_vit_b", "SAM ViT-B", train=DESS, evals=DESS,
             strategy="partial", task="knee", mix="anatomy"),
        _exp(E_SAM2, "initial_weights", "sam2_hiera_base_plus", "SAM2 Hiera B+", status="pending"),
        _exp(E_SIZE, "size", "lite_medsam", "LiteMedSAM", train=DESS, evals=DESS, n="5", seconds=90.0,
             strategy="partial", task=DESS, mix="single"),
    ])


def make_models() -> pd.DataFrame:
    return pd.DataFrame([
        {"model_key": "lite_medsam", "model": "LiteMedSAM", "status": "available"},
        {"model_key": "medsam_vit_b", "model": "MedSAM ViT-B", "status": "not run: checkpoint missing"},
        {"model_key": "sam_vit_b", "model": "SAM ViT-B", "status": "available"},
        {"model_key": "sam2_hiera_base_plus", "model": "SAM2 Hiera B+", "status": "available"},
        {"model_key": "sam2_hiera_tiny", "model": "SAM2 Hiera T", "status": "available"},
    ])


def _subject_rows(eid: str, model_key: str, values: dict[str, list[float]],
                  condition: str = "gt_box") -> list[dict]:
    return [{"experiment_id": eid, "model_key": model_key, "condition": condition,
             "dataset": d, "subject_id": f"s{k}", "dice_mean_slice": v, "iou_mean_slice": v / 2,
             "dice_3d": v, "n_slices": 4}
            for d, vals in values.items() for k, v in enumerate(vals)]


def make_subjects() -> pd.DataFrame:
    lite_ft = {d: [v + 0.1 for v in vals] for d, vals in ZS_LITE.items()}
    lite_ft[THIGH] = [v + g for v, g in zip(ZS_LITE[THIGH], THIGH_GAIN)]
    rows = (_subject_rows(rp.zero_shot_id("lite_medsam"), "lite_medsam", ZS_LITE)
            + _subject_rows(E_FULL, "lite_medsam", lite_ft)
            + _subject_rows(rp.zero_shot_id("sam_vit_b"), "sam_vit_b", ZS_SAM)
            + _subject_rows(E_SAM, "sam_vit_b", ZS_SAM)
            # the partial arm, another condition and another experiment: not Table 1
            + _subject_rows(E_PART, "lite_medsam", {DESS: [0.99, 0.99, 0.99, 0.99]})
            + _subject_rows(E_FULL, "lite_medsam", {DESS: [0.01, 0.02, 0.03, 0.04]}, "shift_20px")
            + _subject_rows(E_SIZE, "lite_medsam", {DESS: [0.99, 0.99, 0.99, 0.99]}))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ helpers
def test_split_list_and_groups():
    assert rp.split_list("size, knee,") == ["size", "knee"]
    assert rp.split_list(NAN) == [] and rp.split_list(("a", "b")) == ["a", "b"]
    exps = make_experiments()
    assert rp.in_group(exps, "initial_weights")["experiment_id"].tolist() == [E_PART, E_FULL, E_SAM, E_SAM2]
    assert rp.in_group(exps, "mixing")["experiment_id"].tolist() == [E_SAM]
    assert rp.in_group(pd.DataFrame(), "size").empty


def test_summarise_counts_each_subject_once():
    # subject a has three rows (slices or repeats), subject b one: mean over subjects is 0.6
    df = pd.DataFrame({"dataset": "D", "subject_id": ["a", "a", "a", "b", "c"],
                       "value": [0.9, 0.9, 0.9, 0.3, NAN]})
    out = rp.summarise(df, [])
    assert out["n_subjects"].tolist() == [2]
    assert out["mean"].iloc[0] == pytest.approx(0.6)
    assert out["sd"].iloc[0] == pytest.approx(np.std([0.9, 0.3], ddof=1))
    assert df["value"].mean() != pytest.approx(0.6)  # the row mean would differ


def test_paired_wilcoxon_notes():
    assert finetune_tests.paired_wilcoxon([0.5], [0.4])[2] == "not run: needs >= 2 paired subjects, have 1"
    w, p, note = finetune_tests.paired_wilcoxon([0.5, 0.6], [0.5, 0.6])
    assert np.isnan(p) and note == "not run: all paired differences are zero"


def test_mean_sd_text():
    assert rp.mean_sd_text(0.81234, 0.0345) == "0.812 ± 0.035"
    assert rp.mean_sd_text(0.5, NAN) == "0.500"
    assert rp.mean_sd_text(NAN, NAN) == "n/a"


# ------------------------------------------------------------------- slice-level results
def _slice_rows(eid: str, model_key: str, dataset: str, subject: str, tissue: str,
                label: tuple[int, str], values: list[float], condition: str = "gt_box") -> list[dict]:
    return [{"experiment_id": eid, "model_key": model_key, "condition": condition, "dataset": dataset,
             "subject_id": subject, "slice_index": k, "label_value": label[0], "label_name": label[1],
             "tissue_class": tissue, "dice": v, "iou": v / 2} for k, v in enumerate(values)]


FC, LM = (1, "femoral_cartilage"), (5, "lateral_meniscus")
FAT, EXT, CORTEX = (1, "subcutaneous_fat"), (2, "extensors"), (4, "femoral_cortex")
FEMUR, CUBE_FC = (1, "femur"), (2, "femoral_cartilage")


def make_slices() -> pd.DataFrame:
    zs = rp.zero_shot_id("lite_medsam")
    rows = []
    # knee DESS (cartilage only). Finetuned femoral cartilage: subject a 3 slices at 0.9, b one
    # at 0.3 and one where it is absent (NaN): pooled 0.75, per subject 0.6; meniscus 0.7.
    # Mean Tissue = cartilage = (0.75 + 0.7) / 2 = 0.725 (per-subject reading (0.6 + 0.7) / 2).
    rows += _slice_rows(E_FULL, "lite_medsam", DESS, "a", "cartilage", FC, [0.9, 0.9, 0.9])
    rows += _slice_rows(E_FULL, "lite_medsam", DESS, "b", "cartilage", FC, [0.3, NAN])
    rows += _slice_rows(E_FULL, "lite_medsam", DESS, "a", "cartilage", LM, [0.7])
    # zero-shot: cartilage pooled (1.5 + 0.1) / 4 = 0.4, per subject 0.3; meniscus 0.6 -> 0.5 / 0.45
    rows += _slice_rows(zs, "lite_medsam", DESS, "a", "cartilage", FC, [0.5, 0.5, 0.5])
    rows += _slice_rows(zs, "lite_medsam", DESS, "b", "cartilage", FC, [0.1])
    rows += _slice_rows(zs, "lite_medsam", DESS, "a", "cartilage", LM, [0.6])
    # thigh: muscle 0.7 / bone 0.9 / fat 0.4 finetuned, 0.4 / 0.7 / 0.2 zero-shot
    rows += _slice_rows(E_FULL, "lite_medsam", THIGH, "t1", "muscle", EXT, [0.8, 0.6])
    rows += _slice_rows(E_FULL, "lite_medsam", THIGH, "t1", "bone", CORTEX, [0.9])
    rows += _slice_rows(E_FULL, "lite_medsam", THIGH, "t1", "fat", FAT, [0.4])
    rows += _slice_rows(zs, "lite_medsam", THIGH, "t1", "muscle", EXT, [0.5, 0.3])
    rows += _slice_rows(zs, "lite_medsam", THIGH, "t1", "bone", CORTEX, [0.7])
    rows += _slice_rows(zs, "lite_medsam", THIGH, "t1", "fat", FAT, [0.2])
    # undersampled CUBE (held out): bone 0.6 / cartilage 0.2 finetuned, 0.5 / 0.1 zero-shot
    rows += _slice_rows(E_FULL, "lite_medsam", CUBE_US, "u1", "bone", FEMUR, [0.6])
    rows += _slice_rows(E_FULL, "lite_medsam", CUBE_US, "u1", "cartilage", CUBE_FC, [0.2])
    rows += _slice_rows(zs, "lite_medsam", CUBE_US, "u1", "bone", FEMUR, [0.5])
    rows += _slice_rows(zs, "lite_medsam", CUBE_US, "u1", "cartilage", CUBE_FC, [0.1])
    # zero-shot on a dataset the finetuned arm was not scored on: left out of the comparison
    rows += _slice_rows(zs, "lite_medsam", SPINE, "p1", "muscle", (1, "psoas"), [0.0, 0.0])
    # the partial arm, another condition and another experiment
    rows += _slice_rows(E_PART, "lite_medsam", DESS, "a", "cartilage", FC, [0.2])
    rows += _slice_rows(E_FULL, "lite_medsam", DESS, "a", "cartilage", FC, [0.0], "shift_20px")
    rows += _slice_rows(E_SIZE, "lite_medsam", DESS, "a", "cartilage", FC, [0.2, 0.4])
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- Table 1's arm
def test_table1_arm_is_the_full_unshifted_all_msk_experiment():
    exps = make_experiments()
    lite = rp.table1_arm(exps, "lite_medsam")
    assert lite.experiment_ids == [E_FULL] and lite.description == rp.STUDY_ARM
    sam = rp.table1_arm(exps, "sam_vit_b")  # only a frozen-encoder knee-mix run: a stated fallback
    assert sam.experiment_ids == [E_SAM]
    assert sam.description == ("fallback: trained on knee, not all_msk; "
                               "strategy partial (encoder frozen), not full")
    assert rp.table1_arm(exps, "sam2_hiera_base_plus").status == "pending"
    assert rp.table1_arm(exps, "medsam_vit_b").status == rp.NO_EXPERIMENT
    # repeats of the chosen setting are pooled; a shifted full run loses to the unshifted one
    more = pd.concat([exps, pd.DataFrame([
        _exp(E_FULL.replace("Run_1", "Run_2"), "initial_weights", "lite_medsam", "LiteMedSAM"),
        _exp("all_msk/lite_medsam-trained-gridshift20-nall/Run_1", "initial_weights", "lite_medsam",
             "LiteMedSAM", shift=20)])], ignore_index=True)
    assert rp.table1_arm(more, "lite_medsam").experiment_ids == [E_FULL, E_FULL.replace("Run_1", "Run_2")]


# ---------------------------------------------------------------------- Table 1, tier 1
@pytest.fixture
def tier1() -> pd.DataFrame:
    return finetune_tests.table1_datasets(make_subjects(), make_slices(), make_experiments(), make_models())


def _row(t: pd.DataFrame, model_key: str, dataset=None) -> pd.Series:
    sel = t["model_key"] == model_key
    if dataset is not None:
        sel &= t["dataset"] == dataset
    assert sel.sum() == 1
    return t[sel].iloc[0]


def test_tier1_is_the_mean_tissue_of_the_study_arm(tier1):
    dess = _row(tier1, "lite_medsam", DESS)
    assert dess["experiment_id"] == E_FULL and dess["finetuned_arm"] == rp.STUDY_ARM
    assert dess["finetuned_dice"] == pytest.approx(0.725) and dess["zero_shot_dice"] == pytest.approx(0.5)
    assert dess["difference"] == pytest.approx(0.225)
    assert dess["finetuned_dice_per_subject"] == pytest.approx(0.65)
    assert dess["zero_shot_dice_per_subject"] == pytest.approx(0.45)
    thigh = _row(tier1, "lite_medsam", THIGH)  # (0.7 + 0.9 + 0.4) / 3, not a pooled-label mean
    assert thigh["finetuned_dice"] == pytest.approx(round(2.0 / 3, 4))
    assert thigh["zero_shot_dice"] == pytest.approx(round(1.3 / 3, 4))
    assert dess["finetuned"] == f"0.725 (subjects {np.mean(ZS_LITE[DESS]) + 0.1:.3f} ± {np.std(ZS_LITE[DESS], ddof=1):.3f})"


def test_tier1_subject_summary_and_wilcoxon_match_scipy(tier1):
    dess = _row(tier1, "lite_medsam", DESS)
    zs = np.array(ZS_LITE[DESS])
    assert dess["zero_shot_subject_mean"] == pytest.approx(round(zs.mean(), 4))
    assert dess["zero_shot_subject_sd"] == pytest.approx(round(zs.std(ddof=1), 4))
    assert dess["finetuned_subject_mean"] == pytest.approx(round(zs.mean() + 0.1, 4))  # not the partial arm's 0.99
    assert dess["n_paired"] == 4 and dess["status"] == "finished" and dess["in_training"]
    expected = stats.wilcoxon(zs + 0.1, zs)
    assert dess["p_value"] == pytest.approx(expected.pvalue, rel=1e-3)
    assert dess["wilcoxon_w"] == pytest.approx(expected.statistic)


def test_tier1_bh_within_model_and_untestable_rows(tier1):
    lite = tier1[tier1["model_key"] == "lite_medsam"]
    assert lite["dataset"].tolist() == [DESS, CUBE_US, THIGH]  # anatomy order: knee, then thigh
    thigh_zs = np.array(ZS_LITE[THIGH])
    p_dess = stats.wilcoxon(np.array(ZS_LITE[DESS]) + 0.1, ZS_LITE[DESS]).pvalue
    p_thigh = stats.wilcoxon(thigh_zs + THIGH_GAIN, thigh_zs).pvalue
    lo, hi = sorted([p_dess, p_thigh])
    bh = {lo: min(2 * lo, hi), hi: hi}  # Benjamini-Hochberg for two tests, by hand
    assert _row(tier1, "lite_medsam", DESS)["p_bh"] == pytest.approx(bh[p_dess], rel=1e-3)
    assert _row(tier1, "lite_medsam", THIGH)["p_bh"] == pytest.approx(bh[p_thigh], rel=1e-3)
    cube = _row(tier1, "lite_medsam", CUBE_US)  # one subject, held out of training
    assert np.isnan(cube["p_value"]) and np.isnan(cube["p_bh"]) and not cube["in_training"]
    assert cube["note"] == "not run: needs >= 2 paired subjects, have 1"
    assert cube["finetuned_dice"] == pytest.approx(0.4)  # (bone 0.6 + cartilage 0.2) / 2
    sam = _row(tier1, "sam_vit_b", DESS)
    assert sam["finetuned_arm"].startswith("fallback: trained on knee")
    assert sam["finetuned_subject_mean"] - sam["zero_shot_subject_mean"] == 0 and np.isnan(sam["p_value"])
    assert sam["note"] == "not run: all paired differences are zero; no slice results, so no study Dice"


def test_tier1_published_values_beside_and_flags(tier1):
    dess = _row(tier1, "lite_medsam", DESS)
    assert dess["published_zero_shot · SAM ViT-B"] == 0.61008
    assert dess["published_finetuned · SAM2 hiera-b+"] == 0.93469
    assert dess["published_finetuned · MedSAM ViT-B"] == 0.92006 and dess["published_note"] == ""
    t = finetune_tests.table1_datasets(make_subjects().replace({DESS: SPINE}), make_slices().replace({DESS: SPINE}),
                                       make_experiments(), make_models())
    assert "copy error" in _row(t, "lite_medsam", SPINE)["published_note"]


def test_tier1_absent_models_keep_a_status_row(tier1):
    assert tier1["model_key"].drop_duplicates().tolist() == [
        "lite_medsam", "medsam_vit_b", "sam_vit_b", "sam2_hiera_base_plus", "sam2_hiera_tiny"]
    missing = _row(tier1, "medsam_vit_b")
    assert missing["status"] == "not run: checkpoint missing"
    assert np.isnan(missing["finetuned_dice"]) and missing["finetuned"] == "n/a"
    assert _row(tier1, "sam2_hiera_base_plus")["status"] == "pending"
    assert _row(tier1, "sam2_hiera_tiny")["status"] == rp.NO_EXPERIMENT


def test_tier1_numeric_columns_stay_numeric(tier1):
    for col in ("zero_shot_dice", "finetuned_subject_sd", "difference", "p_value", "p_bh",
                "published_zero_shot · SAM ViT-B"):
        assert pd.api.types.is_float_dtype(tier1[col]), col
    assert pd.api.types.is_integer_dtype(tier1["n_paired"])


def test_tier1_without_tests_has_the_same_dice_and_no_p_values(tier1):
    bare = rp.table1_datasets(make_subjects(), make_slices(), make_experiments(), make_models())
    assert bare["finetuned_dice"].tolist() == pytest.approx(tier1["finetuned_dice"].tolist(), nan_ok=True)
    assert bare["n_paired"].tolist() == tier1["n_paired"].tolist()
    assert bare["p_value"].isna().all() and bare["p_bh"].isna().all() and bare["wilcoxon_w"].isna().all()
    assert _row(bare, "lite_medsam", CUBE_US)["note"] == ""  # the test's "not run" note comes with the test


def test_tier1_empty_inputs():
    t = finetune_tests.table1_datasets(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), make_models().iloc[:1])
    assert t["status"].tolist() == [rp.NO_EXPERIMENT]


# ----------------------------------------------------------------- Table 1, tiers 2 and 3
def test_tier2_is_per_dataset_and_tissue_with_the_mean_tissue_row():
    t = rp.table1_tissues(make_slices(), make_experiments())
    # knee DESS has one tissue class: not in tier 2, as in the study; bone stays per dataset
    assert list(zip(t["dataset"], t["tissue_class"])) == [
        (CUBE_US, "cartilage"), (CUBE_US, "bone"), (CUBE_US, "mean_tissue"),
        (THIGH, "bone"), (THIGH, "muscle"), (THIGH, "fat"), (THIGH, "mean_tissue")]
    by = t.set_index(["dataset", "tissue_class"])
    assert by.loc[(THIGH, "bone"), "finetuned_dice"] == pytest.approx(0.9)
    assert by.loc[(CUBE_US, "bone"), "finetuned_dice"] == pytest.approx(0.6)  # pooled would be 0.75
    assert by.loc[(THIGH, "muscle"), "zero_shot_dice"] == pytest.approx(0.4)
    assert by.loc[(THIGH, "mean_tissue"), "difference"] == pytest.approx(round(0.7 / 3, 4), abs=1e-4)
    assert by.loc[(THIGH, "muscle"), "published_zero_shot · SAM ViT-B"] == 0.90313
    assert by.loc[(THIGH, "mean_tissue"), "published_finetuned · SAM2 hiera-b+"] == 0.90117
    assert (t["finetuned_arm"] == rp.STUDY_ARM).all() and (t["model_key"] == "lite_medsam").all()
    dess = rp.table1_tissues(make_slices(), make_experiments(), datasets=[DESS])
    assert dess["tissue_class"].tolist() == ["cartilage", "mean_tissue"]
    assert dess["finetuned_dice"].tolist() == pytest.approx([0.725, 0.725])


def test_tier3_labels_of_requested_datasets_in_order_with_published():
    t = rp.table1_labels(make_slices(), make_experiments(), [THIGH, DESS])
    assert list(zip(t["dataset"], t["label_name"])) == [
        (THIGH, "subcutaneous_fat"), (THIGH, "extensors"), (THIGH, "femoral_cortex"), (THIGH, "mean_tissue"),
        (DESS, "femoral_cartilage"), (DESS, "lateral_meniscus"), (DESS, "mean_tissue")]
    fem = t.iloc[4]
    assert fem["finetuned_dice"] == pytest.approx(0.75) and fem["zero_shot_dice"] == pytest.approx(0.4)
    assert fem["finetuned_dice_per_subject"] == pytest.approx(0.6)
    assert fem["published_zero_shot · SAM ViT-B"] == 0.4551
    assert fem["published_finetuned · SAM2 hiera-b+"] == 0.9356
    assert t.iloc[3]["published_zero_shot · MedSAM ViT-B"] == 0.5804  # thigh Mean Tissue
    dess_mean = t.iloc[6]  # each dataset's Mean Tissue row, both arms and both readings
    assert dess_mean[["zero_shot_dice", "finetuned_dice", "zero_shot_dice_per_subject"]].tolist() == pytest.approx(
        [0.5, 0.725, 0.45])
    assert rp.table1_labels(make_slices(), make_experiments(), [SPINE]).empty


# ---------------------------------------------------------------------------- S6 - S9
def test_table_s6_definitions():
    t = rp.table_s6(make_experiments())
    assert t.columns.tolist() == rp.S6_COLUMNS
    assert t["experiment_id"].tolist() == make_experiments()["experiment_id"].tolist()
    sam = t.iloc[2]
    assert sam["groups"] == "mixing, initial_weights" and sam["train_datasets"] == "Knee DESS 86"
    assert t.iloc[0]["eval_datasets"] == "Knee DESS 86, Thigh T1ax 50, Knee CUBE US 50"
    assert t.iloc[0]["minutes"] == pytest.approx(10.0) and t.iloc[4]["minutes"] == pytest.approx(1.5)
    pending = t.iloc[3]
    assert pending["status"] == "pending" and pd.isna(pending["epochs_run"]) and pd.isna(pending["minutes"])
    assert pd.api.types.is_integer_dtype(t["best_epoch"]) and t.iloc[0]["best_epoch"] == 9
    old = rp.table_s6(make_experiments().rename(columns={"box_shift_grid_px": "box_shift_px"}).assign(box_shift_px=20))
    assert old["box_shift_grid_px"].tolist() == [20] * 5
    assert rp.table_s6(pd.DataFrame()).columns.tolist() == rp.S6_COLUMNS


def test_table_s7_profile_beside_study_settings():
    t = rp.table_s7({"lr": 3e-4, "patience": 10, "max_samples_per_epoch": 8},
                    {"strategy": "partial", "box_shift_grid_px": 0}).set_index("setting")
    assert t.loc["lr", "value"] == "0.0003" and t.loc["lr", "study_value"] == "0.0001"
    assert t.loc["patience", "study_value"] == "10"
    assert t.loc["max_samples_per_epoch", "study_value"] == ""  # not stated in the study
    assert t.loc["optimizer", "section"] == "engine" and t.loc["box_shift_grid_px", "study_value"] == "0 or 20"


def test_table_s8_tissue_level_per_experiment():
    t = rp.table_s8(make_slices(), make_experiments())
    assert list(dict.fromkeys(t["experiment_id"])) == [E_PART, E_FULL, E_SIZE]  # with slice results, in order
    size = t[t.experiment_id == E_SIZE]
    assert size["tissue_class"].tolist() == ["cartilage", "mean_tissue"]
    assert size["finetuned_dice"].tolist() == pytest.approx([0.3, 0.3])
    assert size["zero_shot_dice"].tolist() == pytest.approx([0.5, 0.5])  # its initial model, same dataset
    full = t[t.experiment_id == E_FULL]
    assert full.loc[full.dataset == CUBE_US, "in_training"].eq(False).all()
    assert rp.table_s8(make_slices().iloc[0:0], make_experiments()).empty


def test_table_s9_initial_weights_by_strategy():
    t = rp.table_s9(make_subjects(), make_slices(), make_experiments())
    lite = t[t.model_key == "lite_medsam"]
    assert lite["strategy"].drop_duplicates().tolist() == ["full", "partial"]
    full_dess = lite[(lite.strategy == "full") & (lite.dataset == DESS)].iloc[0]
    part_dess = lite[(lite.strategy == "partial") & (lite.dataset == DESS)].iloc[0]
    assert full_dess["is_table1_arm"] and not part_dess["is_table1_arm"]
    assert full_dess["finetuned_dice"] == pytest.approx(0.725) and part_dess["finetuned_dice"] == pytest.approx(0.2)
    assert part_dess["finetuned_subject_mean"] == pytest.approx(0.99)
    assert set(t["model_key"]) == {"lite_medsam"}  # SAM's run has no slice results here


# -------------------------------------------------------------------- S10 - S33: class level
def test_class_level_numbers_map_24_tables_to_datasets_and_metrics():
    m = rp.class_level_numbers()
    assert m["table"].tolist() == [f"S{n}" for n in range(10, 34)]
    assert m.iloc[0]["dataset"] == HIP and m.iloc[0]["metric"] == "dice"
    assert m.iloc[12]["dataset"] == HIP and m.iloc[12]["metric"] == "iou"
    assert m.iloc[-1]["dataset"] == CUBE_US


def test_class_level_table_rows_per_experiment_columns_per_label():
    t = rp.class_level_table(make_slices(), make_experiments(), DESS)
    assert t["experiment_id"].tolist() == [rp.zero_shot_id("lite_medsam"), E_PART, E_FULL, E_SIZE]
    assert t.columns.tolist()[-8:] == ["femoral_cartilage", "lateral_tibial_cartilage", "medial_tibial_cartilage",
                                       "patellar_cartilage", "lateral_meniscus", "medial_meniscus", "mean_tissue", "note"]
    full = t.set_index("experiment_id").loc[E_FULL]
    assert full["femoral_cartilage"] == pytest.approx(0.75) and full["lateral_meniscus"] == pytest.approx(0.7)
    assert full["mean_tissue"] == pytest.approx(0.725) and np.isnan(full["patellar_cartilage"])
    assert full["setting"] == "finetuned" and full["n_subjects"] == 2
    iou = rp.class_level_table(make_slices(), make_experiments(), DESS, "iou").set_index("experiment_id")
    assert iou.loc[E_FULL, "femoral_cartilage"] == pytest.approx(0.375)
    hip = rp.class_level_table(make_slices(), make_experiments(), HIP)
    assert len(hip) == 1 and hip["note"].iloc[0].startswith("no experiment was scored on")


def test_slice_tables_without_results_are_empty_not_errors():
    no_slices = make_slices().iloc[0:0]
    for table in (rp.table1_tissues(no_slices, make_experiments()),
                  rp.table1_tissues(make_slices(), pd.DataFrame()),
                  rp.table1_labels(no_slices, make_experiments(), [DESS])):
        assert table.empty and {"zero_shot_dice", "finetuned_dice", "difference"} <= set(table.columns)
    assert rp.table_s8(make_slices(), make_experiments().assign(status="pending")).empty
    assert rp.table_s9(make_subjects(), make_slices(), make_experiments().assign(status="pending")).empty
