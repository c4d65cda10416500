"""Dataset-overview figure panels (plots) and tables S0-S2 (data.summary) on small hand-made tables."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Wedge  # noqa: E402

from mskseg_lib.data import catalog, summary  # noqa: E402
from mskseg_lib.plots import dataset_overview as dov  # noqa: E402
from mskseg_lib.plots.style import ANATOMY_COLORS, TISSUE_COLORS, apply_style  # noqa: E402

NAN = np.nan
KNEE_DESS = "Knee_3D_DESS_Research_Anatomical_86"
KNEE_CUBE = "Knee_3D_CUBE_Research_Anatomical_300"
SPINE_T2 = "Spine_2D_T2ax_Clinical_Anatomical_38"
HIP = "Hip_3D_CUBE_Research_Anatomical_42"

# dataset, anatomy, plane, acq, sequence, protocol, task, sex, age, weight, height, vendor,
#   field, te, tr, flip, thickness, spacing, rows, cols, split
_ROWS = [
    (KNEE_DESS, "knee", "sagittal", "3D", "DESS", "Research", "Anatomical", "F", 50.0, 70.0, 1.70,
     "Siemens", 2.89, 5.0, 16.0, 25.0, 0.7, 0.36, 384, 384, "train"),
    (KNEE_DESS, "knee", "sagittal", "3D", "DESS", "Research", "Anatomical", "M", 60.0, 80.0, 1.80,
     "Siemens", 2.89, 5.0, 16.0, 25.0, 0.7, 0.36, 384, 384, "train"),
    (KNEE_DESS, "knee", "sagittal", "3D", "DESS", "Research", "Anatomical", None, NAN, 90.0, NAN,
     "Siemens", 2.89, 5.0, 16.0, 25.0, 0.7, 0.36, 384, 384, "test"),
    (KNEE_CUBE, "knee", "sagittal", "3D", "CUBE", "Research", "Anatomical", "F", 40.0, NAN, 1.60,
     "GE", 3.0, 25.0, 1500.0, 90.0, 0.6, 0.42, 384, 384, "train"),
    (KNEE_CUBE, "knee", "sagittal", "3D", "CUBE", "Research", "Anatomical", "F", 44.0, NAN, 1.65,
     "GE MEDICAL SYSTEMS", 3.0, 25.0, 1500.0, 90.0, 0.6, 0.42, 384, 384, "val"),
    (SPINE_T2, "spine", "axial", "2D", "T2", "Clinical", "Anatomical", "M", 30.0, 60.0, 1.75,
     "Siemens", 1.5, 100.0, 3500.0, 90.0, 4.0, 0.7, 256, 256, "train"),
    (SPINE_T2, "spine", "axial", "2D", "T2", "Clinical", "Anatomical", "M", 35.0, 65.0, 1.78,
     "Philips", 3.0, 90.0, 3000.0, 150.0, 4.0, 0.68, 320, 320, "val"),
    (SPINE_T2, "spine", "axial", "2D", "T2", "Clinical", "Anatomical", "F", 70.0, NAN, NAN,
     None, NAN, NAN, 4000.0, NAN, 5.0, NAN, 256, 256, "test"),
    (HIP, "hip", "coronal", "3D", "CUBE", "Research", "Anatomical", "F", 55.0, 75.0, 1.68,
     "GE", 3.0, 30.0, 1400.0, 90.0, 1.0, 0.62, 320, 320, "train"),
    (HIP, "hip", "coronal", "3D", "CUBE", "Research", "Anatomical", "M", 65.0, 85.0, 1.82,
     "GE", 3.0, 30.0, 1400.0, 90.0, 1.0, 0.62, 320, 320, "test"),
]
_COLS = ["dataset", "anatomy", "plane", "acquisition", "sequence", "protocol_type", "task", "sex",
         "age_years", "weight_kg", "height_m", "vendor", "field_strength_t", "te_ms", "tr_ms",
         "flip_angle_deg", "slice_thickness_mm", "pixel_spacing_mm", "rows_px", "cols_px", "split"]


def make_subjects() -> pd.DataFrame:
    df = pd.DataFrame(_ROWS, columns=_COLS)
    df.insert(1, "subject_id", [f"s{i:02d}" for i in range(len(df))])
    df["source"] = "synthetic"
    df["bmi"] = df["weight_kg"] / df["height_m"] ** 2
    df["n_slices"] = 20
    df["n_processed_slices"] = [3, 2, 1, 4, 2, 1, 1, 2, 3, 3]
    df["image_nifti"] = "img.nii.gz"
    df["mask_nifti"] = "mask.nii.gz"
    return df


def make_slices(subjects: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for s in subjects.itertuples():
        for k in range(s.n_processed_slices):
            rows.append({"dataset": s.dataset, "subject_id": s.subject_id, "split": s.split,
                         "slice_index": k, "rows_px": s.rows_px, "cols_px": s.cols_px,
                         "pixel_spacing_mm": s.pixel_spacing_mm,
                         "labels_present": json.dumps([1, 2]), "boxes_json": "{}",
                         "instance_boxes_json": "{}", "voxel_counts_json": "{}"})
    return pd.DataFrame(rows)


# knee: 3 cartilage + 2 bone; spine: 1 cartilage + 1 bone + 1 nerve; hip: 1 bone -> 9 labels
def make_labels() -> pd.DataFrame:
    rows = [
        (KNEE_DESS, "knee", 1, "femoral_cartilage", "cartilage"),
        (KNEE_DESS, "knee", 2, "tibial_cartilage", "cartilage"),
        (KNEE_CUBE, "knee", 1, "femur", "bone"),
        (KNEE_CUBE, "knee", 2, "femoral_cartilage", "cartilage"),
        (KNEE_CUBE, "knee", 3, "tibia", "bone"),
        (SPINE_T2, "spine", 3, "nerve", "nerve"),
        (SPINE_T2, "spine", 1, "disc", "cartilage"),
        (SPINE_T2, "spine", 2, "vertebra", "bone"),
        (HIP, "hip", 1, "proximal_femur", "bone"),
    ]
    return pd.DataFrame(rows, columns=["dataset", "anatomy", "label_value", "label_name",
                                       "tissue_class"])


def make_samples() -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for ds, n in ((KNEE_DESS, 2), (SPINE_T2, 1), (HIP, 2)):
        for k in range(n):
            mask = np.zeros((32, 32), dtype=np.int32)
            mask[4:12, 4:20] = 1
            mask[16:28, 10:24] = 2
            out.append({"dataset": ds, "subject_id": f"s{k}", "slice_index": 5 + k,
                        "image": rng.integers(0, 256, (32, 32), dtype=np.uint8), "mask": mask,
                        "label_names": {1: "a", 2: "b"}})
    return out


@pytest.fixture(autouse=True)
def _close_figures():
    apply_style()
    yield
    plt.close("all")


@pytest.fixture
def subjects() -> pd.DataFrame:
    return make_subjects()


# ------------------------------------------------------------------------------- helpers
def test_short_dataset_name_examples_and_catalog_unique():
    assert catalog.short_dataset_name(KNEE_DESS) == "Knee DESS 86"
    assert catalog.short_dataset_name("Knee_2D_MAPSS-echo1_Research_Compositional_22") == "Knee MAPSS 22"
    assert catalog.short_dataset_name("Knee_3D_CUBE_Undersampled_Research_Anatomical_50") == "Knee CUBE US 50"
    assert catalog.short_dataset_name("Spine_2D_T1sag_Clinical_Anatomical_111") == "Spine T1sag 111"
    names = [*catalog.DATASETS, catalog.REAL_SPINE.name]
    shorts = [catalog.short_dataset_name(n) for n in names]
    assert len(set(shorts)) == len(shorts)
    assert all(len(s) < 25 for s in shorts)


def test_style_palettes_cover_catalog():
    assert set(ANATOMY_COLORS) == {"knee", "hip", "spine", "thigh", "shoulder"}
    assert set(TISSUE_COLORS) == set(catalog.TISSUE_CLASSES)
    assert {s.anatomy for s in catalog.DATASETS.values()} <= set(ANATOMY_COLORS)


def test_dataset_order_groups_by_anatomy(subjects):
    assert catalog.dataset_order(subjects) == [KNEE_DESS, KNEE_CUBE, HIP, SPINE_T2]
    # names alone: the anatomy from the catalog (an unknown name by its first word), missing names dropped
    names = [SPINE_T2, KNEE_CUBE, None, HIP, float("nan"), KNEE_DESS, "Knee_manifest_site", "Elbow_x", KNEE_CUBE]
    assert catalog.datasets_in_order(names) == [KNEE_CUBE, KNEE_DESS, "Knee_manifest_site", HIP, SPINE_T2, "Elbow_x"]


# ---------------------------------------------------------------------------------- UpSet
def test_acquisition_indicators_known_membership(subjects):
    ind = dov.acquisition_indicators(subjects)
    assert list(ind.columns) == list(dov.UPSET_THRESHOLDS)
    assert all(dtype == np.dtype(bool) for dtype in ind.dtypes)
    assert ind.index.equals(subjects.index)
    cols = list(dov.UPSET_THRESHOLDS)  # 3T, thin, long TR, long TE, large flip, 3D, GE
    expected = {
        0: (True, True, False, False, False, True, False),  # DESS, Siemens 2.89 T
        3: (True, True, True, False, True, True, True),  # CUBE, GE
        4: (True, True, True, False, True, True, True),  # "GE MEDICAL SYSTEMS" is GE
        5: (False, False, True, True, True, False, False),  # spine 1.5 T
        6: (True, False, True, True, True, False, False),  # spine 3 T Philips
        7: (False, False, True, False, False, False, False),  # NaN field/TE/flip, no vendor
        8: (True, True, True, True, True, True, True),  # hip: TE exactly 30, thickness 1.0
    }
    for i, row in expected.items():
        assert tuple(bool(x) for x in ind.loc[i, cols]) == row, i


def test_acquisition_indicators_missing_column_is_false(subjects):
    ind = dov.acquisition_indicators(subjects.drop(columns=["vendor", "te_ms"]))
    assert not ind["vendor GE"].any()
    assert not ind["long TE (≥30 ms)"].any()


def test_upset_plot_returns_figure(subjects):
    fig = dov.plot_acquisition_upset(subjects)
    assert isinstance(fig, Figure)
    assert len(fig.axes) >= 3  # matrix, totals, intersections (+ shading)
    # intersections: the bars sum to the number of subjects
    heights = max((sum(p.get_height() for p in ax.patches) for ax in fig.axes), default=0)
    assert heights == pytest.approx(len(subjects))


def test_upset_plot_all_false(subjects):
    empty = subjects.assign(field_strength_t=NAN, slice_thickness_mm=NAN, tr_ms=NAN, te_ms=NAN,
                            flip_angle_deg=NAN, acquisition="2D", vendor=None)
    fig = dov.plot_acquisition_upset(empty)
    assert isinstance(fig, Figure)


# ---------------------------------------------------------------------------------- panels
def _legend_lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_age_weight_density(subjects):
    fig = dov.plot_age_weight_density(subjects)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    age_ax, weight_ax = fig.axes
    # ages known in knee (4), hip (2), spine (3); weights known in knee (3), hip, spine (2)
    assert sorted(line.get_label() for line in _legend_lines(age_ax)) == [
        "hip (n=2)", "knee (n=4)", "spine (n=3)"]
    assert sorted(line.get_label() for line in _legend_lines(weight_ax)) == [
        "hip (n=2)", "knee (n=3)", "spine (n=2)"]
    texts = [t.get_text() for t in age_ax.texts] + [t.get_text() for t in weight_ax.texts]
    assert "missing: 1" in texts and "missing: 3" in texts
    # densities integrate to about 1 (cut at +-15% of the range, so slightly less)
    for line in _legend_lines(age_ax):
        x, y = line.get_data()
        assert 0.5 < np.trapezoid(y, x) <= 1.0 + 1e-6


def test_age_weight_density_single_value_draws_vline(subjects):
    one = subjects[subjects["dataset"] != HIP].copy()
    one.loc[one["anatomy"] == "spine", "age_years"] = [NAN, NAN, 33.0]
    fig = dov.plot_age_weight_density(one)
    labels = [line.get_label() for line in _legend_lines(fig.axes[0])]
    assert "spine (n=1)" in labels


def test_counts_per_anatomy(subjects):
    slices = make_slices(subjects)
    fig = dov.plot_counts_per_anatomy(subjects, slices)
    assert len(fig.axes) == 2
    expected_subjects = {0: 5, 1: 2, 2: 3}  # knee, hip, spine
    expected_slices = {0: 3 + 2 + 1 + 4 + 2, 1: 6, 2: 1 + 1 + 2}
    for ax, expected in zip(fig.axes, (expected_subjects, expected_slices)):
        totals = {}
        for p in ax.patches:
            x = round(p.get_x() + p.get_width() / 2)
            totals[x] = totals.get(x, 0) + p.get_height()
        assert totals == expected
        assert [t.get_text() for t in ax.get_xticklabels()] == ["knee", "hip", "spine"]
    assert fig.axes[1].get_legend() is not None


def test_demographic_violins(subjects):
    fig = dov.plot_demographic_violins(subjects)
    assert len(fig.axes) == 2
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert ticks == ["Knee DESS 86", "Knee CUBE 300", "Hip CUBE 42", "Spine T2ax 38"]
    legend = fig.axes[0].get_legend()
    assert legend is not None
    assert sorted(t.get_text() for t in legend.get_texts()) == ["CUBE", "DESS", "T2"]
    fig2 = dov.plot_demographic_violins(subjects, hue="protocol_type")
    assert sorted(t.get_text() for t in fig2.axes[0].get_legend().get_texts()) == [
        "Clinical", "Research"]


def test_demographic_violin_points_are_the_same_on_every_call(subjects):
    """The strip plot's jitter is seeded, so a rerun draws the same figure (the global NumPy
    random state is left as it was)."""
    def points():
        return [c.get_offsets().copy() for ax in dov.plot_demographic_violins(subjects).axes for c in ax.collections
                if len(c.get_offsets())]

    np.random.seed(1)
    first = points()
    after = np.random.random()
    np.random.seed(2)
    second = points()
    assert len(first) == len(second) > 0
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    np.random.seed(1)
    assert np.random.random() == after  # the caller's random stream is not consumed


def test_sex_donuts(subjects):
    fig = dov.plot_sex_donuts(subjects)
    assert len(fig.axes) == 3  # knee, hip, spine
    # knee: F 3, M 1, unknown 1; hip: F 1, M 1; spine: F 1, M 2
    expected = [[3, 1, 1], [1, 1], [1, 2]]
    for ax, counts in zip(fig.axes, expected):
        wedges = [p for p in ax.patches if isinstance(p, Wedge)]
        assert len(wedges) == len(counts)
        spans = np.array([w.theta2 - w.theta1 for w in wedges])
        np.testing.assert_allclose(spans, 360 * np.array(counts) / sum(counts), atol=1e-6)


def test_tissue_layered_donut_fractions():
    labels = make_labels()
    fig = dov.plot_tissue_layered_donut(labels)
    wedges = [p for p in fig.axes[0].patches if isinstance(p, Wedge)]
    inner = {w.get_gid(): w.theta2 - w.theta1 for w in wedges if w.get_gid().startswith("inner:")}
    outer = {w.get_gid(): w.theta2 - w.theta1 for w in wedges if w.get_gid().startswith("outer:")}
    pairs = labels.groupby(["anatomy", "tissue_class"]).size()
    assert len(outer) == len(pairs) == 6
    total = len(labels)
    for (anatomy, tissue), n in pairs.items():
        assert outer[f"outer:{anatomy}:{tissue}"] == pytest.approx(360 * n / total)
    assert inner == pytest.approx({"inner:knee": 360 * 5 / 9, "inner:hip": 360 * 1 / 9,
                                   "inner:spine": 360 * 3 / 9})
    assert len(fig.axes[0].get_legend().get_texts()) == 3  # tissue legend (anatomy is an artist)


def test_tissue_layered_donut_on_catalog():
    labels = catalog.labels_table()
    fig = dov.plot_tissue_layered_donut(labels)
    wedges = [p for p in fig.axes[0].patches if isinstance(p, Wedge)]
    n_pairs = labels.groupby(["anatomy", "tissue_class"]).ngroups
    assert sum(w.get_gid().startswith("outer:") for w in wedges) == n_pairs
    assert sum(w.theta2 - w.theta1 for w in wedges if w.get_gid().startswith("outer:")) == \
        pytest.approx(360)


def test_qc_montage_grid():
    fig = dov.plot_qc_montage(make_samples())
    # 3 datasets x max 2 samples = 6 axes; the spine row's second axes is switched off
    assert len(fig.axes) == 6
    shown = [ax for ax in fig.axes if ax.axison]
    assert len(shown) == 5
    for ax in shown:
        assert len(ax.images) == 2  # slice + mask overlay
        overlay = ax.images[1]
        assert overlay.get_alpha() == pytest.approx(0.45)
        assert np.ma.getmaskarray(overlay.get_array())[0, 0]  # background transparent
    assert fig.axes[0].get_ylabel() == "Knee DESS 86"
    reordered = dov.plot_qc_montage(make_samples(), order=[HIP, KNEE_DESS])
    assert [reordered.axes[i].get_ylabel() for i in (0, 2, 4)] == [
        "Hip CUBE 42", "Knee DESS 86", "Spine T2ax 38"]
    assert dov.plot_qc_montage([]) is not None


def test_qc_montage_wraps_single_samples():
    samples = make_samples()
    one_each = [samples[0], samples[2], samples[3]]  # knee, spine, hip: one slice each
    fig = dov.plot_qc_montage(one_each, wrap_cols=2)
    assert len(fig.axes) == 4  # 2 x 2 grid, last cell off
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title().split("\n")[0] for ax in shown] == [
        "Knee DESS 86", "Spine T2ax 38", "Hip CUBE 42"]
    assert all(ax.get_legend() is not None for ax in shown)


# ---------------------------------------------------------------------------------- tables
def test_table_s0(subjects):
    t = summary.table_s0_datasets(subjects, make_labels())
    assert list(t.columns) == ["dataset", "anatomy", "plane", "acquisition", "labels",
                               "n_labels", "task"]
    assert t["dataset"].tolist() == [KNEE_DESS, KNEE_CUBE, HIP, SPINE_T2]
    row = t.set_index("dataset").loc[SPINE_T2]
    assert row["labels"] == "disc, vertebra, nerve"  # label-value order
    assert row["n_labels"] == 3 and row["plane"] == "axial" and row["acquisition"] == "2D"


def test_table_s0_on_catalog_labels(subjects):
    t = summary.table_s0_datasets(subjects, catalog.labels_table()).set_index("dataset")
    assert t.at[KNEE_CUBE, "n_labels"] == 6
    assert t.at[HIP, "labels"] == "proximal_femur"


def test_labels_for_datasets_skips_unknown():
    t = catalog.labels_for_datasets([HIP, catalog.REAL_SPINE.name, "Not_A_Dataset", HIP])
    assert sorted(t["dataset"].unique()) == sorted([HIP, catalog.REAL_SPINE.name])
    assert len(t) == 1 + 5
    assert catalog.labels_for_datasets(["Not_A_Dataset"]).empty


def test_table_s1_known_numbers(subjects):
    t = summary.table_s1_demographics(subjects).set_index("dataset")
    knee = t.loc[KNEE_DESS]
    assert knee["n_subjects"] == 3
    assert (knee["n_train"], knee["n_val"], knee["n_test"]) == (2, 0, 1)
    assert knee["age_years"] == f"{55.0:.1f} ± {np.std([50, 60], ddof=1):.1f}"  # NaN excluded
    assert knee["n_age_missing"] == 1 and knee["n_weight_missing"] == 0
    assert (knee["n_female"], knee["n_male"], knee["n_sex_unknown"]) == (1, 1, 1)
    cube = t.loc[KNEE_CUBE]
    assert cube["weight_kg"] == "n/a" and cube["n_weight_missing"] == 2
    assert t.loc["All datasets", "n_subjects"] == len(subjects)
    assert t.loc["All datasets", "n_age_missing"] == 1

    n = summary.table_s1_demographics(subjects, numeric=True).set_index("dataset")
    assert n.loc[KNEE_DESS, "age_years_mean"] == pytest.approx(55.0)
    assert n.loc[SPINE_T2, "age_years_mean"] == pytest.approx((30 + 35 + 70) / 3)
    assert n.loc[SPINE_T2, "weight_kg_mean"] == pytest.approx(62.5)
    assert n.loc[SPINE_T2, "weight_kg_sd"] == pytest.approx(np.std([60, 65], ddof=1))
    assert np.isnan(n.loc[KNEE_CUBE, "weight_kg_mean"])
    assert n.loc[HIP, "bmi_mean"] == pytest.approx(np.mean([75 / 1.68**2, 85 / 1.82**2]))
    assert n.loc["All datasets", "age_years_mean"] == pytest.approx(
        subjects["age_years"].mean())


def test_table_s2_known_values(subjects):
    t = summary.table_s2_acquisition(subjects).set_index("dataset")
    spine = t.loc[SPINE_T2]
    assert spine["vendor"] in {"Philips, Siemens", "Siemens, Philips"}
    assert spine["field_strength_t"] == "1.5, 3"
    assert spine["te_ms"] == "95 [90–100]"  # NaN excluded
    assert spine["tr_ms"] == "3500 [3000–4000]"
    assert spine["slice_thickness_mm"] == "4 [4–5]"
    assert spine["matrix"] == "256 x 256, 320 x 320"
    assert spine["acquisition"] == "2D" and spine["protocol_type"] == "Clinical"
    dess = t.loc[KNEE_DESS]
    assert dess["te_ms"] == "5" and dess["field_strength_t"] == "2.89"
    assert dess["pixel_spacing_mm"] == "0.36"
    nan_only = subjects.assign(te_ms=NAN, vendor=None)
    t2 = summary.table_s2_acquisition(nan_only).set_index("dataset")
    assert t2.loc[HIP, "te_ms"] == "n/a" and t2.loc[HIP, "vendor"] == "n/a"


# -------------------------------------------------------------------------------- notebook
def test_notebook_01_has_one_parameters_cell_and_the_result_names():
    import ast
    from pathlib import Path

    import nbformat

    root = Path(__file__).resolve().parent.parent
    path = root / "notebooks" / "01_dataset_overview.ipynb"
    nb = nbformat.read(path, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code_cells)
    tagged = [c for c in code_cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "params = None" in tagged[0].source
    for c in code_cells:
        ast.parse(c.source)
    text = "\n".join(c.source for c in code_cells)
    for name in ("fig2a_age_weight_density", "fig2f_tissue_layered_donut", "figX01a_qc_montage",
                 "tableS0_datasets", "tableS1_demographics", "tableS2_acquisition"):
        assert f'"{name}"' in text
    for old in ("fig2_qc_montage", "table_S0", "table_S1", "table_S2"):  # item 11: one naming scheme
        assert old not in text
    title = nb.cells[0].source.splitlines()[0]
    assert "synthetic" in title.lower()  # the cohort is generated, and the notebook says so up front
