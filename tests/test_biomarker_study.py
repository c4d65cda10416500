"""Notebook 05's measurement layer on a tiny prepared cohort."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mskseg_lib.biomarkers.study import (best_experiment_per_dataset, measure_all, measure_subject, paired,
                                         truth_rows)
from mskseg_lib.data.cohort import load_truth
from mskseg_lib.data.prepare import prepare_all
from mskseg_lib.data.tables import load_tables


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    import copy

    from mskseg_lib.config import load_profile

    root = tmp_path_factory.mktemp("study")
    cfg = copy.deepcopy(load_profile("fixture"))
    cfg["paths"] = {k: str(root / k) for k in cfg["paths"]}
    cfg["cohort"]["datasets"] = ["Knee_3D_CUBE_Research_Anatomical_300", "Spine_2D_T1sag_Clinical_Anatomical_23"]
    cfg["cohort"]["subjects_per_dataset"] = 2
    prepare_all(cfg, progress=False)
    subjects, _ = load_tables(cfg)
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
    long = pd.concat([long, truth_rows(load_truth(cfg), subjects)], ignore_index=True)
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


def test_stored_notebook_05_is_the_generator_output():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("make_notebook_05", root / "scripts" / "make_notebook_05.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    path = root / "notebooks" / "05_biomarker_agreement.ipynb"
    assert path.read_text() == gen.render(), "run scripts/make_notebook_05.py"
