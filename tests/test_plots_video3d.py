"""Figures of notebook 07 (SAM2 video propagation through 3D volumes) on small hand-made tables
and stacks: drawn artists are counted and their data checked against the values they show."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import re  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mskseg_lib.plots import video3d as v3  # noqa: E402
from mskseg_lib.plots.style import apply_style  # noqa: E402
from mskseg_lib.plots.zero_shot import label_cmap  # noqa: E402

NAN = np.nan
KNEE = "Knee_3D_DESS_Research_Anatomical_86"
SPINE = "Spine_2D_T2ax_Clinical_Anatomical_38"
SLICE_COLUMNS = ["model", "model_key", "scheme", "dataset", "subject_id", "structure", "label",
                 "slice_index", "offset", "dice", "gt_px", "pred_px"]
STRUCTURE_COLUMNS = ["model", "model_key", "scheme", "dataset", "subject_id", "structure", "label",
                     "dice", "gt_volume_cm3", "pred_volume_cm3", "prompt_slice", "seconds", "n_params"]
COMBOS = (("SAM2 tiny", "point_video"), ("SAM2 tiny", "points_neg_video"),
          ("LiteMedSAM", "box_carry"))


@pytest.fixture(autouse=True)
def _close_figures():
    apply_style()
    yield
    plt.close("all")


def make_slices(seed: int = 3) -> pd.DataFrame:
    """Spine first on purpose (panels are in anatomy order: knee, then spine). Three subjects x
    two structures, offsets -4..4 around prompted slice 10; Dice falls off with |offset|, more
    for the carried box. A few NaN Dice rows must be ignored."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in (SPINE, KNEE):
        for model, scheme in COMBOS:
            drop = {"point_video": 0.05, "points_neg_video": 0.02, "box_carry": 0.12}[scheme]
            for subject in ("s01", "s02", "s03"):
                for label, structure in ((1, "femur"), (2, "tibia")):
                    for offset in range(-4, 5):
                        dice = float(np.clip(0.92 - drop * abs(offset) + rng.normal(0, 0.03), 0, 1))
                        rows.append({"model": model, "model_key": model.lower().replace(" ", "_"),
                                     "scheme": scheme, "dataset": dataset, "subject_id": subject,
                                     "structure": structure, "label": label, "slice_index": 10 + offset,
                                     "offset": offset, "dice": round(dice, 4), "gt_px": 100,
                                     "pred_px": 90})
    df = pd.DataFrame(rows, columns=SLICE_COLUMNS)
    nan_rows = df.sample(7, random_state=seed).index
    df.loc[nan_rows, "dice"] = NAN
    return df


def _lines(ax, prefix: str) -> dict:
    return {ln.get_gid(): ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith(prefix)}


def _collections(ax, prefix: str) -> dict:
    return {c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith(prefix)}


def _quantiles(df: pd.DataFrame, dataset: str, model: str, scheme: str) -> pd.DataFrame:
    sel = (df["dataset"] == dataset) & (df["model"] == model) & (df["scheme"] == scheme)
    rows = df[sel].dropna(subset=["dice"])
    out = {}
    for offset, g in rows.groupby("offset"):
        out[offset] = np.percentile(g["dice"].to_numpy(), [25, 50, 75])
    return pd.DataFrame(out, index=["q25", "q50", "q75"]).T.sort_index()


# --------------------------------------------------------------------- Dice vs offset
def test_dice_vs_offset_one_panel_per_dataset_in_anatomy_order():
    fig = v3.plot_dice_vs_offset(make_slices(), title="SAM2 propagation")
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["Knee DESS 86", "Spine T2ax 38"]
    for ax in fig.axes:
        assert ax.get_ylim() == pytest.approx((0.0, 1.02))
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    assert fig.get_suptitle() == "SAM2 propagation"


def test_dice_vs_offset_median_line_and_iqr_band_match_the_data():
    slices = make_slices()
    fig = v3.plot_dice_vs_offset(slices)
    for ax, dataset in zip(fig.axes, (KNEE, SPINE)):
        medians, bands = _lines(ax, "median:"), _collections(ax, "iqr:")
        expected = {f"{dataset}:{m}:{s}" for m, s in COMBOS}
        assert set(medians) == {f"median:{k}" for k in expected}
        assert set(bands) == {f"iqr:{k}" for k in expected}
        for model, scheme in COMBOS:
            q = _quantiles(slices, dataset, model, scheme)
            x, y = medians[f"median:{dataset}:{model}:{scheme}"].get_data()
            np.testing.assert_array_equal(x, q.index.to_numpy(dtype=float))
            np.testing.assert_allclose(y, q["q50"].to_numpy())
            # the band's outline passes through the quartiles at every offset
            xy = bands[f"iqr:{dataset}:{model}:{scheme}"].get_paths()[0].vertices
            for offset, (q25, _, q75) in q.iterrows():
                at = xy[np.isclose(xy[:, 0], offset), 1]
                assert at.min() == pytest.approx(q25) and at.max() == pytest.approx(q75)
            color = to_rgba(v3.SCHEME_COLORS[scheme])
            line = medians[f"median:{dataset}:{model}:{scheme}"]
            assert to_rgba(line.get_color()) == pytest.approx(color)


