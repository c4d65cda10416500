"""The study's twelve MSK MRI dataset families: names, anatomy, plane, labels and protocols.

Dataset names are the study's (the trailing number is the study's subject count, kept so that
regenerated tables line up with the published ones). Each label carries a tissue class, used
for tissue-level results. ``Protocol`` holds the nominal acquisition of a dataset; clinical
datasets vary around it per subject (several vendors, field strengths and timings), research
datasets are acquired with one fixed protocol, as in the study.

``geometry`` names the anatomy model in :mod:`mskseg_lib.data.anatomy`; ``raw_format`` and
``mask_layout`` say how the synthetic cohort exports the raw data, so every raw form that real
studies arrive in (DICOM, NIfTI, NPZ, HDF5, MATLAB) is exercised by the ingest code.

Naming and order of datasets, shared by every table and figure: ``anatomy_of`` (a dataset's
anatomy, also for names the catalog does not know), ``dataset_order`` / ``datasets_in_order``
(anatomy groups in ``ANATOMY_ORDER``, then first appearance) and ``short_dataset_name`` (axis
labels).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import pandas as pd

from mskseg_lib.errors import UserError

TISSUE_CLASSES = ("cartilage", "bone", "muscle", "nerve", "fat")
ANATOMY_ORDER: tuple[str, ...] = ("knee", "hip", "spine", "thigh", "shoulder")  # figures and tables group by it
PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # slice axis in canonical RAS arrays


@dataclass(frozen=True)
class Label:
    value: int
    name: str
    tissue_class: str
    # several separate pieces on one slice by anatomy (paired muscles, meniscal horns): prompted
    # with one box per connected instance rather than one box around all of them
    multi_instance: bool = False


@dataclass(frozen=True)
class Protocol:
    """Nominal acquisition. ``matrix`` is (rows, cols) in-plane; ``fov_mm`` (in-plane, through)."""

    sequence: str  # "FSE" spin echo, "GRE" spoiled gradient echo (signal model)
    field_strength_t: float
    te_ms: float
    tr_ms: float
    flip_angle_deg: float
    matrix: tuple[int, int]
    n_slices: int
    fov_mm: tuple[float, float]
    vendor: str
    clinical_variation: bool = False  # per-subject vendor/field/timing variation
    undersampling: int = 1  # Cartesian k-space acceleration (zero-filled recon)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    anatomy: str  # knee, hip, spine, thigh, shoulder
    plane: str  # sagittal, coronal, axial
    acquisition: str  # "2D" or "3D"
    sequence_name: str  # DESS, CUBE, MAPSS, T1, T2 (as in the dataset name)
    protocol_type: str  # Clinical or Research
    task: str  # Anatomical or Compositional
    labels: tuple[Label, ...]
    protocol: Protocol
    geometry: str
    raw_format: str  # dicom, nifti, npz, hdf5, mat
    mask_layout: str  # "multiclass" or "per_label"
    maps: tuple[str, ...] = ()  # quantitative maps exported with the images (ms)
    slice_axis: Optional[int] = None  # override PLANE_AXIS (for headers without orientation)
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def slice_axis_canonical(self) -> int:
        return PLANE_AXIS[self.plane] if self.slice_axis is None else self.slice_axis

    def label_values(self) -> dict[str, int]:
        return {lab.name: lab.value for lab in self.labels}

    def label_names(self) -> dict[int, str]:
        return {lab.value: lab.name for lab in self.labels}


def _labels(*items: tuple) -> tuple[Label, ...]:
    """Labels numbered from 1: (name, tissue) or (name, tissue, multi_instance)."""
    return tuple(Label(i + 1, *item) for i, item in enumerate(items))


KNEE_CUBE_LABELS = _labels(
    ("femur", "bone"), ("femoral_cartilage", "cartilage"), ("tibia", "bone"),
    ("tibial_cartilage", "cartilage"), ("patella", "bone"), ("patellar_cartilage", "cartilage"),
)
KNEE_DESS_LABELS = _labels(
    ("femoral_cartilage", "cartilage"), ("lateral_tibial_cartilage", "cartilage"),
    ("medial_tibial_cartilage", "cartilage"), ("patellar_cartilage", "cartilage"),
    ("lateral_meniscus", "cartilage", True), ("medial_meniscus", "cartilage", True),
)
KNEE_MAPSS_LABELS = _labels(
    ("lateral_femoral_cartilage", "cartilage"), ("medial_femoral_cartilage", "cartilage"),
    ("lateral_tibial_cartilage", "cartilage"), ("medial_tibial_cartilage", "cartilage"),
    ("lateral_meniscus", "cartilage", True), ("medial_meniscus", "cartilage", True),
)
SPINE_LEVELS = ("L1", "L2", "L3", "L4", "L5")
SPINE_DISCS = ("L1_L2", "L2_L3", "L3_L4", "L4_L5", "L5_S1")
SPINE_SAG_LABELS = _labels(
    *[(f"vertebral_body_{lv}", "bone") for lv in SPINE_LEVELS],
    *[(f"disc_{d}", "cartilage") for d in SPINE_DISCS],
)
SPINE_T1AX_LABELS = _labels(  # left and right muscles share a label
    ("erector_spinae", "muscle", True), ("multifidus", "muscle", True), ("psoas", "muscle", True),
    ("quadratus_lumborum", "muscle", True),
)
SPINE_T2AX_LABELS = _labels(("disc", "cartilage"), ("vertebra", "bone"), ("nerve", "nerve", True))
THIGH_LABELS = _labels(
    ("subcutaneous_fat", "fat"), ("extensors", "muscle"), ("hamstrings", "muscle"),
    ("femoral_cortex", "bone"), ("femoral_bone_marrow", "bone"), ("adductors", "muscle"),
    ("sartorius", "muscle"), ("gracilis", "muscle"), ("nerve_bundle", "nerve"),
)

_KNEE_CUBE_PROTOCOL = Protocol("FSE", 3.0, 25.0, 1500.0, 90.0, (384, 384), 160, (160.0, 120.0), "GE")

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "Hip_3D_CUBE_Research_Anatomical_42", "hip", "coronal", "3D", "CUBE", "Research",
            "Anatomical", _labels(("proximal_femur", "bone")),
            Protocol("FSE", 3.0, 30.0, 1400.0, 90.0, (320, 320), 120, (200.0, 120.0), "GE"),
            geometry="hip", raw_format="dicom", mask_layout="per_label",
        ),
        DatasetSpec(
            "Thigh_2D_T1ax_Clinical_Anatomical_50", "thigh", "axial", "2D", "T1", "Clinical",
            "Anatomical", THIGH_LABELS,
            Protocol("FSE", 1.5, 12.0, 600.0, 90.0, (256, 256), 24, (220.0, 120.0), "Siemens",
                     clinical_variation=True),
            geometry="thigh", raw_format="dicom", mask_layout="multiclass",
        ),
        DatasetSpec(
            "Shoulder_3D_CUBE_Research_Anatomical_28", "shoulder", "axial", "3D", "CUBE",
            "Research", "Anatomical", _labels(("scapula", "bone", True)),
            Protocol("FSE", 3.0, 28.0, 1300.0, 90.0, (320, 320), 100, (180.0, 100.0), "GE"),
            geometry="shoulder", raw_format="nifti", mask_layout="per_label",
        ),
        DatasetSpec(
            "Spine_2D_T1ax_Clinical_Anatomical_59", "spine", "axial", "2D", "T1", "Clinical",
            "Anatomical", SPINE_T1AX_LABELS,
            Protocol("FSE", 1.5, 10.0, 550.0, 90.0, (320, 320), 20, (240.0, 100.0), "Philips",
                     clinical_variation=True),
            geometry="spine_axial_muscle", raw_format="npz", mask_layout="multiclass",
        ),
        DatasetSpec(
            "Spine_2D_T2ax_Clinical_Anatomical_38", "spine", "axial", "2D", "T2", "Clinical",
            "Anatomical", SPINE_T2AX_LABELS,
            Protocol("FSE", 1.5, 100.0, 3500.0, 90.0, (256, 256), 20, (180.0, 80.0), "Siemens",
                     clinical_variation=True),
            geometry="spine_axial_disc", raw_format="dicom", mask_layout="multiclass",
        ),
        DatasetSpec(
            "Spine_2D_T1sag_Clinical_Anatomical_23", "spine", "sagittal", "2D", "T1", "Clinical",
            "Anatomical", SPINE_SAG_LABELS,
            Protocol("FSE", 3.0, 10.0, 600.0, 90.0, (384, 384), 16, (280.0, 64.0), "GE",
                     clinical_variation=True),
            geometry="spine_sagittal", raw_format="dicom", mask_layout="per_label",
        ),
        DatasetSpec(
            "Spine_2D_T1sag_Clinical_Anatomical_111", "spine", "sagittal", "2D", "T1", "Clinical",
            "Anatomical", SPINE_SAG_LABELS,
            Protocol("FSE", 1.5, 12.0, 500.0, 90.0, (320, 320), 15, (300.0, 60.0), "Siemens",
                     clinical_variation=True),
            geometry="spine_sagittal", raw_format="npz", mask_layout="per_label",
        ),
        DatasetSpec(
            "Knee_2D_MAPSS-echo1_Research_Compositional_22", "knee", "sagittal", "2D", "MAPSS",
            "Research", "Compositional", KNEE_MAPSS_LABELS,
            Protocol("GRE", 3.0, 3.0, 9.0, 10.0, (256, 256), 28, (140.0, 110.0), "GE"),
            geometry="knee", raw_format="mat", mask_layout="multiclass",
            maps=("t1rho_ms", "t2_ms"),
        ),
        DatasetSpec(
            "Knee_2D_MAPSS-echo1_Research_Compositional_39", "knee", "sagittal", "2D", "MAPSS",
            "Research", "Compositional", KNEE_MAPSS_LABELS,
            Protocol("GRE", 3.0, 4.0, 9.5, 10.0, (256, 256), 24, (150.0, 110.0), "Siemens"),
            geometry="knee", raw_format="mat", mask_layout="per_label",
            maps=("t1rho_ms", "t2_ms"),
        ),
        DatasetSpec(
            "Knee_3D_DESS_Research_Anatomical_86", "knee", "sagittal", "3D", "DESS", "Research",
            "Anatomical", KNEE_DESS_LABELS,
            Protocol("GRE", 3.0, 5.0, 16.0, 25.0, (384, 384), 160, (140.0, 110.0), "Siemens"),
            geometry="knee", raw_format="hdf5", mask_layout="per_label",
        ),
        DatasetSpec(
            "Knee_3D_CUBE_Research_Anatomical_300", "knee", "sagittal", "3D", "CUBE", "Research",
            "Anatomical", KNEE_CUBE_LABELS, _KNEE_CUBE_PROTOCOL,
            geometry="knee", raw_format="nifti", mask_layout="multiclass",
        ),
        DatasetSpec(
            "Knee_3D_CUBE_Undersampled_Research_Anatomical_50", "knee", "sagittal", "3D", "CUBE",
            "Research", "Anatomical", KNEE_CUBE_LABELS,
            Protocol("FSE", 3.0, 25.0, 1500.0, 90.0, (384, 384), 160, (160.0, 120.0), "GE",
                     undersampling=8),
            geometry="knee", raw_format="nifti", mask_layout="per_label",
        ),
    ]
}

# The real lumbar fixture (MyoSegmenTUM spine, Burian et al. 2019): identity affine, 1 mm,
# sagittal plane on the last array axis (its README), so the slice axis is given explicitly.
REAL_SPINE = DatasetSpec(
    "RealSpine_MyoSegmenTUM_VB_8", "spine", "sagittal", "3D", "CSE-water-fat", "Research",
    "Anatomical", _labels(*[(f"vertebral_body_{lv}", "bone") for lv in SPINE_LEVELS]),
    Protocol("GRE", 3.0, float("nan"), float("nan"), float("nan"), (224, 224), 77,
             (224.0, 77.0), "Philips"),
    geometry="real", raw_format="nifti", mask_layout="multiclass", slice_axis=2,
)


class UnknownDatasetError(UserError, KeyError):
    """A dataset name the catalog does not know (a ``KeyError`` that reads as one plain line)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown dataset"


