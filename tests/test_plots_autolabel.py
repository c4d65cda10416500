"""Figure 6 (AutoLabel: ground-truth vs detector box prompts) on small hand-made inputs: drawn
artists are counted and their data checked against the values they show."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mskseg_lib.plots import autolabel as al  # noqa: E402
from mskseg_lib.plots.style import apply_style  # noqa: E402
from mskseg_lib.plots.zero_shot import format_p, label_cmap  # noqa: E402
from mskseg_lib.stats.comparisons import ranksum_by_group  # noqa: E402

NAN = np.nan
KNEE = "Knee_3D_DESS_Research_Anatomical_86"
SPINE = "Spine_2D_T2ax_Clinical_Anatomical_38"
MODELS = ("LiteMedSAM", "SAM ViT-B", "MedSAM")


@pytest.fixture(autouse=True)
def _close_figures():
    apply_style()
    yield
    plt.close("all")


def make_subjects() -> pd.DataFrame:
    """Spine comes first on purpose (the figure orders by anatomy: knee, then spine).

    Knee / SAM ViT-B / detector: one finite value (no cloud: ptitprince's single-observation
    path is avoided) and 7 NaN. Knee / MedSAM / detector: all NaN (nothing but a NaN note).
    Spine / MedSAM / gt_box: constant 0.9 (no cloud).
    """
    rng = np.random.default_rng(7)
    rows = []

    def add(dataset, model, prompt, values):
        rows.extend({"dataset": dataset, "subject_id": f"s{k:02d}", "model": model, "prompt": prompt,
                     "dice": v} for k, v in enumerate(values))

    for dataset in (SPINE, KNEE):
        for model in MODELS:
            add(dataset, model, "gt_box", rng.uniform(0.7, 0.95, 8).round(4))
            add(dataset, model, "detector", rng.uniform(0.5, 0.8, 8).round(4))
    df = pd.DataFrame(rows)
    knee_det = (df["dataset"] == KNEE) & (df["prompt"] == "detector")
    df.loc[knee_det & (df["model"] == "SAM ViT-B") & (df["subject_id"] != "s00"), "dice"] = NAN
    df.loc[knee_det & (df["model"] == "MedSAM"), "dice"] = NAN
    df.loc[knee_det & (df["model"] == "LiteMedSAM") & (df["subject_id"] == "s03"), "dice"] = NAN
    spine_medsam_gt = (df["dataset"] == SPINE) & (df["model"] == "MedSAM") & (df["prompt"] == "gt_box")
    df.loc[spine_medsam_gt, "dice"] = 0.9
    # a third condition is not part of the figure
    extra = df[df["prompt"] == "gt_box"].assign(prompt="jittered", dice=0.1)
    return pd.concat([df, extra], ignore_index=True)


def _by_gid(ax, prefix: str) -> dict:
    out = {}
    for a in [*ax.collections, *ax.patches, *ax.texts, *ax.lines]:
        gid = a.get_gid() or ""
        if gid.startswith(prefix):
            out.setdefault(gid, []).append(a)
    return out


def _panel(fig: Figure, title: str):
    return next(ax for ax in fig.axes if ax.get_title() == title)


def _finite(df: pd.DataFrame, dataset: str, model: str, prompt: str) -> np.ndarray:
    sel = (df["dataset"] == dataset) & (df["model"] == model) & (df["prompt"] == prompt)
    v = df.loc[sel, "dice"].to_numpy(dtype=float)
    return v[np.isfinite(v)]


# ------------------------------------------------------------------------ figure 6a
def test_figure6a_panels_in_anatomy_order_with_one_shared_legend():
    subjects = make_subjects()
    fig = al.plot_figure6a(subjects)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes if ax.axison] == ["Knee DESS 86", "Spine T2ax 38"]
    for ax in fig.axes:
        assert ax.get_legend() is None  # ptitprince's per-axes hue legend is removed
        assert [t.get_text() for t in ax.get_xticklabels()] == list(MODELS)
        # a stray single-observation line of ptitprince would stretch the Dice axis
        assert ax.get_ylim() == pytest.approx((0.0, 1.05))
        assert ax.get_xlim() == pytest.approx((-0.6, 2.6))
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ground-truth boxes", "detector boxes"]


def test_figure6a_one_rain_point_per_finite_value():
    subjects = make_subjects()
    fig = al.plot_figure6a(subjects)
    total = 0
    for dataset, title in ((KNEE, "Knee DESS 86"), (SPINE, "Spine T2ax 38")):
        ax = _panel(fig, title)
        rain = _by_gid(ax, "rain:")
        for i, model in enumerate(MODELS):
            for prompt, move in (("gt_box", -al.RAIN_MOVE), ("detector", al.RAIN_MOVE)):
                values = _finite(subjects, dataset, model, prompt)
                gid = f"rain:{dataset}:{model}:{prompt}"
                if values.size == 0:
                    assert gid not in rain
                    continue
                offsets = np.concatenate([np.asarray(c.get_offsets()) for c in rain[gid]])
                np.testing.assert_allclose(np.sort(offsets[:, 1]), np.sort(values))
                assert np.all(np.abs(offsets[:, 0] - (i + move)) <= al.RAIN_JITTER + 1e-9)
                total += len(offsets)
    finite = subjects[subjects["prompt"] != "jittered"]["dice"].notna().sum()
    assert total == finite == 2 * 3 * 16 - 7 - 8 - 1


def test_figure6a_clouds_face_each_other_and_span_the_data():
    subjects = make_subjects()
    fig = al.plot_figure6a(subjects)
    knee, spine = _panel(fig, "Knee DESS 86"), _panel(fig, "Spine T2ax 38")
    clouds = {**_by_gid(knee, "cloud:"), **_by_gid(spine, "cloud:")}
    expected = {f"cloud:{d}:{m}:{p}" for d in (KNEE, SPINE) for m in MODELS for p in ("gt_box", "detector")}
    # no cloud for one finite value, for no finite value, or for a constant
    expected -= {f"cloud:{KNEE}:SAM ViT-B:detector", f"cloud:{KNEE}:MedSAM:detector",
                 f"cloud:{SPINE}:MedSAM:gt_box"}
    assert set(clouds) == expected
    for gid, (coll,) in clouds.items():
        _, dataset, model, prompt = gid.split(":")
        i = MODELS.index(model)
        xy = np.concatenate([p.vertices for p in coll.get_paths()])
        if prompt == "gt_box":  # left half of the split violin
            assert xy[:, 0].max() == pytest.approx(i)
            assert xy[:, 0].min() >= i - al.CLOUD_WIDTH / 2 - 1e-9
        else:
            assert xy[:, 0].min() == pytest.approx(i)
            assert xy[:, 0].max() <= i + al.CLOUD_WIDTH / 2 + 1e-9
        values = _finite(subjects, dataset, model, prompt)
        assert (xy[:, 1].min(), xy[:, 1].max()) == pytest.approx((values.min(), values.max()))  # cut=0
        assert to_rgba(coll.get_facecolor()[0], 1.0) == pytest.approx(to_rgba(al.CONDITION_COLORS[prompt]))


def test_figure6a_boxes_show_the_quartiles():
    subjects = make_subjects()
    fig = al.plot_figure6a(subjects)
    ax = _panel(fig, "Knee DESS 86")
    boxes = _by_gid(ax, "box:")
    assert len(boxes) == 5  # 6 groups, Knee / MedSAM / detector has no finite value
    for gid, (box,) in boxes.items():
        _, dataset, model, prompt = gid.split(":")
        values = _finite(subjects, dataset, model, prompt)
        y = box.get_path().vertices[:, 1]
        assert (y.min(), y.max()) == pytest.approx(tuple(np.percentile(values, [25, 75])))
        x = box.get_path().vertices[:, 0]
        move = -al.RAIN_MOVE if prompt == "gt_box" else al.RAIN_MOVE
        assert (x.min() + x.max()) / 2 == pytest.approx(MODELS.index(model) + move)
        assert x.max() - x.min() == pytest.approx(al.BOX_WIDTH)


def test_figure6a_nan_counts_and_p_values_from_ranksum():
    subjects = make_subjects()
    tests = ranksum_by_group(subjects)
    fig = al.plot_figure6a(subjects, tests)
    knee = _panel(fig, "Knee DESS 86")
    nan_texts = {g: a[0].get_text() for g, a in _by_gid(knee, "nan:").items()}
    assert nan_texts == {f"nan:{KNEE}:SAM ViT-B:detector": "7 NaN", f"nan:{KNEE}:MedSAM:detector": "8 NaN",
                         f"nan:{KNEE}:LiteMedSAM:detector": "1 NaN"}
    assert _by_gid(_panel(fig, "Spine T2ax 38"), "nan:") == {}
    p_bh = tests.set_index(["dataset", "model"])["p_bh"]
    for dataset, title in ((KNEE, "Knee DESS 86"), (SPINE, "Spine T2ax 38")):
        ax = _panel(fig, title)
        p_texts = {g: a[0] for g, a in _by_gid(ax, "p:").items()}
        assert set(p_texts) == {f"p:{dataset}:{m}" for m in MODELS}
        for i, model in enumerate(MODELS):
            text = p_texts[f"p:{dataset}:{model}"]
            assert text.get_text() == format_p(p_bh[(dataset, model)])
            assert text.get_position()[0] == i
    # the two knee models without a test (n_b < 2) read n/a; the others ran
    assert _by_gid(knee, f"p:{KNEE}:MedSAM")[f"p:{KNEE}:MedSAM"][0].get_text() == "n/a"
    assert _by_gid(knee, f"p:{KNEE}:SAM ViT-B")[f"p:{KNEE}:SAM ViT-B"][0].get_text() == "n/a"
    assert _by_gid(knee, f"p:{KNEE}:LiteMedSAM")[f"p:{KNEE}:LiteMedSAM"][0].get_text().startswith("p")
    # a model missing from the tests table reads n/a; no tests -> no p annotations at all
    fig2 = al.plot_figure6a(subjects, tests[tests["model"] != "LiteMedSAM"])
    assert _by_gid(fig2.axes[0], f"p:{KNEE}:LiteMedSAM")[f"p:{KNEE}:LiteMedSAM"][0].get_text() == "n/a"
    assert all(_by_gid(ax, "p:") == {} for ax in al.plot_figure6a(subjects).axes)


def test_figure6a_uses_ptitprince_and_is_reproducible(monkeypatch):
    import ptitprince

    calls = []
    for name in ("half_violinplot", "stripplot"):
        original = getattr(ptitprince, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(ptitprince, name, spy)
    subjects = make_subjects()
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    first = al.plot_figure6a(subjects)
    assert np.array_equal(np.random.get_state()[1], state)  # caller's global RNG left alone
    assert calls.count("half_violinplot") == 2  # one per panel
    assert calls.count("stripplot") == 4  # per panel and condition with finite values
    second = al.plot_figure6a(subjects)
    for a, b in zip(first.axes, second.axes):
        for ca, cb in zip(a.collections, b.collections):
            if hasattr(ca, "get_offsets"):
                np.testing.assert_array_equal(np.asarray(ca.get_offsets()), np.asarray(cb.get_offsets()))


def test_figure6a_empty_and_all_nan_and_bad_input():
    empty = al.plot_figure6a(pd.DataFrame(columns=["dataset", "subject_id", "model", "prompt", "dice"]))
    (ax,) = empty.axes
    assert [t.get_text() for t in ax.texts] == ["no subject dice values for gt_box / detector"]
    all_nan = make_subjects().assign(dice=NAN)
    fig = al.plot_figure6a(all_nan)
    assert [ax.texts[0].get_text() for ax in fig.axes if ax.axison] == ["no finite dice values"] * 2
    with pytest.raises(ValueError, match="missing column 'prompt'"):
        al.plot_figure6a(make_subjects().drop(columns="prompt"))
    with pytest.raises(ValueError, match="exactly two conditions"):
        al.plot_figure6a(make_subjects(), conditions=("gt_box", "detector", "jittered"))
    with pytest.raises(ValueError, match="tests: missing column 'p_bh'"):
        al.plot_figure6a(make_subjects(), pd.DataFrame({"dataset": [KNEE], "model": ["MedSAM"]}))


# ------------------------------------------------------------------------ figure 6b
def make_sample(seed: int = 0, n_boxes: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    gt = np.zeros((40, 40), dtype=np.int32)
    gt[2:7, 4:20] = 1  # rows 2..6, cols 4..19
    gt[10:20, 5:15] = 2
    gt[30:40, 30:40] = 3  # touches the border
    pred = gt.copy()
    pred[pred == 3] = 0
    pred[11:21, 5:15][gt[11:21, 5:15] == 0] = 2
    boxes = np.array([[4, 2, 19, 6], [5, 10, 14, 19], [30, 30, 39, 39]])[:n_boxes]
    return {"image": rng.integers(0, 256, (40, 40), dtype=np.uint8), "gt": gt, "pred": pred,
            "det_boxes": boxes, "det_labels": np.array([1, 2, 3])[:n_boxes],
            "title": f"{KNEE} / s{seed:02d} / 12 / LiteMedSAM, Dice 0.83",
            "label_names": {1: "femoral cartilage", 2: "femur", 3: "tibia"}}


def test_figure6b_rows_columns_and_boxes():
    samples = [make_sample(i, n_boxes=1 + i % 3) for i in range(7)]
    fig = al.plot_figure6b(samples, max_rows=5)
    assert len(fig.axes) == 5 * 5
    grid = np.array(fig.axes).reshape(5, 5)
    assert [ax.get_title() for ax in grid[0]] == ["Detector boxes", "Ground truth", "Prediction",
                                                 "Ground-truth contours", "Predicted contours"]
    cmap, norm = label_cmap(3)
    for r in range(5):
        boxes = [p for p in grid[r, 0].patches if p.get_gid() == "det_box"]
        assert len(boxes) == len(samples[r]["det_boxes"])
        for rect, box, label in zip(boxes, samples[r]["det_boxes"], samples[r]["det_labels"]):
            x0, y0, x1, y1 = box  # inclusive pixel indices -> pixel edges
            assert rect.get_xy() == pytest.approx((x0 - 0.5, y0 - 0.5))
            assert (rect.get_width(), rect.get_height()) == (x1 - x0 + 1, y1 - y0 + 1)
            assert rect.get_edgecolor() == pytest.approx(cmap(norm(label)))
        assert all(p.get_gid() != "det_box" for ax in grid[r, 1:] for p in ax.patches)
        assert grid[r, 0].get_ylabel().replace("\n", " ") == samples[r]["title"]
    total = sum(p.get_gid() == "det_box" for ax in fig.axes for p in ax.patches)
    assert total == sum(len(s["det_boxes"]) for s in samples[:5]) == 1 + 2 + 3 + 1 + 2
    assert len(al.plot_figure6b(samples[:2]).axes) == 2 * 5


def test_figure6b_overlays_equal_the_masks():
    sample = make_sample()
    fig = al.plot_figure6b([sample])
    axs = fig.axes
    for ax, key in ((axs[1], "gt"), (axs[2], "pred")):
        (overlay,) = [im for im in ax.images if im.get_gid() == f"{key}_overlay"]
        data = overlay.get_array()
        np.testing.assert_array_equal(np.ma.getmaskarray(data), sample[key] <= 0)
        np.testing.assert_array_equal(data.filled(0), sample[key])
        (image,) = [im for im in ax.images if im.get_gid() == "image"]
        np.testing.assert_array_equal(image.get_array(), sample["image"])


def test_figure6b_contours_per_label_present():
    sample = make_sample()
    fig = al.plot_figure6b([sample])
    gt_ax, pred_ax = fig.axes[3], fig.axes[4]
    gt_lines = _by_gid(gt_ax, "gt_contour:")
    pred_lines = _by_gid(pred_ax, "pred_contour:")
    assert set(gt_lines) == {"gt_contour:1", "gt_contour:2", "gt_contour:3"}
    assert set(pred_lines) == {"pred_contour:1", "pred_contour:2"}  # label 3 was not predicted
    assert all(len(v) == 1 for v in [*gt_lines.values(), *pred_lines.values()])  # one piece each
    # label 1 covers rows 2..6, cols 4..19: its contour runs half a pixel outside
    x, y = gt_lines["gt_contour:1"][0].get_data()
    assert (x.min(), x.max(), y.min(), y.max()) == pytest.approx((3.5, 19.5, 1.5, 6.5))
    # label 3 touches the image border and still gets a closed contour on the border
    x, y = gt_lines["gt_contour:3"][0].get_data()
    assert (x.max(), y.max()) == pytest.approx((39.5, 39.5))
    assert (x[0], y[0]) == pytest.approx((x[-1], y[-1]))
    # predicted label 2 reaches one row lower than the truth
    _, y_pred = pred_lines["pred_contour:2"][0].get_data()
    _, y_gt = gt_lines["gt_contour:2"][0].get_data()
    assert y_pred.max() == pytest.approx(y_gt.max() + 1)
    cmap, norm = label_cmap(3)
    assert to_rgba(gt_lines["gt_contour:2"][0].get_color()) == pytest.approx(cmap(norm(2)))
    legend = fig.axes[4].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["femoral cartilage", "femur", "tibia"]


def test_figure6b_edge_cases():
    empty = al.plot_figure6b([])
    assert [t.get_text() for t in empty.axes[0].texts] == ["no examples"]
    no_boxes = make_sample()
    no_boxes["det_boxes"], no_boxes["det_labels"] = np.zeros((0, 4)), np.zeros(0, dtype=int)
    no_boxes["pred"] = np.zeros_like(no_boxes["gt"])
    fig = al.plot_figure6b([no_boxes])
    assert not [p for p in fig.axes[0].patches if p.get_gid() == "det_box"]
    assert _by_gid(fig.axes[4], "pred_contour:") == {}
    continuous = al.plot_figure6b([make_sample()], boxes_inclusive=False)
    rect = [p for p in continuous.axes[0].patches if p.get_gid() == "det_box"][0]
    assert (rect.get_xy(), rect.get_width()) == ((3.5, 1.5), 15.0)
    bad = make_sample()
    bad["det_labels"] = np.array([1])
    with pytest.raises(ValueError, match="2 det_boxes but 1 det_labels"):
        al.plot_figure6b([bad])


def test_label_contours_of_a_single_pixel():
    mask = np.zeros((5, 5), dtype=int)
    mask[2, 3] = 4
    (piece,) = al.label_contours(mask)[4]
    assert (piece[:, 0].min(), piece[:, 0].max(), piece[:, 1].min(), piece[:, 1].max()) == \
        pytest.approx((1.5, 2.5, 2.5, 3.5))


# ------------------------------------------------------------ post-processing on vs off
def test_postprocess_cost_bars_are_means_and_delta_is_on_minus_off():
    rows = []
    for model, gain in (("A", 0.02), ("B", -0.05)):
        for k, base in enumerate((0.70, 0.80, 0.90)):
            rows.append({"dataset": KNEE, "model": model, "postprocess": "off", "dice": base})
            rows.append({"dataset": KNEE, "model": model, "postprocess": "on",
                         "dice": base + gain if k else NAN})
    df = pd.DataFrame(rows)
    fig = al.plot_postprocess_cost(df)
    ax = fig.axes[0]
    bars = {p.get_gid(): p.get_height() for p in ax.patches if (p.get_gid() or "").startswith("bar:")}
    assert bars == pytest.approx({f"bar:{KNEE}:A:off": 0.8, f"bar:{KNEE}:A:on": 0.87,
                                  f"bar:{KNEE}:B:off": 0.8, f"bar:{KNEE}:B:on": 0.80})
    deltas = {g: a[0].get_text() for g, a in _by_gid(ax, "delta:").items()}
    assert deltas == {f"delta:{KNEE}:A": "Δ +0.070", f"delta:{KNEE}:B": "Δ +0.000"}
    assert sum(len(c.get_offsets()) for c in ax.collections) == 10  # finite subjects
    only_off = al.plot_postprocess_cost(df[df["postprocess"] == "off"])
    assert {a[0].get_text() for a in _by_gid(only_off.axes[0], "delta:").values()} == {"Δ n/a"}
    assert [t.get_text() for t in al.plot_postprocess_cost(df.iloc[:0]).axes[0].texts] == \
        ["no post-processing comparison"]
