"""The synthetic MSK MRI cohort: subjects, protocols, rendered images and raw exports.

Real study data cannot be shipped, so this generates a cohort that behaves like it: twelve
dataset families (``catalog``), anatomy whose size follows each subject's demographics
(``anatomy``), images whose quality follows the acquisition (``mr_physics``), and raw files in
the forms studies arrive in (DICOM series with real MR headers, NIfTI, NPZ, HDF5, MATLAB).

Layout under ``<data_root>/cohort``::

    raw/<dataset>/<subject>/      image and mask files in the dataset's raw form
    raw/<dataset>/<subject>/record.json   manifest row + ground truth of that subject
    manifest.csv                  one row per subject: where its raw files are (prepare reads it)
    truth.json                    per subject true biomarkers (thickness, disc height, volumes, T2)

Every subject is seeded from (seed, dataset, subject index), so a cohort is the same for the
same settings (:class:`CohortSettings`), and a rerun skips subjects already written (each is
written to a temporary folder and renamed when complete). ``generate_cohort(cohort_dir,
CohortSettings(...))`` needs no profile; :mod:`mskseg_lib.from_profile.data` builds the settings
from one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mskseg_lib.atomic import replace_folder, save_csv, write_guard, write_json
from mskseg_lib.data import anatomy, mr_physics
from mskseg_lib.data.catalog import DatasetSpec, select_datasets
from mskseg_lib.data.errors import SettingsError
from mskseg_lib.data.grids import AXIS_CODES, acquisition_affine, world_coordinates
from mskseg_lib.provenance import fingerprint

VENDORS = ("GE", "Siemens", "Philips")
T2PREP_TIMES_MS = (0.0, 10.3, 20.6, 41.1)  # MAPSS T2 preparation times
SPIN_LOCK_TIMES_MS = (0.0, 10.0, 40.0, 80.0)  # MAPSS T1rho spin-lock times
IMAGE_SCALE = 3000.0  # signal units -> stored intensities (fits uint16 for DICOM)
CHUNK_SLICES = 8


@dataclass(frozen=True)
class CohortSettings:
    """What the synthetic cohort holds and how finely it is rendered.

    ``datasets``: ``"all"`` or catalog names; ``subjects_per_dataset`` with
    ``subjects_override`` (dataset -> count); ``matrix_scale``: in-plane matrix relative to the
    protocol's nominal one; ``slice_scale``: number of slices relative to nominal (thickness
    follows); ``supersample``: render this many times finer per axis, then average (partial
    volume). The defaults are the ``default`` profile's (a 2-core CPU). Numbers are kept as given,
    because each subject's fingerprint records them.
    """

    seed: int = 0
    datasets: str | Sequence[str] = "all"
    subjects_per_dataset: int = 12
    subjects_override: Mapping[str, int] = field(default_factory=dict)
    matrix_scale: float = 0.5
    slice_scale: float = 0.25
    supersample: int = 2

    def __post_init__(self) -> None:
        if self.subjects_per_dataset < 0 or any(int(n) < 0 for n in self.subjects_override.values()):
            raise SettingsError("cohort subject counts must be >= 0")
        if not (self.matrix_scale > 0 and self.slice_scale > 0 and int(self.supersample) >= 1):
            raise SettingsError(f"cohort matrix_scale and slice_scale must be > 0 and supersample >= 1, got "
                                f"{self.matrix_scale}, {self.slice_scale}, {self.supersample}")


def subject_seed(seed: int, dataset: str, index: int) -> int:
    """Stable per-subject seed (independent of which other datasets are generated)."""
    digest = hashlib.sha256(f"{seed}:{dataset}:{index}".encode()).hexdigest()
    return int(digest[:12], 16)


# ----------------------------------------------------------------------------- demographics & protocol
def sample_demographics(spec: DatasetSpec, rng: np.random.Generator) -> dict:
    """True age, sex, height, weight and BMI (research knee cohorts are younger on average)."""
    lo, hi = (22.0, 68.0) if spec.protocol_type == "Research" else (25.0, 82.0)
    sex = "M" if rng.random() < 0.5 else "F"
    height = rng.normal(1.77, 0.07) if sex == "M" else rng.normal(1.64, 0.06)
    bmi = float(np.clip(rng.normal(26.0, 4.0), 17.5, 42.0))
    return {"age_years": float(np.round(rng.uniform(lo, hi), 1)), "sex": sex,
            "height_m": float(np.round(height, 2)), "bmi": float(np.round(bmi, 1)),
            "weight_kg": float(np.round(bmi * height**2, 1))}


def sample_protocol(spec: DatasetSpec, settings: CohortSettings, rng: np.random.Generator) -> dict:
    """Acquisition of one subject: the dataset's protocol, varied per subject if clinical."""
    p = spec.protocol
    vendor, field, te, tr, flip = p.vendor, p.field_strength_t, p.te_ms, p.tr_ms, p.flip_angle_deg
    if p.clinical_variation:
        vendor = str(rng.choice(VENDORS, p=[0.4, 0.35, 0.25] if p.vendor == "GE" else None))
        field = float(rng.choice([1.5, 3.0], p=[0.6, 0.4] if p.field_strength_t == 1.5 else [0.3, 0.7]))
        te = float(np.round(te * rng.uniform(0.75, 1.35), 1))
        tr = float(np.round(tr * rng.uniform(0.8, 1.25), 0))
        flip = float(rng.choice([90.0, 150.0, 160.0])) if rng.random() < 0.3 else flip
    rows = max(32, int(round(p.matrix[0] * settings.matrix_scale / 4.0)) * 4)
    cols = max(32, int(round(p.matrix[1] * settings.matrix_scale / 4.0)) * 4)
    n_slices = max(6, int(round(p.n_slices * settings.slice_scale)))
    return {
        "vendor": vendor, "field_strength_t": field, "te_ms": te, "tr_ms": tr, "flip_angle_deg": flip,
        "sequence": p.sequence, "acquisition": spec.acquisition, "rows_px": rows, "cols_px": cols,
        "n_slices": n_slices, "pixel_spacing_mm": float(np.round(p.fov_mm[0] / rows, 4)),
        "slice_thickness_mm": float(np.round(p.fov_mm[1] / n_slices, 4)),
        "undersampling": p.undersampling,
    }