def get_dataset(name: str) -> DatasetSpec:
    """Spec of a dataset by name, with a clear error listing the known names."""
    if name == REAL_SPINE.name:
        return REAL_SPINE
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join([*DATASETS, REAL_SPINE.name])
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {known} "
                                  "(`mskseg datasets` lists them with their labels)") from None


def datasets_table(specs: Sequence[DatasetSpec] | None = None) -> pd.DataFrame:
    """One row per dataset: what ``mskseg datasets`` prints.

    Parameters
    ----------
    specs : sequence of DatasetSpec, optional
        Default: the study's datasets, then the real spine fixture.

    Returns
    -------
    DataFrame
        Columns ``dataset, anatomy, plane, acquisition, sequence, protocol_type, task, n_labels,
        tissue_classes`` (comma-separated, in label order) and ``labels``
        (``"1 femur; 2 tibia; ..."``).
    """
    specs = [*DATASETS.values(), REAL_SPINE] if specs is None else list(specs)
    rows = []
    for s in specs:
        tissues = list(dict.fromkeys(lab.tissue_class for lab in s.labels))
        rows.append({"dataset": s.name, "anatomy": s.anatomy, "plane": s.plane, "acquisition": s.acquisition,
                     "sequence": s.sequence_name, "protocol_type": s.protocol_type, "task": s.task,
                     "n_labels": len(s.labels), "tissue_classes": ", ".join(tissues),
                     "labels": "; ".join(f"{lab.value} {lab.name}" for lab in s.labels)})
    return pd.DataFrame(rows)


