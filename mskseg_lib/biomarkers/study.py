"""Notebook 05's measurements: every biomarker of every subject from manual and predicted masks.

For each prepared subject the manual mask is measured, and so is each predicted label volume
(same grid, same relaxation maps), with :func:`.cohort_truth.measure_for_truth`: thickness
(femoral, tibial, patellar), T2 and T1rho per compartment, disc height, and the volume of every
label. Where the synthetic cohort knows the truth it is put beside them.

Which finetuned model predicts a dataset: among finished experiments trained on it, the one with
the best validation Dice during training (``history``), so the choice never looks at the test
subjects whose biomarkers are then compared.

Definitions: every biomarker is measured in the project's definition (``thickness_mm``: the
validated chord; ``t2_ms``/``t1rho_ms``: the study's mean of slice means; ``disc_height_mm``: the
sub-pixel rectangle; ``volume_cm3``: voxel count x voxel volume, as the study) and, beside it, in
the labelled variants of :data:`DEFINITIONS` (the study's thickness readings, the voxel-weighted
relaxation mean, the study's pixel-centre disc rectangle). ``errors_vs_truth`` compares each
definition with the synthetic cohort's truth.

Without a profile, the agreement of a model's masks with the manual ones is::

    subjects, _ = load_tables(prepared_dir)
    chosen = choose_subjects(subjects, BiomarkerSelection(datasets=("Knee_3D_DESS_Research_Anatomical_86",)))
    long = measure_all(chosen, {"mine": lambda s: my_label_volume(s)})  # on the prepared mask's grid
    tables = agreement_by_source(long, ["mine"], AgreementSettings())  # S65-S68 per source

Supplementary numbering: the study puts its biomarker tables in S39-S64 without saying which is
which; :data:`SUPPLEMENT_TABLES` is the project's fixed mapping of (biomarker, dataset) to a
number (S63 and S64 unused), the same in every profile. ``published_agreement`` loads the
agreement ranges the study prints (``mskseg_lib/reference/paper_biomarker_agreement.csv``) and
``with_published`` puts them beside regenerated rows.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from mskseg_lib.biomarkers.cohort_truth import (
    PRIMARY_BIOMARKERS,
    VARIANT_OF,  # noqa: F401  (study.VARIANT_OF: notebook 05's variants)
    SubjectArrays,
    load_prepared_subject,
    measure_for_truth,
)
from mskseg_lib.data.bad_inputs import SKIPPED, SkippedInputs
from mskseg_lib.data.catalog import REAL_SPINE, get_dataset
from mskseg_lib.stats.agreement import AgreementResult, AgreementSettings, AgreementTables, agreement_table

UNITS = {"thickness_mm": "mm", "volume_cm3": "cm3", "t2_ms": "ms", "t1rho_ms": "ms", "disc_height_mm": "mm",
         "thickness_study_text_mm": "mm", "thickness_study_code_mm": "mm", "t2_voxel_weighted_ms": "ms",
         "t1rho_voxel_weighted_ms": "ms", "disc_height_study_mm": "mm"}
# biomarker column -> (the biomarker it measures, the definition in words); primaries first
DEFINITIONS = {
    "thickness_mm": ("thickness_mm", "chord through the medial axis to the sub-pixel boundary (validated; project)"),
    "thickness_study_text_mm": ("thickness_mm", "study text: EDT radius at the medial axis x pixel spacing"),
    "thickness_study_code_mm": ("thickness_mm", "study code: EDT radius in pixels at the medial axis x slice thickness"),
    "t2_ms": ("t2_ms", "study: mean of slice means per compartment (total: mean over compartments)"),
    "t2_voxel_weighted_ms": ("t2_ms", "variant: voxel-weighted mean over the compartment"),
    "t1rho_ms": ("t1rho_ms", "study: mean of slice means per compartment (total: mean over compartments)"),
    "t1rho_voxel_weighted_ms": ("t1rho_ms", "variant: voxel-weighted mean over the compartment"),
    "disc_height_mm": ("disc_height_mm", "minimum-area rectangle to the sub-pixel edge, max over slices (validated; "
                                         "project)"),
    "disc_height_study_mm": ("disc_height_mm", "study: minimum-area rectangle of the contour's pixel centres, max over "
                                               "slices"),
    "volume_cm3": ("volume_cm3", "study: voxel count x voxel volume, summed over slices"),
}
SHORT_NAMES = {"thickness_mm": "thickness", "t1rho_ms": "t1rho", "t2_ms": "t2", "disc_height_mm": "disc_height",
               "volume_cm3": "volume"}
_DS = {"dess": "Knee_3D_DESS_Research_Anatomical_86", "cube": "Knee_3D_CUBE_Research_Anatomical_300",
       "cube_us": "Knee_3D_CUBE_Undersampled_Research_Anatomical_50",
       "mapss22": "Knee_2D_MAPSS-echo1_Research_Compositional_22", "mapss39": "Knee_2D_MAPSS-echo1_Research_Compositional_39",
       "t1sag23": "Spine_2D_T1sag_Clinical_Anatomical_23", "t1sag111": "Spine_2D_T1sag_Clinical_Anatomical_111",
       "t2ax38": "Spine_2D_T2ax_Clinical_Anatomical_38", "t1ax59": "Spine_2D_T1ax_Clinical_Anatomical_59",
       "thigh50": "Thigh_2D_T1ax_Clinical_Anatomical_50", "hip42": "Hip_3D_CUBE_Research_Anatomical_42",
       "shoulder28": "Shoulder_3D_CUBE_Research_Anatomical_28"}
# the project's mapping of the study's S39-S64 (per-subject values of one biomarker in one dataset)
SUPPLEMENT_TABLES: tuple[tuple[int, str, str], ...] = (
    (39, "thickness_mm", _DS["dess"]), (40, "thickness_mm", _DS["cube"]), (41, "thickness_mm", _DS["cube_us"]),
    (42, "thickness_mm", _DS["mapss22"]), (43, "thickness_mm", _DS["mapss39"]),
    (44, "t1rho_ms", _DS["mapss39"]), (45, "t1rho_ms", _DS["mapss22"]),
    (46, "t2_ms", _DS["mapss39"]), (47, "t2_ms", _DS["mapss22"]),
    (48, "disc_height_mm", _DS["t1sag23"]), (49, "disc_height_mm", _DS["t1sag111"]),
    (50, "disc_height_mm", _DS["t2ax38"]),
    (51, "volume_cm3", _DS["thigh50"]), (52, "volume_cm3", _DS["t1ax59"]), (53, "volume_cm3", _DS["dess"]),
    (54, "volume_cm3", _DS["cube"]), (55, "volume_cm3", _DS["cube_us"]), (56, "volume_cm3", _DS["mapss22"]),
    (57, "volume_cm3", _DS["mapss39"]), (58, "volume_cm3", _DS["hip42"]), (59, "volume_cm3", _DS["shoulder28"]),
    (60, "volume_cm3", _DS["t1sag23"]), (61, "volume_cm3", _DS["t1sag111"]), (62, "volume_cm3", _DS["t2ax38"]),
)
UNUSED_SUPPLEMENT_NUMBERS = (63, 64)
LONG_COLUMNS = ["dataset", "subject_id", "source", "biomarker", "structure", "value", "reason"]
AGREEMENT_GROUPS = ("dataset", "biomarker", "structure")


@dataclass(frozen=True)
class BiomarkerSelection:
    """Which prepared subjects are measured.

    ``datasets``: ``"all"`` or names; ``split``: ``"test"`` (subjects no model trained on, the
    study's comparison), several splits or ``"all"``; ``max_subjects_per_dataset``: 0 = every
    subject; ``exclude``: datasets analysed on their own (the real spine fixture).
    """

    datasets: str | tuple[str, ...] = "all"
    split: str | tuple[str, ...] = "test"
    max_subjects_per_dataset: int = 0
    exclude: tuple[str, ...] = (REAL_SPINE.name,)


# ----------------------------------------------------------------------------- subjects
def selected_datasets(subjects: pd.DataFrame, selection: BiomarkerSelection = BiomarkerSelection()) -> list[str]:
    """The datasets ``selection`` names, without the excluded ones.

    Parameters
    ----------
    subjects : DataFrame
        The prepared subjects table (``dataset`` column).
    selection : BiomarkerSelection
        ``datasets == "all"``: every dataset of the table, sorted.

    Returns
    -------
    list of str
    """
    wanted = sorted(subjects["dataset"].unique()) if selection.datasets == "all" else list(selection.datasets)
    return [d for d in wanted if d not in selection.exclude]


def choose_subjects(subjects: pd.DataFrame, selection: BiomarkerSelection = BiomarkerSelection()) -> pd.DataFrame:
    """The rows of the prepared subjects table that ``selection`` picks.

    Parameters
    ----------
    subjects : DataFrame
        The prepared subjects table (``dataset``, ``subject_id``, ``split``).
    selection : BiomarkerSelection
        Datasets, split(s) and the number of subjects per dataset.

    Returns
    -------
    DataFrame
        The chosen rows sorted by dataset and subject (the first ``max_subjects_per_dataset`` of
        each dataset when that is > 0).
    """
    split = selection.split
    splits = [split] if isinstance(split, str) else list(split)
    in_split = subjects["split"].isin(splits) | (split == "all")
    chosen = subjects[subjects["dataset"].isin(selected_datasets(subjects, selection)) & in_split]
    chosen = chosen.sort_values(["dataset", "subject_id"])
    if selection.max_subjects_per_dataset > 0:
        chosen = chosen.groupby("dataset").head(selection.max_subjects_per_dataset)
    return chosen


def measure_subject(subject: Mapping, labels: np.ndarray | None = None, source: str = "manual",
                    arrays: SubjectArrays | None = None) -> pd.DataFrame:
    """Every biomarker of one prepared subject, from its manual mask or from a predicted one.

    Parameters
    ----------
    subject : mapping
        A row of the prepared subjects table.
    labels : (X, Y, Z) int ndarray, optional
        A predicted label volume on the prepared mask's grid (canonical RAS); None: the manual mask.
    source : str
        The ``source`` written in every row (``manual``, a model name...).
    arrays : SubjectArrays, optional
        The subject's loaded mask and maps, to save reading them again per source.

    Returns
    -------
    DataFrame
        Long table (:data:`LONG_COLUMNS`): one row per biomarker definition and structure, the
        value in the biomarker's unit (mm, ms, cm3), NaN with a reason where none.
    """
    arrays = arrays if arrays is not None else load_prepared_subject(subject)
    volume = arrays.labels
    if labels is not None:
        if labels.shape != volume.shape:
            raise ValueError(f"{subject['dataset']}/{subject['subject_id']}: predicted volume {labels.shape} is not "
                             f"on the mask's grid {volume.shape}")
        volume = labels.astype(np.int16)
    spec = get_dataset(str(subject["dataset"]))
    measured = measure_for_truth(volume, arrays.spacing_mm, spec.biomarker_structures(arrays.label_values),
                                 arrays.slice_axis, arrays.maps, through_slices=spec.disc_height_through_slices)
    measured = measured.rename(columns={"measured": "value"})
    measured.insert(0, "source", source)
    measured.insert(0, "subject_id", str(subject["subject_id"]))
    measured.insert(0, "dataset", str(subject["dataset"]))
    return measured[LONG_COLUMNS]


def truth_rows(truth: Mapping[str, Mapping], subjects: pd.DataFrame) -> pd.DataFrame:
    """The cohort's true values of these subjects as ``source == "truth"`` rows.

    Parameters
    ----------
    truth : mapping
        ``truth.json`` (``data.cohort.load_truth``): ``dataset/subject_id`` -> biomarker -> values.
    subjects : DataFrame
        The subjects whose truth is wanted.

    Returns
    -------
    DataFrame
        Long table (:data:`LONG_COLUMNS`); subjects without a truth entry give no rows.
    """
    rows = []
    for s in subjects.itertuples():
        entry = truth.get(f"{s.dataset}/{s.subject_id}") or {}
        for biomarker in UNITS:
            for structure, value in (entry.get(biomarker) or {}).items():
                rows.append({"dataset": s.dataset, "subject_id": s.subject_id, "source": "truth",
                             "biomarker": biomarker, "structure": structure, "value": float(value), "reason": ""})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def _measure_one(s: Mapping, predictors: Mapping[str, Callable[[Mapping], np.ndarray | None]],
                 skipped: SkippedInputs) -> list[pd.DataFrame]:
    """One subject's manual rows and one set per source; a source whose prediction cannot be
    read (``DataError``) is listed in ``skipped`` and the other sources still count."""
    arrays = load_prepared_subject(s)  # mask and maps read once, shared by every source
    parts = [measure_subject(s, arrays=arrays)]
    for source, predict in predictors.items():
        volume = skipped.attempt(functools.partial(predict, s), s["dataset"], s["subject_id"])
        if volume is not None and volume is not SKIPPED:
            parts.append(measure_subject(s, volume, source, arrays=arrays))
    return parts


def measure_all(subjects: pd.DataFrame, predictors: Mapping[str, Callable[[Mapping], np.ndarray | None]],
                progress: bool = True, *, skipped: SkippedInputs | None = None,
                out_dir: Path | None = None) -> pd.DataFrame:
    """Manual and predicted biomarkers of every subject.

    Parameters
    ----------
    subjects : DataFrame
        Rows of the prepared subjects table.
    predictors : mapping
        Source name -> function of a subject row returning its predicted label volume on the
        prepared mask's grid, or None (no prediction: skipped).
    progress : bool
        Show a progress bar.
    skipped : SkippedInputs, optional
        Collects the subjects left out (``skipped.table()`` afterwards). Under its default
        ``on_bad_input="skip"`` a subject whose mask or map cannot be read or is malformed is
        left out (a prediction that cannot be read: only that source) with its file and
        problem; under ``"raise"`` the ``DataError`` stops the loop. Other errors always do.
        None: a new ``SkippedInputs("biomarkers")``, logged only.
    out_dir : Path, optional
        Where to write the list as ``skipped.csv`` (None: not written).

    Returns
    -------
    DataFrame
        Long table (:data:`LONG_COLUMNS`): the ``manual`` rows and one set per source.
    """
    from tqdm.auto import tqdm

    skipped = skipped if skipped is not None else SkippedInputs("biomarkers")
    parts = []
    for s in tqdm(subjects.to_dict("records"), desc="biomarkers", disable=not progress):
        done = skipped.attempt(functools.partial(_measure_one, s, predictors, skipped), s["dataset"], s["subject_id"])
        if done is not SKIPPED:
            parts.extend(done)
    if out_dir is not None:
        skipped.save(Path(out_dir))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LONG_COLUMNS)


def paired(long: pd.DataFrame, predicted: str, with_truth: bool = True) -> pd.DataFrame:
    """Manual, predicted and true values side by side.

    Parameters
    ----------
    long : DataFrame
        Long table (:data:`LONG_COLUMNS`).
    predicted : str
        The source whose values are ``predicted``.
    with_truth : bool
        Add the ``truth`` column.

    Returns
    -------
    DataFrame
        One row per (dataset, subject, biomarker, structure) with a manual or predicted value:
        ``subject`` (``dataset/subject_id``, unique across datasets), ``manual``, ``predicted`` and
        ``truth`` (NaN where absent).
    """
    keys = ["dataset", "subject_id", "biomarker", "structure"]
    wide = long.pivot_table(index=keys, columns="source", values="value", aggfunc="first", dropna=False)
    out = pd.DataFrame(index=wide.index)
    out["manual"] = wide["manual"] if "manual" in wide else np.nan
    out["predicted"] = wide[predicted] if predicted in wide else np.nan
    if with_truth:
        out["truth"] = wide["truth"] if "truth" in wide else np.nan
    out = out.reset_index()
    out = out[out["manual"].notna() | out["predicted"].notna()]
    out.insert(0, "subject", out["dataset"] + "/" + out["subject_id"])
    return out.reset_index(drop=True)


def best_experiment_per_dataset(experiments: pd.DataFrame, history: pd.DataFrame,
                                datasets: Sequence[str]) -> dict[str, str]:
    """Which finetuned experiment predicts each dataset: the finished one trained on it with the
    highest validation Dice during training (the choice never sees the test subjects).

    Parameters
    ----------
    experiments : DataFrame
        The grid's experiments (``experiment_id``, ``status``, ``train_datasets`` comma-separated).
    history : DataFrame
        Training history (``experiment_id``, ``val_dice``).
    datasets : sequence of str

    Returns
    -------
    dict
        Dataset -> experiment id; datasets no finished experiment trained on are left out.
    """
    finished = experiments[experiments["status"] == "finished"]
    if finished.empty or history.empty:
        return {}
    best_val = history.groupby("experiment_id")["val_dice"].max()
    out = {}
    for d in datasets:
        trained = finished[finished["train_datasets"].astype(str).str.split(",").map(lambda names, d=d: d in names)]
        scores = best_val.reindex(trained["experiment_id"]).dropna()
        if not scores.empty:
            out[d] = str(scores.idxmax())
    return out


def dataset_slug(dataset: str) -> str:
    """A short file-name form of a dataset name.

    Parameters
    ----------
    dataset : str
        e.g. ``Knee_2D_MAPSS-echo1_Research_Compositional_22``.

    Returns
    -------
    str
        e.g. ``knee_2d_mapss_22`` (lower case; protocol and task words and ``-echo1`` dropped).
    """
    drop = {"research", "clinical", "anatomical", "compositional"}
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", str(dataset).replace("-echo1", "")) if p and p.lower() not in drop]
    return "_".join(parts).lower()


def supplement_table_name(number: int, biomarker: str, dataset: str) -> str:
    """The file name of a study-numbered biomarker table.

    Parameters
    ----------
    number : int
        39-62.
    biomarker : str
        A primary biomarker column (``thickness_mm``...).
    dataset : str

    Returns
    -------
    str
        ``tableS<N>_<biomarker>_<dataset slug>`` (without extension).
    """
    return f"tableS{number}_{SHORT_NAMES[biomarker]}_{dataset_slug(dataset)}"


def supplement_mapping(present: pd.DataFrame | None = None) -> pd.DataFrame:
    """The S39-S64 mapping as a table.

    Parameters
    ----------
    present : DataFrame, optional
        The long table of measurements (manual rows suffice): adds how many subjects each table
        holds in this run.

    Returns
    -------
    DataFrame
        One row per number S39-S64: ``table``, ``file``, ``biomarker``, ``dataset``, ``definition``
        (``unused`` for S63, S64) and, given ``present``, ``subjects_in_this_run``.
    """
    rows = [{"table": f"S{n}", "file": supplement_table_name(n, b, d), "biomarker": b, "dataset": d,
             "definition": DEFINITIONS[b][1]} for n, b, d in SUPPLEMENT_TABLES]
    rows += [{"table": f"S{n}", "file": "", "biomarker": "", "dataset": "", "definition": "unused"}
             for n in UNUSED_SUPPLEMENT_NUMBERS]
    out = pd.DataFrame(rows)
    if present is not None:
        counts = present.groupby(["biomarker", "dataset"])["subject_id"].nunique()
        out["subjects_in_this_run"] = [int(counts.get((b, d), 0)) if b else 0 for b, d in zip(out["biomarker"],
                                                                                              out["dataset"])]
    return out


def errors_vs_truth(long: pd.DataFrame, sources: Sequence[str] = ("manual", "finetuned", "zero_shot")) -> pd.DataFrame:
    """Every measured value with a known truth, in every definition.

    Parameters
    ----------
    long : DataFrame
        Long table with ``truth`` rows (:func:`truth_rows`).
    sources : sequence of str
        The sources compared with the truth.

    Returns
    -------
    DataFrame
        One row per (dataset, subject, biomarker, definition, structure, source): ``value``,
        ``truth`` (of the biomarker the definition measures), ``error = value - truth`` (the
        biomarker's unit) and ``relative_error = error / truth``.
    """
    columns = ["dataset", "subject_id", "biomarker", "definition", "description", "structure", "source", "value",
               "truth", "error", "relative_error"]
    truth = long[long["source"] == "truth"].set_index(["dataset", "subject_id", "biomarker", "structure"])["value"]
    measured = long[long["source"].isin(list(sources)) & long["biomarker"].isin(list(DEFINITIONS))].copy()
    if measured.empty or truth.empty:
        return pd.DataFrame(columns=columns)
    measured["definition"] = measured["biomarker"]
    measured["biomarker"] = measured["definition"].map(lambda b: DEFINITIONS[b][0])
    measured["description"] = measured["definition"].map(lambda b: DEFINITIONS[b][1])
    keys = pd.MultiIndex.from_frame(measured[["dataset", "subject_id", "biomarker", "structure"]])
    measured["truth"] = truth.reindex(keys).to_numpy() if truth.index.is_unique else \
        truth.groupby(level=[0, 1, 2, 3]).first().reindex(keys).to_numpy()
    out = measured.dropna(subset=["truth", "value"])
    out = out.assign(error=out["value"] - out["truth"], relative_error=(out["value"] - out["truth"]) / out["truth"])
    return out[columns].reset_index(drop=True)


def error_summary(errors: pd.DataFrame) -> pd.DataFrame:
    """Error against the truth per biomarker, definition and source.

    Parameters
    ----------
    errors : DataFrame
        :func:`errors_vs_truth`'s table.

    Returns
    -------
    DataFrame
        ``n``, ``mean_error``, ``sd_error``, ``mean_abs_error`` (the biomarker's unit) and
        ``mean_relative_error``.
    """
    cols = ["biomarker", "definition", "description", "source"]
    if errors.empty:
        return pd.DataFrame(columns=[*cols, "n", "mean_error", "sd_error", "mean_abs_error", "mean_relative_error"])
    g = errors.groupby(cols, sort=False)
    out = g.agg(n=("error", "size"), mean_error=("error", "mean"), sd_error=("error", "std"),
                mean_abs_error=("error", lambda e: float(np.abs(e).mean())),
                mean_relative_error=("relative_error", "mean")).reset_index()
    return out


def truth_error_pairs(errors: pd.DataFrame, panel: str = "biomarker", predicted_source: str = "finetuned",
                      definitions: Sequence[str] | None = None) -> pd.DataFrame:
    """``errors_vs_truth`` rows reshaped for :func:`mskseg_lib.plots.biomarkers.plot_truth_error`.

    Parameters
    ----------
    errors : DataFrame
        :func:`errors_vs_truth`'s table.
    panel : str
        Column naming the panels (``biomarker`` or ``definition``).
    predicted_source : str
        The source drawn as ``predicted``.
    definitions : sequence of str, optional
        Keep only these definitions.

    Returns
    -------
    DataFrame
        One row per (panel, dataset, subject, structure): ``manual``, ``predicted`` and ``true``.
    """
    keys = [panel, "dataset", "subject_id", "structure"]
    sel = errors if definitions is None else errors[errors["definition"].isin(list(definitions))]
    sel = sel[sel["source"].isin(["manual", predicted_source])]
    if sel.empty:
        return pd.DataFrame(columns=[*keys, "manual", "predicted", "true"])
    wide = sel.pivot_table(index=keys, columns="source", values="value", aggfunc="first").reset_index()
    truth = sel.groupby(keys, as_index=False)["truth"].first().rename(columns={"truth": "true"})
    out = wide.merge(truth, on=keys, how="left").rename(columns={predicted_source: "predicted"})
    for col in ("manual", "predicted"):
        if col not in out:
            out[col] = np.nan
    return out[[*keys, "manual", "predicted", "true"]]


# ----------------------------------------------------------------------------- agreement
def agreement_by_source(long: pd.DataFrame, sources: Sequence[str],
                        settings: AgreementSettings = AgreementSettings(),
                        biomarkers: Sequence[str] = PRIMARY_BIOMARKERS,
                        by: Sequence[str] = AGREEMENT_GROUPS) -> dict[str, AgreementTables]:
    """Agreement (S65-S68) of each predicted source with the manual masks.

    Parameters
    ----------
    long : DataFrame
        ``measure_all``'s long table (:data:`LONG_COLUMNS`), truth rows allowed.
    sources : sequence of str
        The predicted sources compared with ``manual`` (e.g. ``finetuned``, ``zero_shot``).
    settings : AgreementSettings
        Bootstrap and test settings (the study's by default).
    biomarkers : sequence of str
        Biomarker columns analysed (default: the project's definitions; a variant such as
        ``thickness_study_text_mm`` is analysed the same way).
    by : sequence of str
        Groups, by default one per dataset, biomarker and structure.

    Returns
    -------
    dict
        Source -> ``AgreementTables`` (``subject`` is ``dataset/subject_id``).
    """
    sel = long[long["biomarker"].isin(list(biomarkers))]
    return {source: agreement_table(paired(sel, source), "manual", "predicted", by=by, subject_col="subject",
                                    settings=settings)
            for source in sources}


def stacked(tables: Mapping[str, AgreementTables], name: str) -> pd.DataFrame:
    """One of the agreement tables of every source, one under the other.

    Parameters
    ----------
    tables : mapping
        Source -> ``AgreementTables`` (:func:`agreement_by_source`).
    name : str
        ``icc``, ``regression``, ``spearman``, ``test_choice`` or ``bland_altman``.

    Returns
    -------
    DataFrame
        The sources' tables concatenated, with a ``predicted_by`` column.
    """
    return pd.concat([getattr(t, name).assign(predicted_by=source) for source, t in tables.items()],
                     ignore_index=True)


def most_pairs_per_biomarker(results: Mapping[tuple, AgreementResult]) -> dict[tuple[str, str, str], AgreementResult]:
    """Figure 5b's rows: per biomarker, the group with the most subject pairs.

    Parameters
    ----------
    results : mapping
        (dataset, biomarker, structure) -> ``AgreementResult`` (``AgreementTables.results``).

    Returns
    -------
    dict
        (biomarker, structure, dataset slug) -> result, biomarkers sorted; ties go to the first
        group in sorted order.
    """
    shown = {}
    for biomarker in sorted({k[1] for k in results}):
        key = max(sorted(k for k in results if k[1] == biomarker), key=lambda k: results[k].n_pairs)
        shown[(key[1], key[2], dataset_slug(key[0]))] = results[key]
    return shown


# ----------------------------------------------------------------------------- published ranges
def published_agreement() -> pd.DataFrame:
    """The study's printed agreement ranges (finetuned vs manual).

    Returns
    -------
    DataFrame
        One row per family, dataset set and statistic (``icc``, ``r2``, ``spearman_rho``): ``low``,
        ``high``, ``datasets`` (";"-separated), ``tissue_class`` and ``structure`` where the range
        is that narrow, ``p_text``.
    """
    from importlib import resources

    with resources.files("mskseg_lib.reference").joinpath("paper_biomarker_agreement.csv").open() as fh:
        df = pd.read_csv(fh, keep_default_na=False, na_values=[""])
    for col in ("tissue_class", "structure", "p_text"):
        df[col] = df[col].fillna("")
    return df


def _tissue(dataset: str, structure: str) -> str:
    try:
        spec = get_dataset(str(dataset))
    except (KeyError, ValueError):
        return ""
    return next((lab.tissue_class for lab in spec.labels if lab.name == structure), "")


def with_published(table: pd.DataFrame, statistic: str, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """``table`` with the study's printed range of ``statistic`` beside each row it covers.

    Parameters
    ----------
    table : DataFrame
        Rows with ``dataset``, ``biomarker``, ``structure``.
    statistic : str
        ``icc``, ``r2`` or ``spearman_rho``.
    published : DataFrame, optional
        :func:`published_agreement` (read when not given).

    Returns
    -------
    DataFrame
        A copy with ``published_family`` and ``published_<statistic>_low``/``_high`` (empty / NaN
        where the study prints none; the narrowest matching range wins).
    """
    published = published_agreement() if published is None else published
    pub = published[published["statistic"] == statistic]
    fam, low, high = [], [], []
    for row in table.itertuples(index=False):
        match = None
        for p in pub.itertuples(index=False):
            if p.biomarker != row.biomarker or row.dataset not in str(p.datasets).split(";"):
                continue
            if p.tissue_class and _tissue(row.dataset, row.structure) != p.tissue_class:
                continue
            if p.structure and p.structure != row.structure:
                continue
            if match is None or (p.structure and not match.structure):  # the narrowest range wins
                match = p
        fam.append(match.family if match is not None else "")
        low.append(float(match.low) if match is not None else np.nan)
        high.append(float(match.high) if match is not None else np.nan)
    out = table.copy()
    out["published_family"] = fam
    out[f"published_{statistic}_low"] = low
    out[f"published_{statistic}_high"] = high
    return out


def published_vs_regenerated(icc: pd.DataFrame, regression: pd.DataFrame, spearman: pd.DataFrame,
                             published: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study's printed ranges beside the regenerated ranges of the same statistics.

    The regenerated ICC is the one the decision picks (``icc``: ICC(3,1) or the bootstrap
    median), R2 that of the linear regressions, rho Spearman's.

    Parameters
    ----------
    icc, regression, spearman : DataFrame
        The finetuned source's S66, S67 and S68 tables.
    published : DataFrame, optional
        :func:`published_agreement` (read when not given).

    Returns
    -------
    DataFrame
        One row per printed range: ``published_low``/``_high`` beside ``regenerated_low``/``_high``
        over the study's datasets (``n_groups``) and over every dataset (``*_any_dataset``).
    """
    published = published_agreement() if published is None else published
    linear = regression[regression["method"] == "linear"] if "method" in regression else regression
    sources = {"icc": (icc, "icc"), "r2": (linear, "r2"), "spearman_rho": (spearman, "rho")}
    rows = []
    for p in published.itertuples(index=False):
        table, col = sources[p.statistic]
        if table.empty or col not in table:
            values_study = values_any = pd.Series(dtype=float)
        else:
            sel = table[table["biomarker"] == p.biomarker]
            if p.tissue_class:
                # a boolean Series, not a list: an empty list would select no columns
                sel = sel[pd.Series([_tissue(d, s) == p.tissue_class for d, s in zip(sel["dataset"], sel["structure"])],
                                    index=sel.index, dtype=bool)]
            if p.structure:
                sel = sel[sel["structure"] == p.structure]
            values_any = pd.to_numeric(sel[col], errors="coerce").dropna()
            values_study = pd.to_numeric(sel[sel["dataset"].isin(str(p.datasets).split(";"))][col],
                                         errors="coerce").dropna()
        rows.append({"family": p.family, "statistic": p.statistic, "structure": p.structure_text,
                     "published_datasets": p.datasets, "published_low": p.low, "published_high": p.high,
                     "published_p": p.p_text,
                     "regenerated_low": values_study.min() if len(values_study) else np.nan,
                     "regenerated_high": values_study.max() if len(values_study) else np.nan,
                     "n_groups": int(len(values_study)),
                     "regenerated_low_any_dataset": values_any.min() if len(values_any) else np.nan,
                     "regenerated_high_any_dataset": values_any.max() if len(values_any) else np.nan,
                     "n_groups_any_dataset": int(len(values_any))})
    return pd.DataFrame(rows)


def safe_structure(name: str) -> str:
    """A structure name usable in a file name (runs of other characters -> ``_``).

    Parameters
    ----------
    name : str

    Returns
    -------
    str
    """
    return re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_")