def test_dice_vs_offset_ignores_nan_and_hand_computed_medians():
    # two subjects x one structure, offsets -1..1, one NaN at offset 1
    rows = [("a", -1, 0.5), ("b", -1, 0.7), ("a", 0, 1.0), ("b", 0, 0.8), ("a", 1, 0.3), ("b", 1, NAN)]
    df = pd.DataFrame([{"model": "LiteMedSAM", "model_key": "litemedsam", "scheme": "box_carry",
                        "dataset": KNEE, "subject_id": s, "structure": "femur", "label": 1,
                        "slice_index": 5 + o, "offset": o, "dice": d, "gt_px": 1, "pred_px": 1}
                       for s, o, d in rows])
    fig = v3.plot_dice_vs_offset(df)
    (line,) = _lines(fig.axes[0], "median:").values()
    x, y = line.get_data()
    assert list(x) == [-1, 0, 1]
    assert y == pytest.approx([0.6, 0.9, 0.3])


def test_dice_vs_offset_labels_legend_and_prompted_slice_line():
    fig = v3.plot_dice_vs_offset(make_slices())
    ax = fig.axes[0]
    for model, scheme in COMBOS:
        label = _lines(ax, "median:")[f"median:{KNEE}:{model}:{scheme}"].get_label()
        assert model in label and v3.SCHEME_LABELS[scheme] in label
        assert label == f"{model} · {v3.SCHEME_LABELS[scheme]}"
    (vline,) = _lines(ax, "prompted_slice").values()
    assert list(vline.get_xdata()) == [0, 0]
    assert vline.get_linestyle() == "--"
    assert vline.get_label() == "prompted slice"
    assert len(fig.legends) == 1 and all(a.get_legend() is None for a in fig.axes)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    # scheme order of SCHEME_LABELS, then the prompted slice
    assert texts == ["SAM2 tiny · 1 point + video", "SAM2 tiny · points + negatives + video",
                     "LiteMedSAM · box carried slice to slice", "prompted slice"]
    # the legend sits below the panels, not on them
    fig.canvas.draw()
    legend_box = fig.legends[0].get_window_extent()
    assert all(legend_box.y1 <= a.get_window_extent().y0 + 1 for a in fig.axes)


def test_dice_vs_offset_max_offset_drops_points():
    slices = make_slices()
    fig = v3.plot_dice_vs_offset(slices, max_offset=2)
    for ax, dataset in zip(fig.axes, (KNEE, SPINE)):
        for gid, line in _lines(ax, "median:").items():
            x, y = line.get_data()
            assert list(x) == [-2, -1, 0, 1, 2]
            _, _, model, scheme = gid.split(":")
            q = _quantiles(slices, dataset, model, scheme).loc[-2:2]
            np.testing.assert_allclose(y, q["q50"].to_numpy())
        for band in _collections(ax, "iqr:").values():
            xs = band.get_paths()[0].vertices[:, 0]
            assert xs.min() >= -2 and xs.max() <= 2
    assert max(abs(x) for x in fig.axes[0].get_xlim()) < 3


def test_dice_vs_offset_unknown_scheme_keeps_its_key():
    slices = make_slices()
    slices.loc[slices["scheme"] == "box_carry", "scheme"] = "my_scheme"
    assert v3.scheme_label("my_scheme") == "my_scheme"
    fig = v3.plot_dice_vs_offset(slices)
    labels = {ln.get_label() for ln in _lines(fig.axes[0], "median:").values()}
    assert "LiteMedSAM · my_scheme" in labels


def test_dice_vs_offset_empty_all_nan_and_bad_input():
    for df in (pd.DataFrame(columns=SLICE_COLUMNS), make_slices().assign(dice=NAN),
               make_slices().assign(offset=100)):
        fig = v3.plot_dice_vs_offset(df, max_offset=10)
        (ax,) = fig.axes
        assert [t.get_text() for t in ax.texts] == ["no slices scored"]
    assert [t.get_text() for t in v3.plot_dice_vs_offset(pd.DataFrame()).axes[0].texts] == \
        ["no slices scored"]
    with pytest.raises(ValueError, match="slices: missing column 'offset'"):
        v3.plot_dice_vs_offset(make_slices().drop(columns="offset"))