def select_datasets(selection: str | list[str]) -> list[DatasetSpec]:
    """``"all"`` or a list of names -> specs, in catalog order."""
    if selection == "all":
        return list(DATASETS.values())
    if isinstance(selection, str):
        selection = [selection]
    return [get_dataset(n) for n in selection]


def labels_table(specs: list[DatasetSpec] | None = None) -> pd.DataFrame:
    """One row per (dataset, label): anatomy, label value and name, tissue class (table S0 input)."""
    specs = list(DATASETS.values()) if specs is None else specs
    rows = [
        {"dataset": s.name, "anatomy": s.anatomy, "label_value": lab.value,
         "label_name": lab.name, "tissue_class": lab.tissue_class, "multi_instance": lab.multi_instance}
        for s in specs for lab in s.labels
    ]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- naming and order
_DROP_TOKENS = {"2D", "3D", "Research", "Clinical", "Anatomical", "Compositional"}
_ABBREVIATIONS = {"Undersampled": "US", "MyoSegmenTUM": "MyoSeg"}


def anatomy_of(dataset: str) -> str:
    """Anatomy of a dataset from the catalog; an unknown name falls back to its first word
    (``"Knee_x"`` -> ``"knee"``), so results of a manifest source still group sensibly."""
    try:
        return get_dataset(str(dataset)).anatomy
    except KeyError:
        return str(dataset).split("_")[0].lower()


