"""Dataset cards: the shipped ones are the study's datasets, a site's own card is checked line by
line, and a dataset the study never had goes from raw files through every stage."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from mskseg_lib import cli
from mskseg_lib.biomarkers.cohort_truth import measure_for_truth
from mskseg_lib.config import load_profile as load_profile_only
from mskseg_lib.data.cards import CardError, parse_cards, read_card_file
from mskseg_lib.data.catalog import (
    CARDS_ENV,
    DATASETS,
    REAL_SPINE,
    get_dataset,
    known_datasets,
    register_cards,
    registered_cards,
)
from mskseg_lib.data.prepare import PrepareSettings
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile import load_profile
from mskseg_lib.from_profile.checks import profile_problems

ROOT = Path(__file__).resolve().parents[1]
SITE = "SiteLumbar_3D_WaterFat_Research_Anatomical_3"


def _card(**changes) -> dict:
    card = {"name": "SiteKnee_3D_PDFS_Clinical_Anatomical_4", "anatomy": "knee", "plane": "sagittal",
            "acquisition": "3D", "sequence": "PDFS", "protocol_type": "Clinical", "task": "Anatomical",
            "labels": [{"value": 1, "name": "femur", "tissue": "bone"},
                       {"value": 2, "name": "femoral_cartilage", "tissue": "cartilage"},
                       {"value": 3, "name": "patellar_tendon", "tissue": "tendon"}],
            "tissue_classes": ["tendon"]}
    card.update(changes)
    return card


def _write_cards(path: Path, cards: list[dict], **top) -> Path:
    path.write_text(yaml.safe_dump({**top, "datasets": cards}, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- the shipped cards
def test_shipped_cards_are_the_studys_twelve_datasets_with_their_labels():
    """Known answers from the study: twelve datasets, the thigh's nine labels in four tissue
    classes, the DESS menisci prompted per instance, the axial T2 disc height through slices."""
    assert len(DATASETS) == 12
    assert sum(1 for s in DATASETS.values() if s.anatomy == "knee") == 5
    thigh = get_dataset("Thigh_2D_T1ax_Clinical_Anatomical_50")
    assert len(thigh.labels) == 9 and {lab.tissue_class for lab in thigh.labels} == {"fat", "muscle", "bone", "nerve"}
    dess = get_dataset("Knee_3D_DESS_Research_Anatomical_86")
    assert [lab.name for lab in dess.labels if lab.multi_instance] == ["lateral_meniscus", "medial_meniscus"]
    assert get_dataset("Spine_2D_T2ax_Clinical_Anatomical_38").disc_height_through_slices
    assert all(s.synthetic for s in DATASETS.values()) and not REAL_SPINE.synthetic
    assert REAL_SPINE.slice_axis_canonical == 2 and str(REAL_SPINE.source).endswith("cards/real_spine.yaml")


def test_study_card_biomarkers_group_labels_as_the_cohort_truth_does():
    """MAPSS: thickness per femoral/tibial compartment pair, T2 per compartment; the sagittal spine:
    one disc height per level; a dropped label leaves its structures out."""
    mapss = get_dataset("Knee_2D_MAPSS-echo1_Research_Compositional_22")
    groups = mapss.biomarker_structures()
    assert groups["thickness_mm"] == {"femoral": (1, 2), "tibial": (3, 4)}
    assert groups["t2_ms"] == {"fc_lat": (1,), "fc_med": (2,), "tc_lat": (3,), "tc_med": (4,)}
    assert groups["disc_height_mm"] == {} and len(groups["volume_cm3"]) == 6
    sag = get_dataset("Spine_2D_T1sag_Clinical_Anatomical_23").biomarker_structures()
    assert sag["disc_height_mm"] == {"L1_L2": (6,), "L2_L3": (7,), "L3_L4": (8,), "L4_L5": (9,), "L5_S1": (10,)}
    without = mapss.biomarker_structures({n: v for n, v in mapss.label_values().items() if n != "medial_femoral_cartilage"})
    assert without["thickness_mm"]["femoral"] == (1,) and "fc_med" not in without["t2_ms"]


def test_oai_zib_example_card_is_known_but_not_a_study_dataset():
    oai = get_dataset("OAIZIB_3D_DESS_Research_Anatomical_507")
    assert [(lab.value, lab.name) for lab in oai.labels] == [(1, "femur"), (2, "femoral_cartilage"), (3, "tibia"),
                                                              (4, "tibial_cartilage")]
    assert oai.name not in DATASETS and not oai.synthetic
    assert oai.biomarker_structures()["thickness_mm"] == {"femoral": (2,), "tibial": (4,)}


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("change, expected", [
    ({"labels": [{"value": 1, "name": "a", "tissue": "bone"}, {"value": 1, "name": "b", "tissue": "bone"}]},
     "labels[1].value: duplicate label value 1 (also "),
    ({"labels": [{"value": 0, "name": "a", "tissue": "bone"}]}, "labels[0].value: label 0 is the background"),
    ({"plane": "oblique"}, ".plane: unknown plane 'oblique' (known: sagittal, coronal, axial)"),
    ({"labels": [{"value": 1, "name": "a", "tissue": "ligament"}]}, "labels[0].tissue: undeclared tissue class 'ligament'"),
    ({"biomarkers": {"thickness_mm": ["menisci"]}}, "biomarkers.thickness_mm.menisci: unknown label(s) 'menisci'"),
    ({"biomarkers": {"bone_density": ["femur"]}}, "biomarkers: unknown biomarker 'bone_density'"),
    ({"prepare": {"min_component_pixels": 5}}, "prepare: unknown key 'min_component_pixels'"),
    ({"slice_axis": 3}, ".slice_axis: 0, 1 or 2"),
    ({"acquisition": "4D"}, ".acquisition: '4D' is not one of 2D, 3D"),
])
def test_a_bad_card_is_one_line_naming_the_file_and_key(tmp_path, change, expected):
    path = _write_cards(tmp_path / "cards.yaml", [_card(), _card(name="Second_3D_X_Clinical_Anatomical_1", **change)])
    with pytest.raises(CardError) as err:
        read_card_file(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: datasets[1] (Second_3D_X_Clinical_Anatomical_1)") and expected in lines[0]


def test_every_problem_of_a_file_is_reported_and_missing_keys_are_named(tmp_path):
    bad = {k: v for k, v in _card().items() if k not in ("plane", "labels")}
    path = _write_cards(tmp_path / "cards.yaml", [bad, _card(), _card()])
    with pytest.raises(CardError) as err:
        read_card_file(path)
    assert str(err.value).splitlines() == [
        f"{path}: datasets[0] (SiteKnee_3D_PDFS_Clinical_Anatomical_4): missing key 'plane'",
        f"{path}: datasets[0] (SiteKnee_3D_PDFS_Clinical_Anatomical_4): missing key 'labels'",
        f"{path}: datasets[2] (SiteKnee_3D_PDFS_Clinical_Anatomical_4).name: duplicate dataset name (also datasets[1])",
    ]
    (tmp_path / "broken.yaml").write_text("datasets:\n  - name: [unclosed\n")
    with pytest.raises(CardError, match=r"broken.yaml: not valid YAML \(line \d+\)"):
        read_card_file(tmp_path / "broken.yaml")


def test_tissue_classes_extend_beyond_the_studys_five_per_file_or_per_card(tmp_path):
    per_card = parse_cards([_card()], "x.yaml")[0]
    assert per_card.labels[2].tissue_class == "tendon" and "tendon" in per_card.tissue_classes
    card = _card(labels=[{"value": 7, "name": "lesion", "tissue": "lesion"}])
    card.pop("tissue_classes")
    with pytest.raises(CardError, match="undeclared tissue class 'lesion'"):
        parse_cards([card], "x.yaml")
    assert parse_cards({"tissue_classes": ["lesion"], "datasets": [card]}, "x.yaml")[0].labels[0].value == 7


# ----------------------------------------------------------------------------- registry and profile
def test_registered_cards_are_known_here_and_in_child_processes():
    """Also a class the card's file declares (file-level tissue_classes) reaches the child."""
    card = _card()
    card.pop("tissue_classes")
    spec = parse_cards({"tissue_classes": ["tendon"], "datasets": [card]}, "site.yaml")[0]
    with pytest.raises(KeyError):
        get_dataset(spec.name)
    register_cards([spec])
    assert get_dataset(spec.name) is spec and spec in known_datasets()
    code = ("from mskseg_lib.data.catalog import get_dataset; s = get_dataset('SiteKnee_3D_PDFS_Clinical_Anatomical_4'); "
            "print(s.labels[2].tissue_class, s.source)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    assert out.stdout.split() == ["tendon", "site.yaml"]
    assert json.loads(os.environ[CARDS_ENV])[0]["card"]["name"] == spec.name


def test_a_card_may_not_take_a_shipped_name_or_differ_from_an_earlier_one():
    with pytest.raises(CardError, match="is already a shipped card"):
        register_cards(parse_cards([_card(name="Knee_3D_DESS_Research_Anatomical_86")], "mine.yaml"))
    register_cards(parse_cards([_card()], "a.yaml"))
    register_cards(parse_cards([_card()], "a.yaml"))  # the same card again: fine
    with pytest.raises(CardError, match="also declared, differently, in a.yaml"):
        register_cards(parse_cards([_card(plane="axial")], "b.yaml"))


def _profile(tmp_path: Path, **sections) -> Path:
    cfg = copy.deepcopy(load_profile_only("fixture"))
    cfg["paths"] = {k: str(tmp_path / k) for k in cfg["paths"]}
    cfg.update(sections)
    path = tmp_path / "site_profile.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_profile_declares_cards_in_a_file_or_inline_and_load_registers_them(tmp_path, capsys):
    card_file = _write_cards(tmp_path / "site_cards.yaml", [_card()])
    inline = _card(name="SiteHip_3D_CUBE_Research_Anatomical_2", anatomy="hip", plane="coronal",
                   labels=[{"value": 4, "name": "acetabular_labrum", "tissue": "cartilage"}])
    inline.pop("tissue_classes")
    path = _profile(tmp_path, datasets=[str(card_file), inline])
    cfg = load_profile(path)
    assert {s.name for s in registered_cards()} == {"SiteKnee_3D_PDFS_Clinical_Anatomical_4",
                                                     "SiteHip_3D_CUBE_Research_Anatomical_2"}
    assert get_dataset("SiteHip_3D_CUBE_Research_Anatomical_2").source == "profile fixture: datasets[1]"
    assert profile_problems(cfg) == []
    assert cli.main(["datasets", "--profile", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SiteKnee_3D_PDFS_Clinical_Anatomical_4" in out and "bone, cartilage, tendon" in out


def test_validate_profile_names_card_problems_and_synthetic_only_cohort(tmp_path, capsys):
    card_file = _write_cards(tmp_path / "site_cards.yaml", [_card(plane="oblique")])
    path = _profile(tmp_path, datasets=[str(card_file), "absent_cards.yaml"])
    assert cli.main(["validate-profile", str(path)]) == 2
    err = capsys.readouterr()
    text = err.out + err.err
    assert f"{card_file}: datasets[0] (SiteKnee_3D_PDFS_Clinical_Anatomical_4).plane: unknown plane 'oblique'" in text
    assert "datasets[1]: " in text and "absent_cards.yaml: no such dataset card file" in text
    cfg = load_profile_only(_profile(tmp_path, datasets=[_card()]))
    cfg["cohort"]["datasets"] = ["SiteKnee_3D_PDFS_Clinical_Anatomical_4"]
    cfg["autolabel"]["datasets"] = ["SiteKnee_3D_PDFS_Clinical_Anatomical_4"]
    problems = profile_problems(cfg)
    assert any(p.startswith("cohort.datasets: the synthetic cohort draws only the study's datasets") for p in problems)
    assert any(p.startswith("autolabel.postprocess") and "no kernel for tissue class 'tendon'" in p for p in problems)


def test_card_prepare_overrides_apply_and_the_profiles_per_dataset_wins():
    register_cards(parse_cards([_card(prepare={"min_component_px": 7, "clip_percentiles": [0.5, 99.5]})], "c.yaml"))
    name = "SiteKnee_3D_PDFS_Clinical_Anatomical_4"
    settings = PrepareSettings(min_component_px=100)
    assert settings.for_dataset(name)["min_component_px"] == 7
    assert settings.clip_percentiles_for(name) == (0.5, 99.5)
    assert PrepareSettings(per_dataset={name: {"min_component_px": 3}}).for_dataset(name)["min_component_px"] == 3
    assert settings.for_dataset("Knee_3D_DESS_Research_Anatomical_86")["min_component_px"] == 100


def test_card_biomarkers_measure_an_analytic_slab_and_its_volume():
    """A card that declares thickness for its own label: a 4-voxel slab at 0.5 mm pixels is 2.0 mm
    thick, and its volume is the voxel count x voxel volume."""
    card = _card(labels=[{"value": 5, "name": "plate", "tissue": "cartilage"},
                         {"value": 6, "name": "block", "tissue": "bone"}],
                 biomarkers={"thickness_mm": ["plate"]})
    spec = parse_cards([card], "c.yaml")[0]
    vol = np.zeros((40, 40, 6), np.int16)
    vol[10:14, 5:35, 1:5] = 5
    vol[20:30, 10:20, 1:5] = 6
    table = measure_for_truth(vol, (0.5, 0.5, 2.0), spec.biomarker_structures(), slice_axis=2)
    t = table.set_index(["biomarker", "structure"])["measured"]
    assert t[("thickness_mm", "plate")] == pytest.approx(2.0, abs=0.25)
    assert t[("volume_cm3", "block")] == pytest.approx(10 * 10 * 4 * 0.5 * 0.5 * 2.0 / 1000)
    assert ("disc_height_mm", "block") not in t.index and not any(t.index.get_level_values(0) == "t2_ms")


# ----------------------------------------------------------------------------- a site dataset end to end
def _phantom(i: int) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A stand-in for a real volume where the real spine is absent: five bright blocks in a
    column (values 1-5 like L1-L5) on a noisy darker background, 1 mm voxels, sagittal slices
    along the last axis."""
    rng = np.random.default_rng(i)
    labels = np.zeros((160, 160, 24), np.int16)
    for level in range(5):
        top = 12 + level * 28
        labels[top:top + 20, 50 + 2 * i:100 + 2 * i, 4:20] = level + 1
    image = np.where(labels > 0, 180.0, 60.0) + rng.normal(0, 8, labels.shape)
    return nib.Nifti1Image(image.astype(np.float32), np.eye(4)), labels


def _site_dataset(real_spine: Path | None, folder: Path, n_subjects: int = 3) -> tuple[Path, Path, dict]:
    """Real lumbar volumes (or phantoms) relabelled the way a site might: upper (L1-L2) and
    lower (L3-L5) vertebral bodies as values 10 and 20, a tissue class the study does not have,
    both labels several pieces per slice. Returns the card file, the manifest and the true voxel
    counts."""
    folder.mkdir(parents=True)
    rows, counts = [], {}
    for i in range(1, n_subjects + 1):
        if real_spine is None:
            image, labels = _phantom(i)
        else:
            image = nib.load(real_spine / f"vb3_{i:02d}_image.nii.gz")
            labels = np.asarray(nib.load(real_spine / f"vb3_{i:02d}_labels.nii.gz").dataobj)
        site = np.where(np.isin(labels, (1, 2)), 10, np.where(np.isin(labels, (3, 4, 5)), 20, 0)).astype(np.int16)
        nib.save(image, folder / f"case{i}_t2.nii.gz")
        nib.save(nib.Nifti1Image(site, image.affine), folder / f"case{i}_seg.nii.gz")
        counts[f"NA{i}"] = {"upper_lumbar_bodies": int((site == 10).sum()), "lower_lumbar_bodies": int((site == 20).sum())}
        rows.append(f"{SITE},NA{i},nifti,case{i}_t2.nii.gz,nifti,case{i}_seg.nii.gz")
    manifest = folder / "manifest.csv"
    manifest.write_text("dataset,subject_id,image_format,image_path,mask_format,mask_path\n" + "\n".join(rows) + "\n")
    card = {"name": SITE, "anatomy": "spine", "plane": "sagittal", "acquisition": "3D", "sequence": "WaterFat",
            "protocol_type": "Research", "task": "Anatomical", "slice_axis": 2,
            "labels": [{"value": 10, "name": "upper_lumbar_bodies", "tissue": "vertebra", "multi_instance": True},
                       {"value": 20, "name": "lower_lumbar_bodies", "tissue": "vertebra", "multi_instance": True}],
            "prepare": {"min_component_px": 0, "min_component_voxels": 0}}
    cards = _write_cards(folder / "cards.yaml", [card], tissue_classes=["vertebra"])
    return cards, manifest, counts


@pytest.mark.real_data
@pytest.mark.slow
def test_a_dataset_the_study_never_had_goes_from_raw_files_to_zero_shot_dice_and_biomarkers(tmp_path, real_spine):
    """No code change, only a card and a manifest: prepare, a zero-shot run with the real
    LiteMedSAM (ground-truth boxes, three slices per subject spread from edge to edge, no small
    pieces removed: mean slice Dice >= 0.6, measured 0.69; a wrong label mapping gives about 0),
    the volume biomarker equal to the voxel count (1 mm voxels), the tables listing the dataset by
    its anatomy, and a finetuning grid that trains on it."""
    _site_end_to_end(tmp_path, real_spine, min_dice=0.6)


@pytest.mark.slow
def test_a_site_dataset_end_to_end_on_phantoms_where_no_real_data_is(tmp_path):
    """The same path on phantom volumes (CI has no real spine): bright blocks on a noisy
    background, so the real LiteMedSAM's slice Dice is high (measured 0.993)."""
    _site_end_to_end(tmp_path, None, min_dice=0.8)


def _site_end_to_end(tmp_path: Path, real_spine: Path | None, min_dice: float) -> None:
    from mskseg_lib.biomarkers.study import measure_subject
    from mskseg_lib.data.tables import load_tables
    from mskseg_lib.evaluation import aggregate
    from mskseg_lib.evaluation.zero_shot import run_zero_shot
    from mskseg_lib.from_profile import finetune as fp_ft
    from mskseg_lib.from_profile.zero_shot import zero_shot_inputs

    cards, manifest, counts = _site_dataset(real_spine, tmp_path / "site")
    cohort = {**load_profile_only("fixture")["cohort"], "enabled": False}
    experiments = [{"group": "size", "train_on": [SITE], "train_subjects": ["all"]}]
    path = _profile(tmp_path, datasets=[str(cards)], sources=[{"type": "manifest", "path": str(manifest)}],
                    cohort=cohort)
    cfg = load_profile(path)
    cfg["prepare"]["split_fractions"] = [0.34, 0.33, 0.33]
    cfg["finetune"]["experiments"] = experiments
    cfg["zero_shot"].update(models=["lite_medsam"], datasets=[SITE], split="all", max_subjects_per_dataset=0,
                            max_slices_per_subject=3, conditions=[{"name": "gt_box", "shift_grid_px": 0}])
    assert profile_problems(cfg) == []

    prepared = fp_data.prepare(cfg, progress=False)
    subjects, slices = load_tables(fp_data.prepared_dir(cfg))
    assert sorted(subjects["subject_id"]) == ["NA1", "NA2", "NA3"] and set(subjects["dataset"]) == {SITE}
    assert subjects["anatomy"].eq("spine").all() and prepared is not None
    record = json.loads((Path(subjects["mask_nifti"].iloc[0]).parent / "record.json").read_text())
    assert record["settings"]["min_component_px"] == 0  # the card's prepare: override

    run = run_zero_shot(**zero_shot_inputs(cfg), progress=False)
    res = run.slices
    assert set(res["label_name"]) == {"upper_lumbar_bodies", "lower_lumbar_bodies"}
    assert set(res["tissue_class"]) == {"vertebra"}
    slice_dice = res.groupby(["subject_id", "slice_index"])["dice"].mean()
    print(f"mean slice Dice {slice_dice.mean():.3f}")
    assert len(slice_dice) == 9 and slice_dice.mean() >= min_dice, slice_dice.describe()
    dataset_dice = aggregate.dataset_mean_tissue(res, ["dataset", "model_key"])
    assert dataset_dice["dataset"].tolist() == [SITE] and dataset_dice["n_tissues"].tolist() == [1]

    long = pd.concat([measure_subject(row) for row in subjects.to_dict("records")])
    volume = long[long["biomarker"] == "volume_cm3"].set_index(["subject_id", "structure"])["value"]
    for subject_id, per_label in counts.items():
        for name, voxels in per_label.items():
            assert volume[(subject_id, name)] == pytest.approx(voxels / 1000.0), (subject_id, name)

    grid = fp_ft.grid_experiments(cfg, prepared=sorted(set(subjects["dataset"])))
    assert [(e.train_datasets, e.eval_datasets) for e in grid] == [((SITE,), (SITE,))]


@pytest.mark.slow
def test_the_readmes_three_commands_take_a_site_from_raw_files_to_a_zero_shot_table(tmp_path, capsys):
    """README "Your site's data": validate-profile, prepare, zero-shot on a profile that names a
    card file and a manifest (phantom volumes), and the printed table is the dataset Dice of the
    site dataset (its one tissue class, high on bright blocks)."""
    cards, manifest, _ = _site_dataset(None, tmp_path / "site", n_subjects=2)
    base = load_profile_only("fixture")
    zero_shot = {**base["zero_shot"], "models": ["lite_medsam"], "datasets": [SITE], "split": "all",
                 "max_subjects_per_dataset": 0, "max_slices_per_subject": 2,
                 "conditions": [{"name": "gt_box", "shift_grid_px": 0}]}
    path = _profile(tmp_path, datasets=[str(cards)], sources=[{"type": "manifest", "path": str(manifest)}],
                    cohort={**base["cohort"], "enabled": False}, zero_shot=zero_shot,
                    finetune={**base["finetune"], "experiments": [{"group": "size", "train_on": [SITE]}]},
                    mixed_effects={**base["mixed_effects"], "physics": {**base["mixed_effects"]["physics"],
                                                                        "enabled": False}},
                    biomarkers={**base["biomarkers"], "datasets": [SITE]},
                    autolabel={**base["autolabel"], "datasets": [SITE],
                               "postprocess": {**base["autolabel"]["postprocess"],
                                               "kernel_px": {**base["autolabel"]["postprocess"]["kernel_px"],
                                                             "vertebra": 5}}},
                    video3d={**base["video3d"], "datasets": [SITE]})
    assert cli.main(["validate-profile", str(path)]) == 0
    assert "ok: " in capsys.readouterr().out
    assert cli.main(["prepare", "--profile", str(path)]) == 0
    assert cli.main(["zero-shot", "--profile", str(path)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("dataset Dice"):].splitlines()
    row = next(line for line in table if line.startswith(SITE))
    assert "lite_medsam" in row and "gt_box" in row and float(row.split()[3]) > 0.8
    saved = pd.read_csv(tmp_path / "runs_dir" / "zero_shot" / "baseline" / "dataset_dice.csv")
    assert saved["dataset"].tolist() == [SITE] and saved["n_tissues"].tolist() == [1]