# ------------------------------------------------------------------- 3D Dice per scheme
def make_structures() -> pd.DataFrame:
    """Per dataset 4 subjects; SAM2 runs the video schemes, LiteMedSAM the per-slice and carry
    ones (inserted in a scrambled scheme order). Per-structure rows must not be drawn."""
    rows = []
    values = {("SAM2 tiny", "points_neg_video"): [0.90, 0.92, 0.88, 0.95],
              ("SAM2 tiny", "point_video"): [0.80, 0.70, NAN, 0.85],
              ("LiteMedSAM", "box_carry"): [0.60, 0.65, 0.62, 0.70],
              ("LiteMedSAM", "boxes_per_slice"): [0.75, 0.78, 0.74, 0.79]}
    for dataset, shift in ((SPINE, -0.1), (KNEE, 0.0)):
        for (model, scheme), dices in values.items():
            for k, d in enumerate(dices):
                base = {"model": model, "model_key": model.lower(), "scheme": scheme,
                        "dataset": dataset, "subject_id": f"s{k:02d}", "gt_volume_cm3": 10.0,
                        "pred_volume_cm3": 9.0, "prompt_slice": 20, "seconds": 3.5,
                        "n_params": 1000}
                rows.append({**base, "structure": "combined", "label": 0, "dice": d + shift})
                rows.append({**base, "structure": "femur", "label": 1, "dice": 0.01})
    return pd.DataFrame(rows, columns=STRUCTURE_COLUMNS)


def test_scheme_dice_panels_ticks_points_and_medians():
    structures = make_structures()
    fig = v3.plot_scheme_dice(structures)
    assert [ax.get_title() for ax in fig.axes] == ["Knee DESS 86", "Spine T2ax 38"]
    schemes = ["boxes_per_slice", "point_video", "points_neg_video", "box_carry"]  # SCHEME_LABELS order
    models = ["SAM2 tiny", "LiteMedSAM"]  # first appearance
    for ax, dataset in zip(fig.axes, (KNEE, SPINE)):
        ticks = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
        assert ticks == [v3.SCHEME_LABELS[s] for s in schemes]
        assert ax.get_ylim() == pytest.approx((0.0, 1.02))
        points, medians = _collections(ax, "subjects:"), _lines(ax, "median:")
        assert len(points) == len(medians) == 4
        for gid, coll in points.items():
            _, _, model, scheme = gid.split(":")
            sel = ((structures["dataset"] == dataset) & (structures["model"] == model)
                   & (structures["scheme"] == scheme) & (structures["structure"] == "combined"))
            expected = structures.loc[sel, "dice"].dropna().to_numpy()
            offsets = np.asarray(coll.get_offsets())
            np.testing.assert_allclose(np.sort(offsets[:, 1]), np.sort(expected))
            centre = schemes.index(scheme) + (models.index(model) - 0.5) * 0.4  # dodge, 2 models
            assert np.all(np.abs(offsets[:, 0] - centre) <= 0.1)
            _, y = medians[f"median:{dataset}:{model}:{scheme}"].get_data()
            assert y == pytest.approx([np.median(expected)] * 2)
        assert ax.get_ylabel() in ("", "3D Dice (combined)")
    # only combined rows are drawn: 4 groups x 4 subjects - 1 NaN, per panel
    assert all(sum(len(c.get_offsets()) for c in _collections(ax, "subjects:").values()) == 15
               for ax in fig.axes)
    assert not any(_lines(ax, "anchor") for ax in fig.axes)


def test_scheme_dice_anchor_line_and_legend():
    label = "published: 0.9196 (points + negatives + video, OAI-ZIB)"
    fig = v3.plot_scheme_dice(make_structures(), anchor=0.9196, anchor_label=label, title="3D Dice")
    for ax in fig.axes:
        (line,) = _lines(ax, "anchor").values()
        assert list(line.get_ydata()) == pytest.approx([0.9196, 0.9196])
        assert line.get_linestyle() == ":"
        assert line.get_label() == label
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["SAM2 tiny", "LiteMedSAM", "median", label]
    assert fig.get_suptitle() == "3D Dice"
    knee_only = v3.plot_scheme_dice(make_structures(), anchor=0.9196, anchor_label=label, anchor_anatomy="knee")
    drawn = {ax.get_title(): len(_lines(ax, "anchor")) for ax in knee_only.axes}
    assert sorted(drawn.values()) == [0, 1]  # the spine panel has no knee anchor
    plt.close(knee_only)


def test_scheme_dice_empty_inputs():
    for df in (pd.DataFrame(columns=STRUCTURE_COLUMNS),
               make_structures().query("structure != 'combined'"),
               make_structures().assign(dice=NAN)):
        (ax,) = v3.plot_scheme_dice(df, anchor=0.9).axes
        assert [t.get_text() for t in ax.texts] == ["no volumes scored"]
    with pytest.raises(ValueError, match="structures: missing column 'structure'"):
        v3.plot_scheme_dice(make_structures().drop(columns="structure"))