# ----------------------------------------------------------------------------- rendering
def render_subject(spec: DatasetSpec, proto: dict, params: dict, supersample: int,
                   rng: np.random.Generator) -> dict[str, Any]:
    """Labels, structures, image and (for compositional sets) maps and echo series of one subject."""
    shape = (proto["rows_px"], proto["cols_px"], proto["n_slices"])
    spacing = (proto["pixel_spacing_mm"], proto["pixel_spacing_mm"], proto["slice_thickness_mm"])
    affine = acquisition_affine(spec.plane, shape, spacing)
    structures, paint = anatomy.GEOMETRIES[spec.geometry]
    lut = anatomy.label_lookup(spec.geometry, spec.label_values())
    tissue = [("air", "air")] + structures
    t1 = np.array([mr_physics.t1_at_field(mr_physics.TISSUES[t][0], proto["field_strength_t"]) for _, t in tissue])
    t2 = np.array([mr_physics.TISSUES[t][1] for _, t in tissue])
    pd_ = np.array([mr_physics.TISSUES[t][2] for _, t in tissue])
    sig_lut = mr_physics.signal(pd_, t1, t2, sequence=proto["sequence"], te_ms=proto["te_ms"],
                                tr_ms=proto["tr_ms"], flip_angle_deg=proto["flip_angle_deg"]).astype(np.float32)
    struct = np.zeros(shape, np.int16)
    clean = np.zeros(shape, np.float32)
    fine_counts = np.zeros(len(tissue), np.int64)
    s = supersample
    for k0 in range(0, shape[2], CHUNK_SLICES):
        k1 = min(shape[2], k0 + CHUNK_SLICES)
        fine = paint(*world_coordinates(affine, shape, (k0, k1), s), params)
        fine_counts += np.bincount(fine.ravel(), minlength=len(tissue))
        clean[:, :, k0:k1] = mr_physics.block_mean(sig_lut[fine], s)
        struct[:, :, k0:k1] = paint(*world_coordinates(affine, shape, (k0, k1), 1), params)
    labels = lut[struct]
    clean *= mr_physics.bias_field(shape, rng)
    snr = mr_physics.snr_factor(spacing, proto["rows_px"], proto["n_slices"], proto["acquisition"], proto["field_strength_t"])
    sigma = mr_physics.noise_sigma(sequence=proto["sequence"], te_ms=proto["te_ms"], tr_ms=proto["tr_ms"],
                                   flip_angle_deg=proto["flip_angle_deg"], field_strength_t=proto["field_strength_t"], snr=snr)
    if proto["undersampling"] > 1:
        image = mr_physics.undersample(clean, sigma, proto["undersampling"], rng)
    else:
        image = mr_physics.add_rician_noise(clean, sigma, rng)
    fine_voxel_mm3 = float(np.prod(spacing)) / s**3
    out = {"affine": affine, "struct": struct, "labels": labels, "image": image * IMAGE_SCALE,
           "clean": clean, "sigma": sigma, "snr_factor": snr, "tissue": tissue,
           "fine_volume_cm3": {name: float(fine_counts[i + 1] * fine_voxel_mm3 / 1000.0)
                               for i, (name, _) in enumerate(structures)}}
    return out


