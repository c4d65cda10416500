"""Dataset cards: a dataset declared in YAML, checked, as a :class:`DatasetSpec`.

A card says what a dataset *is* (anatomy, plane, 2D/3D, sequence, protocol type, task), what its
mask values mean (value, name, tissue class, whether a label has several separate pieces on a
slice), optionally along which array axis its slices run, which biomarkers its labels measure,
and per-dataset preparation overrides. The study's twelve datasets, the real spine fixture and an
example card for OAI-ZIB ship as cards in ``mskseg_lib/data/cards/``; a site declares its own in a
file of the same form (or inline in a profile's ``datasets:`` section)::

    tissue_classes: [tendon]          # optional: classes beyond the study's five, for every card below
    datasets:
      - name: SiteKnee_3D_PDFS_Clinical_Anatomical_40
        anatomy: knee                 # free text; knee, hip, spine, thigh, shoulder sort first
        plane: sagittal               # sagittal, coronal or axial
        acquisition: 3D               # 2D or 3D
        sequence: PDFS
        protocol_type: Clinical       # Clinical or Research
        task: Anatomical              # Anatomical or Compositional
        slice_axis: 2                 # optional: array axis of the slices (else from the plane)
        labels:
          - {value: 1, name: femur, tissue: bone}
          - {value: 2, name: patellar_tendon, tissue: tendon}
          - {value: 3, name: meniscus, tissue: cartilage, multi_instance: true}
        biomarkers:                   # optional; volume is measured for every label
          thickness_mm: {femoral: [femoral_cartilage]}   # structure -> labels (a list: one per label)
          t2_ms: [femoral_cartilage]                     # needs a t2_ms map in the manifest's maps
          disc_height_mm: [disc]
        disc_height_through_slices: false
        prepare: {min_component_px: 50, clip_percentiles: [0.5, 99.5]}

Acquisition parameters and demographics are per subject (DICOM headers or manifest columns); a
card's optional ``protocol`` is the dataset's nominal acquisition, and ``synthetic`` (study cards
only) tells the synthetic cohort how to draw and export it.

Every problem is one line naming the file and the key (``cards.yaml: datasets[1] (SiteKnee...):
labels[2].value: duplicate label value 2 (also labels[0])``), and all problems of a file are
reported together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from mskseg_lib.errors import UserError

TISSUE_CLASSES: tuple[str, ...] = ("cartilage", "bone", "muscle", "nerve", "fat")  # the study's five
PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # slice axis in canonical RAS arrays
ACQUISITIONS = ("2D", "3D")
PROTOCOL_TYPES = ("Clinical", "Research")
TASKS = ("Anatomical", "Compositional")
# biomarkers a card may declare (volume is measured for every label)
CARD_BIOMARKERS = ("thickness_mm", "t2_ms", "t1rho_ms", "disc_height_mm")
PREPARE_KEYS = ("min_component_px", "min_component_voxels", "clip_percentiles")
SYNTHETIC_KEYS = ("geometry", "raw_format", "mask_layout", "maps")
PROTOCOL_KEYS = ("sequence", "field_strength_t", "te_ms", "tr_ms", "flip_angle_deg", "matrix", "n_slices", "fov_mm",
                 "vendor", "clinical_variation", "undersampling")
REQUIRED_KEYS = ("name", "anatomy", "plane", "acquisition", "sequence", "protocol_type", "task", "labels")
OPTIONAL_KEYS = ("slice_axis", "biomarkers", "disc_height_through_slices", "prepare", "tissue_classes", "protocol",
                 "synthetic", "description")
LABEL_KEYS = ("value", "name", "tissue", "multi_instance")


class CardError(UserError, ValueError):
    """A dataset card that cannot be used: one line per problem, each naming the file and key."""


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
    """One dataset as its card declares it.

    ``geometry``, ``raw_format``, ``mask_layout`` and ``maps`` describe how the synthetic cohort
    draws and exports a study dataset (None / empty for any other card). ``biomarkers`` maps a
    biomarker column (``thickness_mm``, ``t2_ms``, ``t1rho_ms``, ``disc_height_mm``) to
    {structure: label names}; ``prepare`` holds per-dataset preparation overrides; ``source`` is
    the card's file (or ``<profile>: datasets[i]``).
    """

    name: str
    anatomy: str  # knee, hip, spine, thigh, shoulder (or any other)
    plane: str  # sagittal, coronal, axial
    acquisition: str  # "2D" or "3D"
    sequence_name: str  # DESS, CUBE, MAPSS, T1, T2 (as in the dataset name)
    protocol_type: str  # Clinical or Research
    task: str  # Anatomical or Compositional
    labels: tuple[Label, ...]
    protocol: Optional[Protocol] = None
    geometry: Optional[str] = None
    raw_format: Optional[str] = None  # dicom, nifti, npz, hdf5, mat
    mask_layout: Optional[str] = None  # "multiclass" or "per_label"
    maps: tuple[str, ...] = ()  # quantitative maps exported with the images (ms)
    slice_axis: Optional[int] = None  # override PLANE_AXIS (for headers without orientation)
    biomarkers: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict, hash=False, compare=False)
    disc_height_through_slices: bool = False
    prepare: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    tissue_classes: tuple[str, ...] = TISSUE_CLASSES
    source: str = field(default="", compare=False)
    card: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)

    @property
    def slice_axis_canonical(self) -> int:
        return PLANE_AXIS[self.plane] if self.slice_axis is None else self.slice_axis

    @property
    def synthetic(self) -> bool:
        """Whether the synthetic cohort can draw this dataset (a study card)."""
        return self.geometry is not None and self.geometry != "real"

    def label_values(self) -> dict[str, int]:
        return {lab.name: lab.value for lab in self.labels}

    def label_names(self) -> dict[int, str]:
        return {lab.value: lab.name for lab in self.labels}

    def biomarker_structures(self, label_values: Mapping[str, int] | None = None) -> dict[str, dict[str, tuple[int, ...]]]:
        """Which label values each biomarker measures, per structure.

        Parameters
        ----------
        label_values : mapping, optional
            The labels present (name -> value), e.g. after ``drop_labels``; default: the card's.

        Returns
        -------
        dict
            ``volume_cm3`` (one structure per label) and each of :data:`CARD_BIOMARKERS` ->
            {structure: tuple of label values}; a structure none of whose labels is present is
            left out (an empty dict where the card declares nothing).
        """
        lv = self.label_values() if label_values is None else {str(k): int(v) for k, v in label_values.items()}
        out: dict[str, dict[str, tuple[int, ...]]] = {"volume_cm3": {n: (v,) for n, v in lv.items()}}
        for key in CARD_BIOMARKERS:
            groups: dict[str, tuple[int, ...]] = {}
            for structure, names in (self.biomarkers.get(key) or {}).items():
                values = tuple(sorted(lv[n] for n in names if n in lv))
                if values:
                    groups[structure] = values
            out[key] = groups
        return out


# ----------------------------------------------------------------------------- parsing
def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _labels(raw: Any, where: str, tissues: Sequence[str], bad: list[str]) -> tuple[Label, ...]:
    if not isinstance(raw, list) or not raw:
        bad.append(f"{where}: a list of at least one label ({{value, name, tissue}}) is needed")
        return ()
    out, values, names = [], {}, {}
    for j, lab in enumerate(raw):
        here = f"{where}[{j}]"
        if not isinstance(lab, Mapping):
            bad.append(f"{here}: expected {{value: 1, name: femur, tissue: bone}}, got {lab!r}")
            continue
        for key in lab:
            if key not in LABEL_KEYS:
                bad.append(f"{here}: unknown key {key!r} (known: {', '.join(LABEL_KEYS)})")
        value, name, tissue = lab.get("value"), lab.get("name"), lab.get("tissue")
        ok = True
        if not _is_int(value):
            bad.append(f"{here}.value: an integer mask value is needed, got {value!r}")
            ok = False
        elif value == 0:
            bad.append(f"{here}.value: label 0 is the background and cannot be a label")
            ok = False
        elif value < 0:
            bad.append(f"{here}.value: a mask value must be positive, got {value}")
            ok = False
        elif value in values:
            bad.append(f"{here}.value: duplicate label value {value} (also {where}[{values[value]}])")
            ok = False
        if not isinstance(name, str) or not name.strip():
            bad.append(f"{here}.name: a label name is needed, got {name!r}")
            ok = False
        elif name in names:
            bad.append(f"{here}.name: duplicate label name {name!r} (also {where}[{names[name]}])")
            ok = False
        if not isinstance(tissue, str) or tissue not in tissues:
            bad.append(f"{here}.tissue: undeclared tissue class {tissue!r} (declared: {', '.join(tissues)}; add "
                       "others under tissue_classes)")
            ok = False
        multi = lab.get("multi_instance", False)
        if not isinstance(multi, bool):
            bad.append(f"{here}.multi_instance: true or false, got {multi!r}")
            ok = False
        if ok:
            values[value], names[name] = j, j
            out.append(Label(int(value), str(name), str(tissue), bool(multi)))
    return tuple(out)


def _biomarkers(raw: Any, where: str, label_names: set[str], bad: list[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        bad.append(f"{where}: a mapping of biomarker -> labels, got {raw!r}")
        return {}
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for key, groups in raw.items():
        here = f"{where}.{key}"
        if key == "volume_cm3":
            bad.append(f"{here}: volume is measured for every label; leave it out")
            continue
        if key not in CARD_BIOMARKERS:
            bad.append(f"{where}: unknown biomarker {key!r} (known: {', '.join(CARD_BIOMARKERS)}; volume is always "
                       "measured)")
            continue
        if isinstance(groups, list):
            groups = {str(n): [n] for n in groups}
        if not isinstance(groups, Mapping):
            bad.append(f"{here}: a list of label names or a mapping structure -> label names, got {groups!r}")
            continue
        parsed: dict[str, tuple[str, ...]] = {}
        for structure, names in groups.items():
            names = [names] if isinstance(names, str) else names
            if not isinstance(names, list) or not names:
                bad.append(f"{here}.{structure}: a list of label names, got {names!r}")
                continue
            unknown = [n for n in names if n not in label_names]
            if unknown:
                bad.append(f"{here}.{structure}: unknown label(s) {', '.join(map(repr, unknown))} (the card's labels: "
                           f"{', '.join(sorted(label_names))})")
                continue
            parsed[str(structure)] = tuple(str(n) for n in names)
        out[str(key)] = parsed
    return out


def _prepare(raw: Any, where: str, bad: list[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        bad.append(f"{where}: a mapping of preparation overrides, got {raw!r}")
        return {}
    out = {}
    for key, value in raw.items():
        if key not in PREPARE_KEYS:
            bad.append(f"{where}: unknown key {key!r} (known: {', '.join(PREPARE_KEYS)})")
        elif key == "clip_percentiles":
            ok = (isinstance(value, list) and len(value) == 2 and all(_is_num(v) for v in value)
                  and 0 <= value[0] < value[1] <= 100)
            if not ok:
                bad.append(f"{where}.clip_percentiles: [low, high] with 0 <= low < high <= 100, got {value!r}")
            else:
                out[key] = list(value)
        elif not _is_int(value) or value < 0:
            bad.append(f"{where}.{key}: a non-negative integer, got {value!r}")
        else:
            out[key] = value
    return out


def _protocol(raw: Any, where: str, bad: list[str]) -> Optional[Protocol]:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        bad.append(f"{where}: a mapping ({', '.join(PROTOCOL_KEYS)}), got {raw!r}")
        return None
    unknown = [k for k in raw if k not in PROTOCOL_KEYS]
    if unknown:
        bad.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(PROTOCOL_KEYS)})")
        return None

    def num(key: str) -> float:
        v = raw.get(key)
        if v is None:
            return math.nan
        if not _is_num(v):
            bad.append(f"{where}.{key}: a number, got {v!r}")
            return math.nan
        return float(v)

    def pair(key: str) -> tuple:
        v = raw.get(key)
        if v is None:
            return (0, 0)
        if not (isinstance(v, list) and len(v) == 2 and all(_is_num(x) for x in v)):
            bad.append(f"{where}.{key}: two numbers, got {v!r}")
            return (0, 0)
        return tuple(v)

    return Protocol(str(raw.get("sequence", "")), num("field_strength_t"), num("te_ms"), num("tr_ms"),
                    num("flip_angle_deg"), tuple(int(x) for x in pair("matrix")), int(raw.get("n_slices") or 0),
                    tuple(float(x) for x in pair("fov_mm")), str(raw.get("vendor", "")),
                    bool(raw.get("clinical_variation", False)), int(raw.get("undersampling", 1)))


def _synthetic(raw: Any, where: str, bad: list[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or set(raw) - set(SYNTHETIC_KEYS) or "geometry" not in raw:
        bad.append(f"{where}: the synthetic cohort's {{geometry, raw_format, mask_layout, maps}} (study cards only), "
                   f"got {raw!r}")
        return {}
    return {"geometry": str(raw["geometry"]), "raw_format": raw.get("raw_format"),
            "mask_layout": raw.get("mask_layout"), "maps": tuple(raw.get("maps") or ())}


def parse_card(raw: Any, where: str, tissue_classes: Sequence[str] = TISSUE_CLASSES,
               source: str = "") -> tuple[Optional[DatasetSpec], list[str]]:
    """One card (a mapping as read from YAML) -> (spec or None, problems).

    Parameters
    ----------
    raw : mapping
        The card.
    where : str
        Its place, used to start every problem line (``cards.yaml: datasets[2]``).
    tissue_classes : sequence of str
        Tissue classes declared for it (the study's five plus any the file declares); the card's own
        ``tissue_classes`` add to them.
    source : str
        Recorded in ``DatasetSpec.source``.

    Returns
    -------
    (DatasetSpec or None, list of str)
        The spec when there is no problem; the problems, one line each, naming ``where`` and the key.
    """
    bad: list[str] = []
    if not isinstance(raw, Mapping):
        return None, [f"{where}: a dataset card must be a mapping (name, anatomy, plane, ...), got {raw!r}"]
    name = raw.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{where} ({name})"
    for key in raw:
        if key not in REQUIRED_KEYS + OPTIONAL_KEYS:
            bad.append(f"{where}: unknown key {key!r} (known: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})")
    for key in REQUIRED_KEYS:
        if key not in raw or raw[key] is None or (isinstance(raw[key], str) and not raw[key].strip()):
            bad.append(f"{where}: missing key {key!r}")
    if bad:
        return None, [f"{ln}" for ln in bad]
    if not isinstance(name, str) or any(c in name for c in "/\\ ") or name.startswith("."):
        bad.append(f"{where}.name: a dataset name is one word usable as a folder name, got {name!r}")
    for key in ("anatomy", "sequence"):
        if not isinstance(raw[key], str):
            bad.append(f"{where}.{key}: text, got {raw[key]!r}")
    plane = raw["plane"]
    if plane not in PLANE_AXIS:
        bad.append(f"{where}.plane: unknown plane {plane!r} (known: {', '.join(PLANE_AXIS)})")
    for key, allowed in (("acquisition", ACQUISITIONS), ("protocol_type", PROTOCOL_TYPES), ("task", TASKS)):
        if str(raw[key]) not in allowed:
            bad.append(f"{where}.{key}: {raw[key]!r} is not one of {', '.join(allowed)}")
    extra = raw.get("tissue_classes") or []
    if not isinstance(extra, list) or not all(isinstance(t, str) and t.strip() for t in extra):
        bad.append(f"{where}.tissue_classes: a list of class names, got {extra!r}")
        extra = []
    tissues = tuple(dict.fromkeys([*tissue_classes, *extra]))
    labels = _labels(raw["labels"], f"{where}.labels", tissues, bad)
    slice_axis = raw.get("slice_axis")
    if slice_axis is not None and (not _is_int(slice_axis) or slice_axis not in (0, 1, 2)):
        bad.append(f"{where}.slice_axis: 0, 1 or 2 (the array axis the slices run along), got {slice_axis!r}")
    biomarkers = _biomarkers(raw.get("biomarkers"), f"{where}.biomarkers", {lab.name for lab in labels}, bad)
    through = raw.get("disc_height_through_slices", False)
    if not isinstance(through, bool):
        bad.append(f"{where}.disc_height_through_slices: true or false, got {through!r}")
    prepare = _prepare(raw.get("prepare"), f"{where}.prepare", bad)
    protocol = _protocol(raw.get("protocol"), f"{where}.protocol", bad)
    synthetic = _synthetic(raw.get("synthetic"), f"{where}.synthetic", bad)
    if bad:
        return None, bad
    spec = DatasetSpec(
        name=str(name), anatomy=str(raw["anatomy"]).lower(), plane=str(plane), acquisition=str(raw["acquisition"]),
        sequence_name=str(raw["sequence"]), protocol_type=str(raw["protocol_type"]), task=str(raw["task"]),
        labels=labels, protocol=protocol, geometry=synthetic.get("geometry"), raw_format=synthetic.get("raw_format"),
        mask_layout=synthetic.get("mask_layout"), maps=synthetic.get("maps", ()), slice_axis=slice_axis,
        biomarkers=biomarkers, disc_height_through_slices=bool(through), prepare=prepare, tissue_classes=tissues,
        source=source, card=dict(raw))
    return spec, []


def parse_cards(data: Any, source: str) -> list[DatasetSpec]:
    """Cards of a YAML document: ``{tissue_classes: [...], datasets: [card, ...]}`` or a list of cards.

    Parameters
    ----------
    data : mapping or list
        The document as ``yaml.safe_load`` returns it.
    source : str
        Its file (or ``<profile>: datasets``), named in every problem line.

    Returns
    -------
    list of DatasetSpec

    Raises
    ------
    CardError
        Every problem of every card, one line each, naming ``source`` and the key.
    """
    tissues: Sequence[str] = TISSUE_CLASSES
    if isinstance(data, Mapping):
        unknown = [k for k in data if k not in ("datasets", "tissue_classes")]
        if unknown:
            raise CardError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))} (a card file has datasets: "
                            "and optionally tissue_classes:)")
        declared = data.get("tissue_classes") or []
        if not isinstance(declared, list) or not all(isinstance(t, str) for t in declared):
            raise CardError(f"{source}: tissue_classes: a list of class names, got {declared!r}")
        tissues = tuple(dict.fromkeys([*TISSUE_CLASSES, *declared]))
        cards = data.get("datasets")
    else:
        cards = data
    if not isinstance(cards, list) or not cards:
        raise CardError(f"{source}: no dataset cards (expected datasets: [- name: ..., anatomy: ..., labels: ...])")
    specs, bad, first = [], [], {}
    for i, raw in enumerate(cards):
        spec, problems = parse_card(raw, f"{source}: datasets[{i}]", tissues, source)
        bad += problems
        if spec is not None:
            if spec.name in first:
                bad.append(f"{source}: datasets[{i}] ({spec.name}).name: duplicate dataset name (also datasets[{first[spec.name]}])")
            else:
                first[spec.name] = i
                specs.append(spec)
    if bad:
        raise CardError("\n".join(bad))
    return specs


def read_card_file(path: str | Path) -> list[DatasetSpec]:
    """The dataset cards of a YAML file (see the module docstring for its form).

    Raises
    ------
    CardError
        The file is missing or not YAML, or any card has a problem (one line each, naming the
        file and the key).
    """
    path = Path(path)
    if not path.is_file():
        raise CardError(f"{path}: no such dataset card file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "unreadable"
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise CardError(f"{path}: not valid YAML{at}: {first}") from None
    return parse_cards(data, str(path))


__all__ = ["TISSUE_CLASSES", "PLANE_AXIS", "CARD_BIOMARKERS", "PREPARE_KEYS", "CardError", "Label", "Protocol",
           "DatasetSpec", "parse_card", "parse_cards", "read_card_file"]