# ------------------------------------------------------------------------ example slices
def make_volume(n: int = 12, size: int = 32):
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (n, size, size)).astype(np.float32)
    image[0, 0, 0], image[-1, 0, 0] = -50.0, 400.0  # one intensity scale for the stack
    gt = np.zeros((n, size, size), dtype=np.uint8)
    gt[:, 4:12, 4:20] = 1
    gt[2:10, 18:28, 10:22] = 2
    pred = gt.copy()
    pred[:, 4:12, 4:20][pred[:, 4:12, 4:20] == 1] = 0
    pred[:, 5:13, 4:20] = 1  # one row too low
    pred[pred == 2] = 0
    pred[5:8, 18:28, 10:22] = 2  # label 2 only near the prompted slice
    return image, gt, pred


def test_example_slices_panels_titles_and_prompted_mark():
    image, gt, pred = make_volume()
    offsets = [-6, -2, 0, 2, 5, 9, -20]  # prompted slice 6: slices 0, 4, 6, 8, 11 exist
    fig = v3.plot_example_slices(image, gt, pred, 6, offsets, label_names={1: "femur", 2: "tibia"},
                                 title="subject s01")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 5
    titles = [ax.get_title() for ax in panels]
    assert titles == ["offset -6 (slice 0)", "offset -2 (slice 4)", "offset 0 (slice 6), prompted",
                      "offset +2 (slice 8)", "offset +5 (slice 11)"]
    assert not any(re.search(r"\+9|-20", t) for t in titles)
    prompted = panels[2]
    assert to_rgba(prompted.spines["left"].get_edgecolor()) == pytest.approx(to_rgba(v3.PROMPTED_COLOR))
    for ax, s in zip(panels, (0, 4, 6, 8, 11)):
        (im,) = ax.images
        np.testing.assert_array_equal(im.get_array(), image[s])
        assert im.origin == "upper"
        assert im.get_clim() == pytest.approx((-50.0, 400.0))
    assert fig.get_suptitle() == "subject s01"


def test_example_slices_contours_solid_manual_dashed_predicted():
    image, gt, pred = make_volume()
    fig = v3.plot_example_slices(image, gt, pred, 6, [-3, 0], label_names={1: "femur", 2: "tibia"})
    first, prompted = [ax for ax in fig.axes if ax.images]
    cmap, norm = label_cmap(2)
    assert set(_lines(first, "gt_contour:")) == {"gt_contour:1", "gt_contour:2"}
    assert set(_lines(first, "pred_contour:")) == {"pred_contour:1"}  # label 2 not predicted on slice 3
    assert set(_lines(prompted, "pred_contour:")) == {"pred_contour:1", "pred_contour:2"}
    for gid, line in {**_lines(prompted, "gt_contour:"), **_lines(prompted, "pred_contour:")}.items():
        assert line.get_linestyle() == ("-" if gid.startswith("gt") else "--")
        assert to_rgba(line.get_color()) == pytest.approx(cmap(norm(int(gid.split(":")[1]))))
    # predicted label 1 sits one row lower than the manual one
    _, y_gt = _lines(prompted, "gt_contour:")["gt_contour:1"].get_data()
    _, y_pred = _lines(prompted, "pred_contour:")["pred_contour:1"].get_data()
    assert y_pred.max() == pytest.approx(y_gt.max() + 1)
    # slice Dice: label 1 overlaps 7 of 8 rows, label 2 exact on slice 6, missed on slice 3
    dice_texts = [next(t.get_text() for t in ax.texts if t.get_gid() == "slice_dice")
                  for ax in (first, prompted)]
    assert dice_texts == [f"Dice {(7 / 8 + 0.0) / 2:.2f}", f"Dice {(7 / 8 + 1.0) / 2:.2f}"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["manual (solid)", "predicted (dashed)", "femur", "tibia"]


def test_example_slices_shape_mismatch_and_nothing_to_show():
    image, gt, pred = make_volume()
    with pytest.raises(ValueError, match=re.escape("(12, 32, 32)") + ".*" + re.escape("(11, 32, 32)")):
        v3.plot_example_slices(image, gt, pred[:-1], 6, [0])
    with pytest.raises(ValueError, match=re.escape("(32, 32)")):
        v3.plot_example_slices(image[0], gt[0], pred[0], 0, [0])
    fig = v3.plot_example_slices(image, gt, pred, 6, [-10, 10])
    (ax,) = fig.axes
    assert ax.texts[0].get_text().startswith("no slice")
