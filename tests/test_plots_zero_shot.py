"""Zero-shot figure (figure 3, panels a-c) on small hand-made result tables."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import PathPatch, Rectangle  # noqa: E402

from mskseg_lib.data.catalog import anatomy_of  # noqa: E402
from mskseg_lib.plots import zero_shot as zs  # noqa: E402
from mskseg_lib.plots.style import apply_style  # noqa: E402

NAN = np.nan
KNEE_DESS = "Knee_3D_DESS_Research_Anatomical_86"
KNEE_CUBE = "Knee_3D_CUBE_Research_Anatomical_300"
SPINE_T2 = "Spine_2D_T2ax_Clinical_Anatomical_38"
HIP = "Hip_3D_CUBE_Research_Anatomical_42"
ARMS = ("LiteMedSAM · GT box", "SAM ViT-B · GT box", "SAM ViT-B · jittered box")

# Spine is listed first on purpose: the figure must reorder by anatomy (knee, hip, spine).
_DICE = {
    # dataset: {arm: subject dice values}
    SPINE_T2: {ARMS[0]: [0.7, 0.8, 0.75], ARMS[1]: [0.5, 0.6, NAN], ARMS[2]: [0.4, 0.45, 0.5]},
    KNEE_DESS: {ARMS[0]: [0.6, 0.65, 0.7, 0.9], ARMS[1]: [0.3, 0.2, 0.4, 0.35],
                ARMS[2]: [NAN, NAN, NAN, NAN]},  # all missing: no box
    HIP: {ARMS[0]: [0.92], ARMS[1]: [0.88], ARMS[2]: [0.8]},  # one subject: no variance
    KNEE_CUBE: {ARMS[0]: [0.81, 0.83], ARMS[1]: [0.7, 0.72]},  # third arm not run here
}
ORDER = [KNEE_DESS, KNEE_CUBE, HIP, SPINE_T2]


def make_subjects() -> pd.DataFrame:
    rows = []
    for dataset, arms in _DICE.items():
        for arm, values in arms.items():
            model, condition = arm.split(" · ")
            for k, v in enumerate(values):
                rows.append({"arm": arm, "model": model, "condition": condition,
                             "dataset": dataset, "subject_id": f"s{k}", "dice_mean_slice": v,
                             "dice_3d": v, "iou_mean_slice": v / (2 - v) if v == v else NAN,
                             "n_slices": 5})
    return pd.DataFrame(rows)


def make_friedman() -> pd.DataFrame:
    # KNEE_CUBE is missing on purpose; HIP was not run (NaN p)
    return pd.DataFrame([
        {"dataset": SPINE_T2, "n_subjects": 2, "n_arms": 3, "statistic": 4.0, "p_value": 0.01,
         "p_bh": 0.0123, "kendall_w": 1.0, "note": ""},
        {"dataset": KNEE_DESS, "n_subjects": 4, "n_arms": 2, "statistic": 12.0,
         "p_value": 1e-5, "p_bh": 2e-4, "kendall_w": 0.9, "note": ""},
        {"dataset": HIP, "n_subjects": 1, "n_arms": 3, "statistic": NAN, "p_value": NAN,
         "p_bh": NAN, "kendall_w": NAN, "note": "not run: needs >= 2 subjects, have 1"},
    ])


def _sample(dataset: str, n_labels: int, model: str = "LiteMedSAM", seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    gt = np.zeros((32, 32), dtype=np.int32)
    boxes = []
    for v in range(1, n_labels + 1):
        r0 = 2 + 7 * (v - 1)
        gt[r0:r0 + 5, 4:20] = v
        boxes.append([4, r0, 19, r0 + 4])
    pred = np.roll(gt, 1, axis=1)
    return {"dataset": dataset, "subject_id": f"s{seed}", "slice_index": 3, "model": model,
            "image": rng.integers(0, 256, (32, 32), dtype=np.uint8), "gt": gt, "pred": pred,
            "boxes": boxes, "label_names": {v: f"label{v}" for v in range(1, n_labels + 1)},
            "dice": 0.8766}


@pytest.fixture(autouse=True)
def _close_figures():
    apply_style()
    yield
    plt.close("all")


@pytest.fixture
def subjects() -> pd.DataFrame:
    return make_subjects()


# ------------------------------------------------------------------------------- helpers
def test_format_p():
    assert zs.format_p(0.0123) == "p=0.012"
    assert zs.format_p(0.5) == "p=0.500"
    assert zs.format_p(0.001) == "p=0.001"
    assert zs.format_p(0.000999) == "p<0.001"
    assert zs.format_p(NAN) == "n/a"
    assert zs.format_p(None) == "n/a"


def test_anatomy_of_catalog_and_fallback():
    assert anatomy_of(KNEE_DESS) == "knee"
    assert anatomy_of("Spine_2D_T1sag_Clinical_Anatomical_111") == "spine"
    assert anatomy_of("Shoulder_manifest_source") == "shoulder"


# ------------------------------------------------------------------------ panel (a): boxes
def _boxes(ax) -> list[PathPatch]:
    return [p for p in ax.patches if (p.get_gid() or "").startswith("box:")]


def test_boxplots_one_box_per_group_with_data(subjects):
    fig = zs.plot_dice_boxplots(subjects, make_friedman())
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    groups = subjects.dropna(subset=["dice_mean_slice"]).groupby(["dataset", "arm"]).ngroups
    assert groups == 10  # 12 groups in the table; KNEE_DESS x jittered is all NaN
    boxes = _boxes(ax)
    assert len(boxes) == groups
    assert f"box:{KNEE_DESS}:{ARMS[2]}" not in {b.get_gid() for b in boxes}
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "Knee DESS 86", "Knee CUBE 300", "Hip CUBE 42", "Spine T2ax 38"]
    assert ax.get_ylim() == pytest.approx((0.0, 1.05))
    # one point per non-missing subject value
    n_points = sum(len(c.get_offsets()) for c in ax.collections)
    assert n_points == subjects["dice_mean_slice"].notna().sum()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(ARMS)


def test_boxplots_p_annotations(subjects):
    ax = zs.plot_dice_boxplots(subjects, make_friedman()).axes[0]
    p_texts = {t.get_gid()[2:]: t.get_text() for t in ax.texts
               if (t.get_gid() or "").startswith("p:")}
    assert p_texts == {KNEE_DESS: "p<0.001", KNEE_CUBE: "n/a", HIP: "n/a", SPINE_T2: "p=0.012"}
    # placed over the dataset groups, in figure order
    xs = {t.get_gid()[2:]: t.get_position()[0] for t in ax.texts if t.get_gid()}
    assert [xs[d] for d in ORDER] == [0, 1, 2, 3]
    no_friedman = zs.plot_dice_boxplots(subjects).axes[0]
    assert {t.get_text() for t in no_friedman.texts if t.get_gid()} == {"n/a"}


def test_boxplots_single_arm_and_other_value(subjects):
    one = subjects[subjects["arm"] == ARMS[0]]
    ax = zs.plot_dice_boxplots(one, make_friedman()).axes[0]
    assert len(_boxes(ax)) == 4
    assert len(ax.get_legend().get_texts()) == 1
    ax3d = zs.plot_dice_boxplots(subjects, value_col="dice_3d").axes[0]
    assert len(_boxes(ax3d)) == 10
    assert ax3d.get_ylabel() == "3D Dice"


def test_boxplots_on_given_axes(subjects):
    fig, (a, b) = plt.subplots(1, 2)
    assert zs.plot_dice_boxplots(subjects, ax=a) is fig
    assert zs.plot_dice_variance(subjects, ax=b) is fig
    assert _boxes(a) and not _boxes(b)


def test_condition_panels_one_row_per_model_with_its_own_p(subjects):
    friedman = pd.concat([make_friedman().assign(analysis="prompt conditions · SAM ViT-B"),
                          make_friedman().assign(analysis="prompt conditions · LiteMedSAM", p_bh=0.5)])
    fig = zs.plot_condition_panels(subjects, friedman)
    axes = [a for a in fig.axes if (a.get_gid() or "").startswith("model:")]
    assert [a.get_gid() for a in axes] == ["model:LiteMedSAM", "model:SAM ViT-B"]
    sam = axes[1]
    p_texts = {t.get_gid()[2:]: t.get_text() for t in sam.texts if (t.get_gid() or "").startswith("p:")}
    assert p_texts[SPINE_T2] == "p=0.012" and p_texts[KNEE_DESS] == "p<0.001"
    lite = {t.get_gid()[2:]: t.get_text() for t in axes[0].texts if (t.get_gid() or "").startswith("p:")}
    assert lite[SPINE_T2] == "p=0.500"  # each model's own analysis, not another's
    # SAM: two conditions x datasets with data (jittered: spine and hip only)
    assert len(_boxes(sam)) == 2 * 4 - 2
    assert zs.plot_condition_panels(subjects.iloc[0:0]) is not None


# -------------------------------------------------------------------- panel (b): variance
def test_variance_table_matches_pandas(subjects):
    t = zs.dice_variance_table(subjects)
    assert list(t.columns) == ["dataset", "arm", "n_subjects", "mean", "sd", "variance"]
    assert len(t) == 11  # every (dataset, arm) pair present, even all-NaN ones
    assert t["dataset"].drop_duplicates().tolist() == ORDER
    grouped = subjects.groupby(["dataset", "arm"])["dice_mean_slice"]
    expected_var, expected_mean = grouped.var(ddof=1), grouped.mean()
    for row in t.itertuples():
        key = (row.dataset, row.arm)
        np.testing.assert_allclose(row.variance, expected_var[key], equal_nan=True)
        np.testing.assert_allclose(row.mean, expected_mean[key], equal_nan=True)
        np.testing.assert_allclose(row.sd, np.sqrt(expected_var[key]), equal_nan=True)
    t = t.set_index(["dataset", "arm"])
    assert t.loc[(SPINE_T2, ARMS[1]), "n_subjects"] == 2  # NaN dropped
    assert t.loc[(SPINE_T2, ARMS[1]), "variance"] == pytest.approx(np.var([0.5, 0.6], ddof=1))
    hip = t.loc[HIP]
    assert (hip["n_subjects"] == 1).all() and hip["variance"].isna().all()
    assert hip["mean"].tolist() == pytest.approx([0.92, 0.88, 0.8])
    assert t.loc[(KNEE_DESS, ARMS[2]), "n_subjects"] == 0


def test_variance_plot_bars(subjects):
    fig = zs.plot_dice_variance(subjects)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if (p.get_gid() or "").startswith("bar:")]
    table = zs.dice_variance_table(subjects)
    finite = table.dropna(subset=["variance"])
    assert len(bars) == len(finite) == 7
    heights = {b.get_gid(): b.get_height() for b in bars}
    for row in finite.itertuples():
        assert heights[f"bar:{row.dataset}:{row.arm}"] == pytest.approx(row.variance)
    assert not any(g.startswith(f"bar:{HIP}:") for g in heights)
    assert [t.get_gid() for t in ax.texts if t.get_gid()] == [f"na:{HIP}"]
    # the hip keeps its slot on the axis
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "Knee DESS 86", "Knee CUBE 300", "Hip CUBE 42", "Spine T2ax 38"]


# --------------------------------------------------------------------- panel (c): overlays
def test_pick_overlay_samples_one_per_anatomy_in_order():
    cands = [_sample(SPINE_T2, 2, seed=1), _sample(KNEE_CUBE, 2, seed=2),
             _sample(KNEE_DESS, 3, seed=3), _sample(HIP, 1, seed=4), _sample(SPINE_T2, 3, seed=5),
             _sample(KNEE_DESS, 2, seed=6)]
    picked = zs.pick_overlay_samples(cands)
    assert [s["dataset"] for s in picked] == [KNEE_DESS, HIP, SPINE_T2]
    assert [s["subject_id"] for s in picked] == ["s3", "s4", "s5"]  # most labels
    # tie on labels: the dataset first in dataset order (first appearance within knee) wins
    tie = [_sample(KNEE_CUBE, 2, seed=1), _sample(KNEE_DESS, 2, seed=2)]
    assert zs.pick_overlay_samples(tie)[0]["dataset"] == KNEE_CUBE
    assert len(zs.pick_overlay_samples(cands, per_anatomy=2)) == 2 + 1 + 2
    assert zs.pick_overlay_samples([]) == []


def test_overlay_panels_layout_boxes_and_colours():
    samples = [_sample(KNEE_DESS, 3, seed=0), _sample(HIP, 1, model="SAM ViT-B", seed=1)]
    fig = zs.plot_overlay_panels(samples)
    assert len(fig.axes) == 2 * 3
    assert [len(ax.images) for ax in fig.axes] == [1, 2, 2] * 2  # slice (+ label overlay)
    rects = [[p for p in ax.patches if isinstance(p, Rectangle)] for ax in fig.axes]
    assert [len(r) for r in rects] == [3, 0, 0, 1, 0, 0]
    first = rects[0][0]  # inclusive box [4, 2, 19, 6] drawn over the pixel edges
    assert (first.get_x(), first.get_y(), first.get_width(), first.get_height()) == (
        3.5, 1.5, 16, 5)
    assert fig.axes[0].get_ylabel() == "Knee DESS 86\nLiteMedSAM"
    assert fig.axes[3].get_ylabel() == "Hip CUBE 42\nSAM ViT-B"
    assert fig.axes[2].get_title() == "Prediction · Dice 0.877"
    # GT and prediction: same colour for the same label value, background transparent
    for row in range(2):
        gt_im, pred_im = fig.axes[3 * row + 1].images[1], fig.axes[3 * row + 2].images[1]
        assert np.ma.getmaskarray(gt_im.get_array())[0, 0]
        assert np.ma.getmaskarray(pred_im.get_array())[0, 0]
        for v in range(1, 4):
            assert gt_im.to_rgba(v) == pred_im.to_rgba(v)
    gt_knee = fig.axes[1].images[1]
    colours = {gt_knee.to_rgba(v) for v in (1, 2, 3)}
    assert len(colours) == 3
    # label 1 has the same colour in every row
    assert fig.axes[1].images[1].to_rgba(1) == fig.axes[4].images[1].to_rgba(1)


def test_overlay_panels_picks_when_too_many_and_empty():
    many = [_sample(KNEE_DESS, 1, seed=k) for k in range(4)] + [_sample(HIP, 1, seed=9)]
    fig = zs.plot_overlay_panels(many, max_rows=3)
    assert len(fig.axes) == 2 * 3  # knee and hip, one each
    nan_dice = dict(_sample(HIP, 1), dice=NAN)
    assert zs.plot_overlay_panels([nan_dice]).axes[2].get_title() == "Prediction · Dice n/a"
    assert zs.plot_overlay_panels([]) is not None


def test_notebook_02_has_one_parameters_cell_and_the_result_names():
    import ast
    from pathlib import Path

    import nbformat

    root = Path(__file__).resolve().parent.parent
    path = root / "notebooks" / "02_zero_shot_baselines.ipynb"
    nb = nbformat.read(path, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code_cells)
    tagged = [c for c in code_cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "params = None" in tagged[0].source
    for c in code_cells:
        ast.parse(c.source)
    text = "\n".join(c.source for c in code_cells)
    for name in ("fig3a_zero_shot_dice", "fig3b_zero_shot_variance", "fig3c_zero_shot_overlays",
                 "tableS3_zero_shot_dice", "tableS4_friedman", "tableS5_wilcoxon",
                 "tableX02a_zero_shot_label_dice", "tableX02b_zero_shot_tissue_dice", "tableX02c_models_run",
                 "tableX02d_zero_shot_dice_all_arms", "tableX02e_friedman_extra", "tableX02f_wilcoxon_extra",
                 "figX02a_zero_shot_dice_by_condition"):
        assert f'"{name}"' in text
    # extra series only: no study number with another meaning
    assert "tableS5b" not in text and "tableS5c" not in text and "tableS5d" not in text
