"""Detector training, caching, inference and scoring on a tiny synthetic YOLO export (CPU, seconds).

One yolov8n is trained once per module (64 px, 1 epoch) on 4 images of bright/grey rectangles;
the tests read what ultralytics actually used (trainer args, validation files, args.yaml) and
check that nothing lands outside the temporary folders.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

from mskseg_lib.autolabel import detector as D
from mskseg_lib.data.errors import DataError
from mskseg_lib.settings import state_dir

DATASET = "Toy_2D_Rects"
SPLIT_SIZES = {"train": 4, "val": 2, "test": 2}
IMAGE_PX = 96
NAMES = {0: "bright", 1: "grey"}
AUGMENT = {  # every value differs from the ultralytics default, so "not passed" cannot pass
    "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.123, "degrees": 3.5, "translate": 0.05, "scale": 0.2,
    "shear": 0.5, "fliplr": 0.0, "flipud": 0.25, "mosaic": 0.5, "mixup": 0.1, "close_mosaic": 0,
}


def write_export(data_root: Path, dataset: str = DATASET, sizes: dict[str, int] = SPLIT_SIZES) -> Path:
    """A YOLO export like ``yolo_export`` writes: grey PNGs, one box per rectangle, dataset YAML."""
    rng = np.random.default_rng(0)
    root = data_root / "prepared" / "yolo" / dataset
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(sizes.get(split, 0)):
            img = rng.integers(0, 40, (IMAGE_PX, IMAGE_PX), dtype=np.uint8)
            lines = []
            for cls, value in ((0, 230), (1, 140)) if i % 2 == 0 else ((0, 230),):
                x0, y0 = (int(v) for v in rng.integers(4, IMAGE_PX // 2, 2))
                w, h = (int(v) for v in rng.integers(12, IMAGE_PX // 3, 2))
                img[y0:y0 + h, x0:x0 + w] = value
                lines.append(f"{cls} {(x0 + w / 2) / IMAGE_PX:.6f} {(y0 + h / 2) / IMAGE_PX:.6f} "
                             f"{w / IMAGE_PX:.6f} {h / IMAGE_PX:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{split}{i:02d}.png"), img)
            (root / "labels" / split / f"{split}{i:02d}.txt").write_text("\n".join(lines) + "\n")
    meta = {"path": str(root), "train": "images/train", "val": "images/val", "test": "images/test", "names": NAMES}
    out = data_root / "prepared" / "yolo" / f"{dataset}.yaml"
    out.write_text(yaml.safe_dump(meta, sort_keys=False))
    return out


SEED = 7
SETTINGS = D.DetectorSettings(model="yolov8n", image_size_px=64, epochs=1, batch_size=4, patience=5, workers=0,
                              conf=0.001, iou=0.7, max_det=15, augment=dict(AUGMENT),
                              nominal_batch_size=4, optimizer="AdamW", lr0=0.003)  # none an ultralytics default


@dataclasses.dataclass
class Project:
    """Where a test's prepared data and detectors live, and the detector settings it trains with."""

    base: Path
    settings: D.DetectorSettings = SETTINGS

    @property
    def prepared_dir(self) -> Path:
        return self.base / "data" / "prepared"

    @property
    def detectors_dir(self) -> Path:
        return self.base / "runs" / "autolabel" / "detectors"

    def train(self, dataset: str = DATASET, settings: D.DetectorSettings | None = None, **kwargs) -> D.DetectorRun:
        return D.train_detector(dataset, self.prepared_dir, self.detectors_dir, settings or self.settings,
                                seed=SEED, device="cpu", **kwargs)

    def evaluate(self, weights: Path, dataset: str = DATASET, split: str = "test"):
        return D.evaluate_detector(weights, dataset, self.prepared_dir, self.detectors_dir, self.settings,
                                   split=split, device="cpu")


def make_project(base: Path) -> Project:
    """A project folder with the toy export written."""
    project = Project(base)
    write_export(project.prepared_dir.parent)
    return project


