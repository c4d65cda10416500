"""Finetuning tables (Table 1 tiers 1-3, S6, S7 onward) on small hand-made result tables
whose answers are known: differences built in, p-values from scipy, means over subjects."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mskseg_lib.finetuning import report as rp

NAN = np.nan
DESS = "Knee_3D_DESS_Research_Anatomical_86"
THIGH = "Thigh_2D_T1ax_Clinical_Anatomical_50"
CUBE_US = "Knee_3D_CUBE_Undersampled_Research_Anatomical_50"
SPINE = "Spine_2D_T1ax_Clinical_Anatomical_59"
E_LITE = "all_msk/lite_medsam-frozen-shift0-nall/Run_1"
E_SAM = "all_msk/sam_vit_b-frozen-shift0-nall/Run_1"
E_SAM2 = "all_msk/sam2_hiera_base_plus-frozen-shift0-nall/Run_1"
E_SIZE = f"{DESS}/lite_medsam-frozen-shift0-n5/Run_1"

# zero-shot subject Dice of LiteMedSAM; its finetuned arm is exactly 0.1 higher everywhere
ZS_LITE = {DESS: [0.50, 0.61, 0.42, 0.70], THIGH: [0.30, 0.55, 0.47], CUBE_US: [0.40]}
THIGH_GAIN = [0.05, -0.02, 0.20]  # a thigh effect of mixed sign, so its p differs from DESS
ZS_SAM = {DESS: [0.20, 0.25, 0.33]}  # SAM's finetuned arm equals it: no difference to test


def _exp(eid: str, groups: str, model_key: str, model: str, status: str = "finished",
         train: str = f"{DESS},{THIGH}", evals: str = f"{DESS},{THIGH},{CUBE_US}",
         n: str = "all", seconds: float = 600.0) -> dict:
    return {"experiment_id": eid, "task": "all_msk", "mix_kind": "all_msk", "groups": groups,
            "model_key": model_key, "model": model, "strategy": "partial", "encoder": "frozen",
            "box_shift_px": 0, "train_subjects": n, "n_train_subjects_max": 60,
            "train_datasets": train, "eval_datasets": evals, "n_train_samples": 1200,
            "status": status, "epochs_run": 12 if status == "finished" else NAN,
            "best_epoch": 9 if status == "finished" else NAN,
            "stop_reason": "early stopping" if status == "finished" else "",
            "train_seconds": seconds if status == "finished" else NAN,
            "seconds_per_epoch": 50.0, "run_dir": f"runs/{eid}"}


def make_experiments() -> pd.DataFrame:
    return pd.DataFrame([
        _exp(E_LITE, "initial_weights", "lite_medsam", "LiteMedSAM"),
        _exp(E_SAM, "mixing,initial_weights", "sam_vit_b", "SAM ViT-B", train=DESS, evals=DESS),
        _exp(E_SAM2, "initial_weights", "sam2_hiera_base_plus", "SAM2 Hiera B+", status="pending"),
        _exp(E_SIZE, "size", "lite_medsam", "LiteMedSAM", train=DESS, evals=DESS, n="5", seconds=90.0),
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
            + _subject_rows(E_LITE, "lite_medsam", lite_ft)
            + _subject_rows(rp.zero_shot_id("sam_vit_b"), "sam_vit_b", ZS_SAM)
            + _subject_rows(E_SAM, "sam_vit_b", ZS_SAM)
            # other condition and another experiment: must not leak into Table 1
            + _subject_rows(E_LITE, "lite_medsam", {DESS: [0.01, 0.02, 0.03, 0.04]}, "shift_20px")
            + _subject_rows(E_SIZE, "lite_medsam", {DESS: [0.99, 0.99, 0.99, 0.99]}))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ helpers
def test_split_list_and_groups():
    assert rp.split_list("size, knee,") == ["size", "knee"]
    assert rp.split_list(NAN) == [] and rp.split_list(("a", "b")) == ["a", "b"]
    exps = make_experiments()
    assert rp.in_group(exps, "initial_weights")["experiment_id"].tolist() == [E_LITE, E_SAM, E_SAM2]
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
    assert rp.paired_wilcoxon([0.5], [0.4])[2] == "not run: needs >= 2 paired subjects, have 1"
    w, p, note = rp.paired_wilcoxon([0.5, 0.6], [0.5, 0.6])
    assert np.isnan(p) and note == "not run: all paired differences are zero"


def test_mean_sd_text():
    assert rp.mean_sd_text(0.81234, 0.0345) == "0.812 ± 0.035"
    assert rp.mean_sd_text(0.5, NAN) == "0.500"
    assert rp.mean_sd_text(NAN, NAN) == "n/a"


# ---------------------------------------------------------------------- Table 1, tier 1
@pytest.fixture
def tier1() -> pd.DataFrame:
    return rp.table1_datasets(make_subjects(), make_experiments(), make_models())


def _row(t: pd.DataFrame, model_key: str, dataset=None) -> pd.Series:
    sel = t["model_key"] == model_key
    if dataset is not None:
        sel &= t["dataset"] == dataset
    assert sel.sum() == 1
    return t[sel].iloc[0]


def test_tier1_difference_and_wilcoxon_match_scipy(tier1):
    dess = _row(tier1, "lite_medsam", DESS)
    zs = np.array(ZS_LITE[DESS])
    assert dess["difference"] == pytest.approx(0.1)
    assert dess["zero_shot_mean"] == pytest.approx(round(zs.mean(), 4))
    assert dess["zero_shot_sd"] == pytest.approx(round(zs.std(ddof=1), 4))
    assert dess["finetuned_mean"] == pytest.approx(round(zs.mean() + 0.1, 4))
    assert dess["n_paired"] == 4 and dess["status"] == "finished" and dess["in_training"]
    expected = stats.wilcoxon(zs + 0.1, zs)
    assert dess["p_value"] == pytest.approx(expected.pvalue, rel=1e-3)
    assert dess["wilcoxon_w"] == pytest.approx(expected.statistic)
    assert dess["zero_shot"] == f"{zs.mean():.3f} ± {zs.std(ddof=1):.3f}"


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
    sam = _row(tier1, "sam_vit_b", DESS)
    assert sam["difference"] == 0 and np.isnan(sam["p_value"])
    assert sam["note"] == "not run: all paired differences are zero"


def test_tier1_absent_models_keep_a_status_row(tier1):
    assert tier1["model_key"].drop_duplicates().tolist() == [
        "lite_medsam", "medsam_vit_b", "sam_vit_b", "sam2_hiera_base_plus", "sam2_hiera_tiny"]
    missing = _row(tier1, "medsam_vit_b")
    assert missing["status"] == "not run: checkpoint missing"
    assert np.isnan(missing["finetuned_mean"]) and missing["finetuned"] == "n/a"
    assert _row(tier1, "sam2_hiera_base_plus")["status"] == "pending"
    assert _row(tier1, "sam2_hiera_tiny")["status"] == rp.NO_EXPERIMENT


def test_tier1_numeric_columns_stay_numeric(tier1):
    for col in ("zero_shot_mean", "finetuned_sd", "difference", "p_value", "p_bh"):
        assert pd.api.types.is_float_dtype(tier1[col]), col
    assert pd.api.types.is_integer_dtype(tier1["n_paired"])


def test_tier1_empty_inputs():
    t = rp.table1_datasets(pd.DataFrame(), pd.DataFrame(), make_models().iloc[:1])
    assert t["status"].tolist() == [rp.NO_EXPERIMENT]


# ------------------------------------------------------------------- slice-level tables
def _slice_rows(eid: str, model_key: str, dataset: str, subject: str, tissue: str,
                label: tuple[int, str], values: list[float], condition: str = "gt_box") -> list[dict]:
    return [{"experiment_id": eid, "model_key": model_key, "condition": condition, "dataset": dataset,
             "subject_id": subject, "slice_index": k, "label_value": label[0], "label_name": label[1],
             "tissue_class": tissue, "dice": v, "iou": v / 2} for k, v in enumerate(values)]


def make_slices() -> pd.DataFrame:
    zs, cart, men = rp.zero_shot_id("lite_medsam"), (1, "femoral_cartilage"), (5, "lateral_meniscus")
    rows = []
    # finetuned cartilage: subject a has 3 slices at 0.9, subject b 1 slice at 0.3 (subject mean
    # 0.6, slice mean 0.75); an absent label (NaN) must not count
    rows += _slice_rows(E_LITE, "lite_medsam", DESS, "a", "cartilage", cart, [0.9, 0.9, 0.9])
    rows += _slice_rows(E_LITE, "lite_medsam", DESS, "b", "cartilage", cart, [0.3, NAN])
    rows += _slice_rows(zs, "lite_medsam", DESS, "a", "cartilage", cart, [0.5, 0.5, 0.5])
    rows += _slice_rows(zs, "lite_medsam", DESS, "b", "cartilage", cart, [0.1])
    rows += _slice_rows(E_LITE, "lite_medsam", DESS, "a", "cartilage", men, [0.7])
    rows += _slice_rows(zs, "lite_medsam", DESS, "a", "cartilage", men, [0.6])
    rows += _slice_rows(E_LITE, "lite_medsam", THIGH, "t1", "muscle", (2, "extensors"), [0.8, 0.6])
    rows += _slice_rows(zs, "lite_medsam", THIGH, "t1", "muscle", (2, "extensors"), [0.5, 0.3])
    # zero-shot on a dataset the finetuned arm was not scored on: left out of the comparison
    rows += _slice_rows(zs, "lite_medsam", SPINE, "p1", "muscle", (1, "psoas"), [0.0, 0.0])
    # other condition and another experiment
    rows += _slice_rows(E_LITE, "lite_medsam", DESS, "a", "cartilage", cart, [0.0], "shift_20px")
    rows += _slice_rows(E_SIZE, "lite_medsam", DESS, "a", "cartilage", cart, [0.2, 0.4])
    return pd.DataFrame(rows)


def test_tier2_means_over_subjects_not_slices():
    t = rp.table1_tissues(make_slices(), make_experiments())
    assert t["tissue_class"].tolist() == ["cartilage", "muscle"]
    cart = t.iloc[0]
    # subject a: mean of its 4 cartilage rows (3 x 0.9 + meniscus 0.7); subject b: 0.3
    a_ft, a_zs = (0.9 * 3 + 0.7) / 4, (0.5 * 3 + 0.6) / 4
    assert cart["n_finetuned"] == 2
    assert cart["finetuned_mean"] == pytest.approx(round((a_ft + 0.3) / 2, 4))
    assert cart["finetuned_sd"] == pytest.approx(round(np.std([a_ft, 0.3], ddof=1), 4))
    assert cart["zero_shot_mean"] == pytest.approx(round((a_zs + 0.1) / 2, 4))
    muscle = t.iloc[1]
    assert muscle["n_zero_shot"] == 1  # the spine subject is not part of the comparison
    assert muscle["zero_shot_mean"] == pytest.approx(0.4)
    assert muscle["difference"] == pytest.approx(0.3)


def test_tier3_labels_of_requested_datasets_in_order():
    t = rp.table1_labels(make_slices(), make_experiments(), [THIGH, DESS])
    assert list(zip(t["dataset"], t["label_name"])) == [
        (THIGH, "extensors"), (DESS, "femoral_cartilage"), (DESS, "lateral_meniscus")]
    fem = t.iloc[1]
    assert fem["finetuned_mean"] == pytest.approx(0.6) and fem["zero_shot_mean"] == pytest.approx(0.3)
    assert fem["finetuned"] == f"0.600 ± {np.std([0.9, 0.3], ddof=1):.3f}"
    assert rp.table1_labels(make_slices(), make_experiments(), [SPINE]).empty


def test_class_level_tables_per_experiment():
    slices, exps = make_slices(), make_experiments()
    tables = rp.class_level_tables(slices, exps)
    assert list(tables) == [E_LITE, E_SIZE]  # experiments with slice results, in order
    size = tables[E_SIZE]
    assert size[["dataset", "tissue_class"]].values.tolist() == [[DESS, "cartilage"]]
    assert size["finetuned_mean"].iloc[0] == pytest.approx(0.3)
    # its initial model's zero-shot on the same dataset (both subjects, meniscus included)
    assert size["zero_shot_mean"].iloc[0] == pytest.approx(round(((0.5 * 3 + 0.6) / 4 + 0.1) / 2, 4))
    assert tables[E_LITE]["tissue_class"].tolist() == ["cartilage", "muscle"]
    long = rp.class_level_long(slices, exps)
    assert len(long) == sum(len(t) for t in tables.values())
    assert set(long["model"]) == {"LiteMedSAM"} and "experiment_id" not in size
    assert rp.class_level_long(slices.iloc[0:0], exps).empty


# ---------------------------------------------------------------------------- Table S6
def test_table_s6_definitions():
    t = rp.table_s6(make_experiments())
    assert t.columns.tolist() == rp.S6_COLUMNS
    assert t["experiment_id"].tolist() == make_experiments()["experiment_id"].tolist()
    sam = t.iloc[1]
    assert sam["groups"] == "mixing, initial_weights" and sam["train_datasets"] == "Knee DESS 86"
    assert t.iloc[0]["eval_datasets"] == "Knee DESS 86, Thigh T1ax 50, Knee CUBE US 50"
    assert t.iloc[0]["minutes"] == pytest.approx(10.0) and t.iloc[3]["minutes"] == pytest.approx(1.5)
    pending = t.iloc[2]
    assert pending["status"] == "pending" and pd.isna(pending["epochs_run"]) and pd.isna(pending["minutes"])
    assert pd.api.types.is_integer_dtype(t["best_epoch"]) and t.iloc[0]["best_epoch"] == 9
    assert rp.table_s6(pd.DataFrame()).columns.tolist() == rp.S6_COLUMNS


def test_slice_tables_without_results_are_empty_not_errors():
    no_slices = make_slices().iloc[0:0]
    for table in (rp.table1_tissues(no_slices, make_experiments()),
                  rp.table1_tissues(make_slices(), pd.DataFrame()),
                  rp.table1_labels(no_slices, make_experiments(), [DESS])):
        assert table.empty and {"zero_shot_mean", "finetuned_mean", "difference"} <= set(table.columns)
    assert rp.class_level_tables(make_slices(), make_experiments().assign(status="pending")) == {}