def compositional_series(spec: DatasetSpec, rendered: dict, truth_maps: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """T2 and T1rho maps (ms) and the T2-prepared / spin-lock image series they imply."""
    struct, tissue, clean = rendered["struct"], rendered["tissue"], rendered["clean"]
    t2_map = np.array([mr_physics.TISSUES[t][1] for _, t in tissue], np.float32)[struct]
    t1rho_map = (1.25 * t2_map).astype(np.float32)
    index = {name: i for i, (name, _) in enumerate(tissue)}
    for comp, (t2_true, t1rho_true) in truth_maps.items():
        m = struct == index[comp]
        if m.any():
            t2_map[m] = mr_physics.compartment_map(m, t2_true, rng)
            t1rho_map[m] = mr_physics.compartment_map(m, t1rho_true, rng)
    t2_map[struct == 0] = 0.0
    t1rho_map[struct == 0] = 0.0
    sigma = rendered["sigma"]
    safe = lambda m: np.where(m > 0, m, 1.0)  # noqa: E731
    echoes = np.stack([mr_physics.add_rician_noise(clean * np.exp(-te / safe(t2_map)), sigma, rng)
                       for te in T2PREP_TIMES_MS], axis=-1) * IMAGE_SCALE
    spin = np.stack([mr_physics.add_rician_noise(clean * np.exp(-tsl / safe(t1rho_map)), sigma, rng)
                     for tsl in SPIN_LOCK_TIMES_MS], axis=-1) * IMAGE_SCALE
    return {"t2_ms": t2_map, "t1rho_ms": np.clip(t1rho_map, 0, None), "echoes_t2prep": echoes.astype(np.float32),
            "echo_times_ms": np.asarray(T2PREP_TIMES_MS, np.float32), "echoes_spinlock": spin.astype(np.float32),
            "spin_lock_times_ms": np.asarray(SPIN_LOCK_TIMES_MS, np.float32)}


def truth_of(spec: DatasetSpec, params: dict, rendered: dict, demo: dict, maps_truth: dict) -> dict:
    """Known biomarker values of one subject (the cohort's ground truth)."""
    vols = rendered["fine_volume_cm3"]
    truth: dict[str, Any] = {"volume_cm3": {}}
    for label in spec.labels:
        parts = anatomy.LABEL_STRUCTURES.get(label.name, (label.name,))
        truth["volume_cm3"][label.name] = float(sum(vols[p] for p in parts))
    if spec.geometry == "knee":
        truth["thickness_mm"] = {"femoral": params["femoral_thickness_mm"], "tibial": params["tibial_thickness_mm"],
                                 "patellar": params["patellar_thickness_mm"]}
    if spec.geometry == "spine_sagittal":
        truth["disc_height_mm"] = dict(params["disc_height_mm"])
    if spec.geometry == "spine_axial_disc":
        truth["disc_height_mm"] = {"disc": params["disc_height_mm"]}
    if maps_truth:
        truth["t2_ms"] = {k: v[0] for k, v in maps_truth.items()}
        truth["t1rho_ms"] = {k: v[1] for k, v in maps_truth.items()}
    truth["demographics"] = demo
    truth["snr_factor"] = rendered["snr_factor"]
    return truth


def mapss_truth(demo: dict, rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """True mean T2 and T1rho (ms) per cartilage compartment: longer with age (matrix loss)."""
    age = demo["age_years"]
    out = {}
    for comp, offset in (("fc_lat", 0.0), ("fc_med", 1.5), ("tc_lat", -2.0), ("tc_med", -1.0)):
        t2 = 32.0 + 0.12 * (age - 40.0) + offset + rng.normal(0, 1.2)
        out[comp] = (float(t2), float(1.3 * t2 + 3.0 + rng.normal(0, 1.0)))
    return out


# ----------------------------------------------------------------------------- export
def _hide_values(record: dict, spec: DatasetSpec, rng: np.random.Generator) -> dict:
    """Blank a few values as real records have them (weight, age, flip angle in clinical data)."""
    rec = dict(record)
    if rng.random() < 0.08:
        rec["weight_kg"] = None
        rec["bmi"] = None
    if rng.random() < 0.04:
        rec["age_years"] = None
    if spec.protocol_type == "Clinical" and rng.random() < 0.1:
        rec["flip_angle_deg"] = None
    return rec


def export_subject(spec: DatasetSpec, subject_id: str, folder: Path, rendered: dict, maps: dict,
                   visible: dict, seed: int) -> dict:
    """Write the raw files of one subject in the dataset's raw form; return manifest fields."""
    from mskseg_lib.data import dicom_io, raw_io

    folder.mkdir(parents=True, exist_ok=True)
    affine, image, labels = rendered["affine"], rendered["image"], rendered["labels"]
    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    label_names = spec.label_names()
    per_label = {f"mask_{label_names[v]}": (labels == v).astype(np.uint8) for v in label_names}
    fields: dict[str, Any] = {"image_format": spec.raw_format}
    fmt = spec.raw_format
    if fmt == "dicom":
        header = {"patient_id": subject_id, "sex": visible["sex"], "age_years": visible["age_years"],
                  "weight_kg": visible["weight_kg"], "accession": f"ACC{seed % 10**8:08d}",
                  "manufacturer": visible["vendor"], "field_strength_t": visible["field_strength_t"],
                  "te_ms": visible["te_ms"], "tr_ms": visible["tr_ms"], "flip_angle_deg": visible["flip_angle_deg"],
                  "acquisition": spec.acquisition, "series_description": f"{spec.sequence_name} {spec.plane}"}
        pixels = np.clip(np.round(image), 0, 65535).astype(np.uint16)
        dicom_io.write_dicom_series(pixels, affine, folder / "dicom", header, rng_seed=seed)
        fields["image_path"] = "dicom"
        mask_fmt = "nifti_per_label" if spec.mask_layout == "per_label" else "nifti"
    elif fmt == "nifti":
        raw_io.write_nifti(folder / "image.nii.gz", image.astype(np.float32), affine)
        fields["image_path"] = "image.nii.gz"
        mask_fmt = "nifti_per_label" if spec.mask_layout == "per_label" else "nifti"
    else:
        ext = {"npz": "npz", "hdf5": "h5", "mat": "mat"}[fmt]
        arrays: dict[str, np.ndarray] = {"image": image.astype(np.float32)}
        arrays.update(per_label if spec.mask_layout == "per_label" else {"mask": labels.astype(np.int16)})
        for key in ("t2_ms", "t1rho_ms", "echoes_t2prep", "echo_times_ms", "echoes_spinlock", "spin_lock_times_ms"):
            if key in maps:
                arrays[key] = maps[key]
        name = f"subject.{ext}"
        if fmt == "hdf5":  # HDF5 carries its affine; NPZ and MAT carry spacing + axis codes
            raw_io.write_container(folder / name, fmt, arrays, affine=affine)
        else:
            raw_io.write_container(folder / name, fmt, arrays, spacing_mm=spacing, orientation=AXIS_CODES[spec.plane])
        fields.update(image_path=name, mask_format=fmt, mask_path=name)
        if maps:
            fields["maps"] = {k: {"format": fmt, "path": name, "key": k} for k in ("t2_ms", "t1rho_ms")}
        return fields
    fields["mask_format"] = mask_fmt
    if mask_fmt == "nifti":
        raw_io.write_nifti(folder / "mask.nii.gz", labels.astype(np.int16), affine)
        fields["mask_path"] = "mask.nii.gz"
    else:
        (folder / "masks").mkdir(exist_ok=True)
        for key, m in per_label.items():
            raw_io.write_nifti(folder / "masks" / f"{key[5:]}.nii.gz", m, affine)
        fields["mask_path"] = "masks"
    if maps:
        fields["maps"] = {}
        for k in ("t2_ms", "t1rho_ms"):
            raw_io.write_nifti(folder / f"{k}.nii.gz", maps[k], affine)
            fields["maps"][k] = {"format": "nifti", "path": f"{k}.nii.gz", "key": k}
    return fields


# ----------------------------------------------------------------------------- orchestration
MANIFEST_COLUMNS = [
    "dataset", "subject_id", "source", "image_format", "image_path", "mask_format", "mask_path", "maps",
    "sex", "age_years", "weight_kg", "height_m", "bmi", "vendor", "field_strength_t", "te_ms", "tr_ms",
    "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm",
]
HEADER_FIELDS = ("sex", "age_years", "weight_kg", "vendor", "field_strength_t", "te_ms", "tr_ms",
                 "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm")


def subject_id_of(spec: DatasetSpec, index: int) -> str:
    return f"{spec.name.split('_')[0].lower()}{spec.name.rsplit('_', 1)[-1]}-{index:03d}"


def subject_fingerprint(settings: CohortSettings, spec: DatasetSpec, index: int) -> str:
    """What a subject's files depend on: seed, dataset, index and the rendering settings."""
    return fingerprint([settings.seed, spec.name, index, settings.matrix_scale, settings.slice_scale,
                        settings.supersample, 1])


def _current_record(path: Path, fingerprint: str) -> dict | None:
    """The subject's record if it exists and was made with the same settings, else None."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("fingerprint") == fingerprint else None


def generate_subject(spec: DatasetSpec, index: int, settings: CohortSettings, raw_root: Path) -> dict:
    """Render and export subject ``index`` of ``spec``; atomic per subject (temp dir + rename).

    An existing subject is reused only if it was generated with the same seed and settings;
    otherwise it is regenerated and replaced.
    """
    subject_id = subject_id_of(spec, index)
    final = raw_root / spec.name / subject_id
    subject_fp = subject_fingerprint(settings, spec, index)
    existing = _current_record(final / "record.json", subject_fp)
    if existing is not None:
        return existing
    seed = subject_seed(settings.seed, spec.name, index)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    demo = sample_demographics(spec, rng)
    proto = sample_protocol(spec, settings, rng)
    params = anatomy.sample_params(spec.geometry, demo, rng)
    rendered = render_subject(spec, proto, params, int(settings.supersample), rng)
    maps_truth = mapss_truth(demo, rng) if spec.maps else {}
    maps = compositional_series(spec, rendered, maps_truth, rng) if spec.maps else {}
    visible = _hide_values({**demo, **proto}, spec, rng)
    tmp = final.parent / f".{subject_id}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with write_guard(final, tmp):
            fields = export_subject(spec, subject_id, tmp, rendered, maps, visible, seed)
            row = {"dataset": spec.name, "subject_id": subject_id, "source": "synthetic", **fields}
            row["image_path"] = f"raw/{spec.name}/{subject_id}/{fields['image_path']}"
            row["mask_path"] = f"raw/{spec.name}/{subject_id}/{fields['mask_path']}"
            if "maps" in fields:
                row["maps"] = {k: {**v, "path": f"raw/{spec.name}/{subject_id}/{v['path']}"} for k, v in fields["maps"].items()}
            if spec.raw_format != "dicom":  # DICOM subjects carry these in their headers only
                row.update({k: visible.get(k) for k in HEADER_FIELDS})
                row.update(height_m=visible["height_m"], bmi=visible["bmi"])
            else:
                row.update(height_m=visible["height_m"], bmi=visible["bmi"])
            record = {"fingerprint": subject_fp, "manifest": row, "truth": truth_of(spec, params, rendered, demo, maps_truth),
                      "params": params, "protocol": proto, "seed": seed,
                      "seconds": round(time.perf_counter() - t0, 3)}
            (tmp / "record.json").write_text(json.dumps(record, indent=1, default=float))
            final.parent.mkdir(parents=True, exist_ok=True)
            replace_folder(tmp, final)  # a stale subject from other settings goes once this is in place
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def subject_counts(settings: CohortSettings) -> dict[str, int]:
    """Dataset -> number of subjects generated.

    Raises
    ------
    SettingsError
        A dataset the synthetic cohort cannot draw (a card without a ``synthetic:`` section, such
        as a site's own dataset or the real spine).
    """
    specs = select_datasets(settings.datasets if isinstance(settings.datasets, str) else list(settings.datasets))
    cannot = [s.name for s in specs if not s.synthetic]
    if cannot:
        raise SettingsError(f"cohort.datasets: the synthetic cohort draws only the study's datasets; "
                            f"{', '.join(cannot)} come(s) from your own files (list them in a manifest under sources)")
    return {s.name: int(settings.subjects_override.get(s.name, settings.subjects_per_dataset)) for s in specs}


def generate_cohort(cohort_dir: Path, settings: CohortSettings = CohortSettings(), progress: bool = True) -> Path:
    """Generate (or complete) the synthetic cohort in ``cohort_dir``; returns the manifest path.

    Parameters
    ----------
    cohort_dir : Path
        Output folder: ``raw/``, ``manifest.csv``, ``truth.json``, ``generation.json``.
    settings : CohortSettings
        Datasets, subjects, resolution and seed.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        ``<cohort_dir>/manifest.csv`` (relative raw paths; :func:`.sources.read_manifest` makes
        them absolute). When every subject is already there with the same settings the existing
        manifest is returned untouched.
    """
    root = Path(cohort_dir)
    raw_root = root / "raw"
    counts = subject_counts(settings)
    jobs = [(spec, i) for spec in select_datasets(list(counts)) for i in range(counts[spec.name])]
    manifest_path = root / "manifest.csv"
    complete = all(
        _current_record(raw_root / spec.name / subject_id_of(spec, i) / "record.json",
                        subject_fingerprint(settings, spec, i))
        for spec, i in jobs)
    if manifest_path.exists() and complete:
        return manifest_path  # complete: nothing to regenerate, keep the recorded timings
    records = []
    t0 = time.perf_counter()
    for spec, i in tqdm(jobs, desc="cohort", unit="subject", disable=not progress):
        records.append(generate_subject(spec, i, settings, raw_root))
    manifest = pd.DataFrame([r["manifest"] for r in records])
    for col in MANIFEST_COLUMNS:
        if col not in manifest:
            manifest[col] = None
    manifest["maps"] = manifest["maps"].map(lambda m: json.dumps(m) if isinstance(m, dict) else "")
    save_csv(manifest[MANIFEST_COLUMNS], manifest_path)
    write_json(root / "truth.json", {f"{r['manifest']['dataset']}/{r['manifest']['subject_id']}": r["truth"] for r in records})
    config = {k: v for k, v in asdict(settings).items() if k != "seed"}
    write_json(root / "generation.json", {"seed": settings.seed, "subjects": len(records), "cohort_config": config,
                                          "seconds_this_call": round(time.perf_counter() - t0, 2),
                                          "seconds_per_subject_total": round(sum(r["seconds"] for r in records), 2)})
    return manifest_path


def load_truth(cohort_dir: Path) -> dict:
    """Ground truth per ``dataset/subject`` (as written by ``generate_cohort`` to ``truth.json``)."""
    return json.loads((Path(cohort_dir) / "truth.json").read_text())