def dataset_order(table: pd.DataFrame) -> list[str]:
    """Datasets of a table with ``dataset`` and ``anatomy`` columns, grouped by anatomy
    (``ANATOMY_ORDER`` first, other anatomies after them in order of appearance), in order of
    first appearance within an anatomy."""
    first = table.drop_duplicates("dataset")[["dataset", "anatomy"]]
    seen = list(dict.fromkeys(a for a in table["anatomy"].tolist() if a is not None and a == a))
    anatomies = [a for a in ANATOMY_ORDER if a in seen] + [a for a in seen if a not in ANATOMY_ORDER]
    rank = {a: i for i, a in enumerate(anatomies)}
    first = first.assign(_r=first["anatomy"].map(rank), _i=range(len(first)))
    return first.sort_values(["_r", "_i"])["dataset"].tolist()


def datasets_in_order(datasets: Iterable[str]) -> list[str]:
    """Distinct dataset names in figure order (anatomy groups, then first appearance), the
    anatomy taken from the catalog (:func:`anatomy_of`); missing names (None, NaN) are left out."""
    names = list(dict.fromkeys(str(d) for d in datasets if d is not None and d == d))
    if not names:
        return []
    return dataset_order(pd.DataFrame({"dataset": names, "anatomy": [anatomy_of(d) for d in names]}))


def short_dataset_name(name: str) -> str:
    """Short label for a dataset name, for axes and titles.

    Drops the acquisition dimension, protocol type and task words and an ``-echoN`` suffix:
    ``"Knee_3D_DESS_Research_Anatomical_86"`` -> ``"Knee DESS 86"``,
    ``"Knee_2D_MAPSS-echo1_Research_Compositional_22"`` -> ``"Knee MAPSS 22"``,
    ``"Knee_3D_CUBE_Undersampled_Research_Anatomical_50"`` -> ``"Knee CUBE US 50"``.
    The trailing subject count is kept, so the twelve study names stay distinct.
    """
    tokens = [t for t in str(name).split("_") if t and t not in _DROP_TOKENS]
    tokens = [_ABBREVIATIONS.get(re.sub(r"-echo\d+$", "", t), re.sub(r"-echo\d+$", "", t))
              for t in tokens]
    return " ".join(tokens) if tokens else str(name)


def labels_for_datasets(datasets: Iterable[str]) -> pd.DataFrame:
    """``catalog.labels_table`` of the given datasets (the real spine included); names that the
    catalog does not know (e.g. a manifest source) are skipped."""
    specs = []
    for name in dict.fromkeys(datasets):
        try:
            specs.append(get_dataset(name))
        except KeyError:
            continue
    table = labels_table(specs)
    if table.empty:
        table = pd.DataFrame(columns=["dataset", "anatomy", "label_value", "label_name",
                                      "tissue_class"])
    return table