def split_images(project: Project, split: str, dataset: str = DATASET) -> set[Path]:
    folder = project.prepared_dir / "yolo" / dataset / "images" / split
    return {p.resolve() for p in folder.glob("*.png")}


def home_ultralytics() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "Ultralytics"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train once with callbacks that record what the trainer really used."""
    base = tmp_path_factory.mktemp("detector")
    cwd = base / "cwd"
    cwd.mkdir()
    project = make_project(base)
    seen: dict = {}

    def on_train_start(trainer):
        seen["args"] = vars(trainer.args).copy()
        seen["train_files"] = list(trainer.train_loader.dataset.im_files)

    def on_fit_epoch_end(trainer):  # validation of the epoch has just run
        seen.setdefault("val_files", []).append(list(trainer.validator.dataloader.dataset.im_files))

    home_before = home_ultralytics().exists()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        run = project.train(progress=False,
                            callbacks={"on_train_start": on_train_start, "on_fit_epoch_end": on_fit_epoch_end})
    finally:
        os.chdir(old)
    return SimpleNamespace(project=project, run=run, seen=seen, cwd=cwd, base=base, home_before=home_before)


def test_ultralytics_state_is_inside_the_project():
    from ultralytics.utils import USER_CONFIG_DIR

    assert os.environ["YOLO_OFFLINE"] == "1"
    assert Path(USER_CONFIG_DIR).resolve().is_relative_to(state_dir().resolve())


def test_training_writes_run_where_expected(trained):
    run, project = trained.run, trained.project
    root = project.detectors_dir / DATASET
    assert not run.reused and run.dataset == DATASET and run.model == "yolov8n"
    assert run.run_dir == root / "yolov8n" and run.weights == root / "yolov8n" / "weights" / "best.pt"
    assert run.weights.is_file()
    record = json.loads((run.weights.parent / D.RUN_RECORD).read_text())
    assert record["seed"] == 7 and record["train_args"]["seed"] == 7 and record["train_args"]["deterministic"]
    assert record["n_images"] == SPLIT_SIZES and record["seconds"] > 0
    assert record["versions"]["ultralytics"] not in ("", "not installed")
    assert record["train_args"]["amp"] is False and record["train_args"]["device"] == "cpu"
    assert record["settings"] == {**dataclasses.asdict(SETTINGS), "augment": AUGMENT}  # provenance: every setting
    # ultralytics' label caches went to the mirror, not into the export
    export = project.prepared_dir / "yolo" / DATASET
    assert not list(export.rglob("*.cache"))
    assert (root / "data" / "dataset" / "labels" / "train.cache").is_file()


def test_profile_augmentation_reaches_the_trainer(trained):
    args = trained.seen["args"]
    on_disk = yaml.safe_load((trained.run.run_dir / "args.yaml").read_text())
    for key, value in AUGMENT.items():
        assert args[key] == pytest.approx(value), key
        assert on_disk[key] == pytest.approx(value), key
    assert (args["imgsz"], args["epochs"], args["batch"], args["seed"]) == (64, 1, 4, 7)
    assert args["nbs"] == 4 and on_disk["nbs"] == 4  # one optimizer step per batch, not per 64 images
    assert (args["optimizer"], args["lr0"]) == ("AdamW", pytest.approx(0.003))
    assert args["plots"] is False and args["pretrained"] is False


def test_unknown_or_reserved_augment_key_raises(trained, tmp_path):
    bad = dataclasses.replace(SETTINGS, augment={**AUGMENT, "hsv_x": 0.1})
    with pytest.raises(D.DetectorError, match=r"autolabel\.detector\.augment\.hsv_x"):
        trained.project.train(settings=bad, progress=False)
    with pytest.raises(D.DetectorError, match=r"autolabel\.detector\.augment\.epochs"):
        D.validate_augment({"epochs": 3})
    assert D.validate_augment(AUGMENT) == AUGMENT


def test_validation_runs_on_the_val_split_only(trained):
    project = trained.project
    val, train = split_images(project, "val"), split_images(project, "train")
    assert trained.seen["val_files"], "no validation ran"
    for files in trained.seen["val_files"]:
        assert {Path(f).resolve() for f in files} == val
    assert {Path(f).resolve() for f in trained.seen["train_files"]} == train
    assert not val & train


def test_training_data_yaml(trained, tmp_path):
    project = trained.project
    export_yaml = project.prepared_dir / "yolo" / f"{DATASET}.yaml"
    out = D.training_data_yaml(export_yaml, tmp_path / "data")
    meta = yaml.safe_load(out.read_text())
    for split in ("train", "val", "test"):
        assert Path(meta[split]).is_absolute()
        assert {p.resolve() for p in Path(meta[split]).glob("*.png")} == split_images(project, split)
    assert meta["names"] == NAMES and meta["nc"] == 2
    digest = meta["mskseg_export"]["digest"]
    # a moved box keeps the label file's size; the digest (and the mirror) must still change
    lab = export_yaml.parent / DATASET / "labels" / "val" / "val00.txt"
    text = lab.read_text()
    moved = text[:4] + ("9" if text[4] != "9" else "8") + text[5:]  # "0 0.4xxxxx" -> "0 0.9xxxxx"
    assert len(moved) == len(text) and moved != text
    lab.write_text(moved)
    try:
        again = yaml.safe_load(D.training_data_yaml(export_yaml, tmp_path / "data").read_text())
        assert again["mskseg_export"]["digest"] != digest
    finally:
        lab.write_text(text)

    with pytest.raises(DataError, match="nothere.yaml"):
        D.training_data_yaml(tmp_path / "nothere.yaml", tmp_path / "d2")
    empty_val = write_export(tmp_path / "root", "NoVal", {"train": 2, "val": 0, "test": 1})
    with pytest.raises(DataError, match=r"NoVal\.yaml.*val split has no images"):
        D.training_data_yaml(empty_val, tmp_path / "d3")


def test_image_caps_keep_an_even_spread_and_name_the_cap(tmp_path):
    """max_train_images and max_val_images: an even spread of each split, test never cut, the
    caps in the digest and the fingerprint, and the trainer sees only the kept images."""
    export_yaml = write_export(tmp_path / "data", "Spread", {"train": 9, "val": 5, "test": 3})
    export = D._scan_export(export_yaml)
    assert D._capped(export, 0) is export and D._capped(export, 9, 5) is export
    capped = D._capped(export, 3)
    assert [img.name for img, _ in capped.files["train"]] == ["train00.png", "train04.png", "train08.png"]
    assert capped.files["val"] == export.files["val"] and capped.files["test"] == export.files["test"]
    assert capped.digest != export.digest != D._capped(export, 4).digest
    val_capped = D._capped(export, 3, 2)
    assert [img.name for img, _ in val_capped.files["val"]] == ["val00.png", "val04.png"]
    assert val_capped.files["test"] == export.files["test"]
    assert len({export.digest, capped.digest, val_capped.digest, D._capped(export, 0, 2).digest}) == 4
    # the trainer sees only the kept images, and the caps are part of what decides the weights
    project = Project(tmp_path)
    seen: dict = {}

    def on_start(trainer) -> None:
        seen.update(train=list(trainer.train_loader.dataset.im_files), val=list(trainer.test_loader.dataset.im_files))

    run = D.train_detector("Spread", tmp_path / "data" / "prepared", project.detectors_dir,
                           dataclasses.replace(SETTINGS, max_train_images=3, max_val_images=2), seed=SEED,
                           device="cpu", progress=False, callbacks={"on_train_start": on_start})
    assert sorted(Path(f).name for f in seen["train"]) == ["train00.png", "train04.png", "train08.png"]
    assert sorted(Path(f).name for f in seen["val"]) == ["val00.png", "val04.png"]
    record = json.loads((run.weights.parent / D.RUN_RECORD).read_text())
    assert record["fingerprint_inputs"]["max_train_images"] == 3 and record["n_images"]["train"] == 3
    assert record["fingerprint_inputs"]["max_val_images"] == 2 and record["n_images"]["val"] == 2


def test_second_call_reuses_and_changed_setting_retrains(trained, monkeypatch):
    monkeypatch.chdir(trained.cwd)
    project, first = trained.project, trained.run
    mtime = first.weights.stat().st_mtime_ns
    fired: list = []
    again = project.train(progress=False, callbacks={"on_train_start": fired.append})
    assert again.reused and not fired and again.weights == first.weights
    assert first.weights.stat().st_mtime_ns == mtime and again.train_args == json.loads(json.dumps(first.train_args))
    assert again.seconds < 5

    changed = dataclasses.replace(SETTINGS, augment={**AUGMENT, "hsv_v": 0.2})
    retrained = project.train(settings=changed, progress=False, callbacks={"on_train_start": fired.append})
    assert not retrained.reused and len(fired) == 1
    assert yaml.safe_load((retrained.run_dir / "args.yaml").read_text())["hsv_v"] == pytest.approx(0.2)
    assert retrained.weights.stat().st_mtime_ns != mtime
    # the first settings now differ from the stored fingerprint: not reused either
    record = json.loads((retrained.weights.parent / D.RUN_RECORD).read_text())
    assert record["fingerprint_inputs"]["augment"]["hsv_v"] == pytest.approx(0.2)
    # only a finished training with the settings asked for counts as "the trained detector"
    where = (project.prepared_dir, project.detectors_dir)
    assert D.trained_detector(DATASET, *where, changed, seed=SEED) == retrained.weights
    with pytest.raises(DataError, match="detector_run.json: the detector was trained with other settings"):
        D.trained_detector(DATASET, *where, SETTINGS, seed=SEED)
    with pytest.raises(DataError, match="no finished detector training"):
        D.trained_detector("Other", *where, changed, seed=SEED)
    trained.run = retrained  # later tests use whatever best.pt is current


def test_build_model_offline(trained, monkeypatch):
    from ultralytics import RTDETR, YOLO
    from ultralytics.nn.tasks import DetectionModel, RTDETRDetectionModel

    monkeypatch.chdir(trained.cwd)
    rt = D.build_model("rtdetr-l")
    assert isinstance(rt, RTDETR) and isinstance(rt.model, RTDETRDetectionModel) and rt.task == "detect"
    yolo = D.build_model("yolov8n", n_classes=3)
    assert isinstance(yolo, YOLO) and isinstance(yolo.model, DetectionModel) and yolo.model.model[-1].nc == 3
    for bad in ("resnet50", "yolov8n.pt", "yolov8q"):
        with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
            D.build_model(bad)
    with pytest.raises(ValueError, match="rtdetr"):
        D.build_model("resnet50")


class FakeBoxes:
    def __init__(self, xyxy, cls, conf):
        import torch

        self.xyxy, self.cls, self.conf = torch.tensor(xyxy), torch.tensor(cls), torch.tensor(conf)


class FakeModel:
    """Stands in for ultralytics: records the call and answers known boxes per image."""

    def __init__(self):
        self.calls = []

    def predict(self, source, **kwargs):
        self.calls.append((source, kwargs))
        return [SimpleNamespace(boxes=FakeBoxes([[1.0, 2.0, 10.0, 12.0]] * (i + 1), [float(i)] * (i + 1),
                                                [0.5] * (i + 1))) for i in range(len(source))]


def test_detect_converts_batch_and_results():
    fake = FakeModel()
    det = D.UltralyticsDetector(model=fake, name="fake", image_size_px=64, conf=0.2, iou=0.6, max_det=7, device="cpu")
    images = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    out = det.detect(images)
    assert len(fake.calls) == 1  # one batched call
    batch, kwargs = fake.calls[0]
    assert len(batch) == 3 and all(b.shape == (8, 8, 3) for b in batch)
    assert all(np.array_equal(b[..., c], im) for b, im in zip(batch, images) for c in range(3))
    assert {k: kwargs[k] for k in ("imgsz", "conf", "iou", "max_det", "device")} == \
        {"imgsz": 64, "conf": 0.2, "iou": 0.6, "max_det": 7, "device": "cpu"}
    assert [len(d) for d in out] == [1, 2, 3]
    assert out[2].boxes_xyxy.dtype == np.float32 and out[2].class_ids.dtype == np.int64
    assert out[2].scores.dtype == np.float32 and out[2].label_values.tolist() == [3, 3, 3]
    assert det.detect(np.zeros((0, 8, 8), np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        det.detect(np.zeros((2, 8, 8), np.float32))


def test_load_detector_and_detect(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(trained.cwd)
    settings = trained.project.settings
    det = D.load_detector(trained.run.weights, settings, "cpu")
    assert det.name == "yolov8n" and det.device == "cpu" and det.max_det == 15
    files = sorted(split_images(trained.project, "test") | split_images(trained.project, "val"))
    images = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in files])
    out = det.detect(images)
    assert len(out) == len(images)
    for d in out:
        n = len(d)
        assert d.boxes_xyxy.shape == (n, 4) and d.class_ids.shape == (n,) and d.scores.shape == (n,)
        assert n <= 15 and np.all(d.scores >= 0.001 - 1e-6)
        assert np.all(d.boxes_xyxy >= -1e-3) and np.all(d.boxes_xyxy <= IMAGE_PX + 1e-3)
        assert np.all(d.boxes_xyxy[:, 2:] >= d.boxes_xyxy[:, :2])
        assert set(d.class_ids.tolist()) <= {0, 1} and np.array_equal(d.label_values, d.class_ids + 1)
    single = det.detect(images[1:2])[0]  # batching does not mix images
    np.testing.assert_allclose(single.boxes_xyxy, out[1].boxes_xyxy, atol=1e-2)
    np.testing.assert_array_equal(single.class_ids, out[1].class_ids)

    with pytest.raises(DataError, match="missing_best.pt: detector weights not found"):
        D.load_detector(tmp_path / "missing_best.pt", settings)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(DataError, match="corrupt.pt"):
        D.load_detector(bad, settings)


def test_evaluate_detector(trained, monkeypatch):
    monkeypatch.chdir(trained.cwd)
    project = trained.project
    df = project.evaluate(trained.run.weights)
    assert df["class_name"].tolist() == ["bright", "grey", "all"]
    labels = (project.prepared_dir / "yolo" / DATASET / "labels" / "test").glob("*.txt")
    classes = [int(line.split()[0]) for p in labels for line in p.read_text().splitlines() if line.strip()]
    per = df.set_index("class_name")
    assert per.loc["bright", "n_instances"] == classes.count(0) == 2
    assert per.loc["grey", "n_instances"] == classes.count(1) == 1
    assert per.loc["all", "n_instances"] == 3 and per.loc["all", "n_images"] == SPLIT_SIZES["test"]
    assert per.loc["bright", "n_images"] == 2 and per.loc["grey", "n_images"] == 1
    metrics = df[["precision", "recall", "mAP50", "mAP50_95"]].to_numpy()
    assert np.isfinite(metrics).all() and ((metrics >= 0) & (metrics <= 1)).all()
    assert (df["mAP50_95"] <= df["mAP50"] + 1e-9).all()
    assert (trained.run.run_dir / "eval_test").is_dir()

    write_export(project.prepared_dir.parent, "NoTest", {"train": 2, "val": 1, "test": 0})
    with pytest.raises(DataError, match="test split has no images"):
        project.evaluate(trained.run.weights, "NoTest")
    with pytest.raises(ValueError, match="split must be one of"):
        project.evaluate(trained.run.weights, split="holdout")


def test_nothing_written_outside(trained):
    """Runs last in this file: the working directory stayed empty, home got no Ultralytics folder."""
    assert list(trained.cwd.iterdir()) == []
    if not trained.home_before:
        assert not home_ultralytics().exists()
    stray = [p.name for p in Path.cwd().glob("*.pt")] + [p for p in ("runs/detect", "yolov8n.pt") if Path(p).exists()]
    assert not stray
