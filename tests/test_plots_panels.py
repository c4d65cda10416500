"""The shared figure helpers of ``plots/panels.py``: grids, empty panels, axes, legends, colours."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from mskseg_lib.plots import panels  # noqa: E402
from mskseg_lib.plots.style import ANATOMY_COLORS  # noqa: E402

KNEE = "Knee_3D_DESS_Research_Anatomical_86"
HIP = "Hip_3D_CUBE_Research_Anatomical_42"
SPINE = "Spine_2D_T2ax_Clinical_Anatomical_38"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_dodge_offsets_symmetric_slots() -> None:
    offsets, slot = panels.dodge_offsets(4)
    np.testing.assert_allclose(offsets, [-0.3, -0.1, 0.1, 0.3])
    assert slot == pytest.approx(0.2)
    offsets, slot = panels.dodge_offsets(3, width=0.6)
    np.testing.assert_allclose(offsets, [-0.2, 0.0, 0.2], atol=1e-12)
    assert slot == pytest.approx(0.2)
    offsets, slot = panels.dodge_offsets(1)
    np.testing.assert_allclose(offsets, [0.0])
    assert slot == pytest.approx(0.8)


def test_panel_grid_shape_size_and_hidden_cells() -> None:
    fig, axes = panels.panel_grid(5, 3, (2.0, 1.5), extra_in=(0.5, 0.25))
    assert axes.shape == (2, 3)
    assert tuple(fig.get_size_inches()) == pytest.approx((6.5, 3.25))
    assert [ax.axison for ax in axes.ravel()] == [True] * 5 + [False]
    fig, axes = panels.panel_grid(2, 6, (2.0, 2.0))  # fewer panels than columns: one row of two
    assert axes.shape == (1, 2) and tuple(fig.get_size_inches()) == pytest.approx((4.0, 2.0))
    fig, axes = panels.panel_grid(0, 3, (2.0, 2.0))
    assert axes.shape == (1, 1)


def test_panel_grid_sharey() -> None:
    _, axes = panels.panel_grid(3, 3, (2.0, 2.0), sharey=True)
    axes[0, 0].set_ylim(0.2, 0.7)
    assert axes[0, 2].get_ylim() == pytest.approx((0.2, 0.7))


def test_figure_and_axes_new_or_given() -> None:
    fig, ax = panels.figure_and_axes(None, (5.0, 3.0))
    assert fig.axes == [ax] and tuple(fig.get_size_inches()) == pytest.approx((5.0, 3.0))
    assert fig.get_layout_engine() is not None
    fig2, _ = panels.figure_and_axes(None, (5.0, 3.0), constrained=False)
    assert fig2.get_layout_engine() is None
    outer = plt.figure()
    sub = outer.subfigures(1, 2)[1]
    inner = sub.add_subplot()
    got_fig, got_ax = panels.figure_and_axes(inner, (1.0, 1.0))
    assert got_fig is outer and got_ax is inner  # the root figure, not the sub-figure
    assert panels.root_figure(sub) is outer and panels.root_figure(outer) is outer


def test_placeholder_says_why() -> None:
    fig, ax = plt.subplots()
    panels.placeholder(ax, "no finite dice values", "Knee DESS 86", gid="placeholder:knee")
    assert [(t.get_text(), t.get_gid()) for t in ax.texts] == [("no finite dice values", "placeholder:knee")]
    assert ax.texts[0].get_position() == (0.5, 0.5) and ax.texts[0].get_transform() == ax.transAxes
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    assert ax.get_title() == "Knee DESS 86"
    fig = panels.placeholder_figure("no slices scored", "Figure 7a", figsize=(4, 1.5))
    assert len(fig.axes) == 1 and fig.axes[0].texts[0].get_gid() == "placeholder"
    assert fig.get_suptitle() == "Figure 7a"
    assert tuple(fig.get_size_inches()) == pytest.approx((4.0, 1.5))


def test_category_and_image_axes() -> None:
    _, ax = plt.subplots()
    panels.category_axis(ax, ["LiteMedSAM", "SAM ViT-B", "MedSAM"], fontsize=7)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["LiteMedSAM", "SAM ViT-B", "MedSAM"]
    assert ax.get_xlim() == pytest.approx((-0.6, 2.6))
    assert ax.get_xticklabels()[0].get_fontsize() == 7
    _, ax = plt.subplots()
    ax.imshow(np.zeros((4, 4)))
    panels.image_axes(ax)
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []


def test_dataset_axis_short_names_coloured_by_anatomy() -> None:
    _, ax = plt.subplots()
    panels.dataset_axis(ax, [KNEE, HIP])
    ticks = ax.get_xticklabels()
    assert [t.get_text() for t in ticks] == ["Knee DESS 86", "Hip CUBE 42"]
    assert [t.get_color() for t in ticks] == [ANATOMY_COLORS["knee"], ANATOMY_COLORS["hip"]]
    assert ticks[0].get_rotation() == 30 and ticks[0].get_horizontalalignment() == "right"
    assert ax.get_xlim() == pytest.approx((-0.6, 1.6))


def test_legends() -> None:
    fig, ax = plt.subplots(constrained_layout=True)
    assert panels.legend_right(ax, []) is None
    handles = panels.patch_handles({"GT box": "#0072B2", "shifted box": "#D55E00"}, alpha=0.6)
    assert [h.get_label() for h in handles] == ["GT box", "shifted box"]
    assert handles[1].get_facecolor() == pytest.approx(to_rgba("#D55E00", 0.6))
    legend = panels.legend_right(ax, handles, "Arm")
    assert legend.get_title().get_text() == "Arm" and legend is ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["GT box", "shifted box"]
    lines = [Line2D([], [], label=f"model {i}") for i in range(6)]
    figure_legend = panels.figure_legend(fig, lines, "lower", ncols_max=4)
    assert figure_legend in fig.legends and figure_legend._ncols == 4
    assert panels.figure_legend(fig, lines[:2], "upper")._ncols == 2
    assert panels.figure_legend(fig, [], "upper") is None
    with pytest.raises(ValueError, match="'lower' or 'upper'"):
        panels.figure_legend(fig, lines, "left")


def test_label_legend_names_and_numbers() -> None:
    _, ax = plt.subplots()
    cmap, norm = panels.label_cmap(3)
    legend = panels.label_legend(ax, {1: cmap(norm(1)), 3: cmap(norm(3))}, {1: "femur"})
    assert [t.get_text() for t in legend.get_texts()] == ["femur", "3"]
    assert panels.label_legend(ax, {}, {}) is None


def test_label_cmap_one_colour_per_label() -> None:
    cmap, norm = panels.label_cmap(4)
    tab10 = plt.get_cmap("tab10")
    assert [cmap(norm(v)) for v in (1, 2, 3, 4)] == [tab10(i) for i in range(4)]
    cmap, norm = panels.label_cmap(12)  # more than ten labels: tab20
    colors = {cmap(norm(v)) for v in range(1, 13)}
    assert len(colors) == 12 and cmap(norm(12)) == plt.get_cmap("tab20")(11)


def test_arm_palette_and_format_p() -> None:
    palette = panels.arm_palette(["a", "b", "c"])
    assert list(palette) == ["a", "b", "c"] and len(set(palette.values())) == 3
    assert [panels.format_p(p) for p in (0.0123, 0.0004, 1.0, np.nan, None, "x")] == \
        ["p=0.012", "p<0.001", "p=1.000", "n/a", "n/a", "n/a"]


def test_require_columns_names_the_missing_one() -> None:
    df = pd.DataFrame({"dataset": [KNEE], "model": ["m"]})
    panels.require_columns(df, ["dataset", "model"], "subjects")
    with pytest.raises(ValueError, match=r"subjects: missing column 'dice'; available columns: \['dataset', 'model'\]"):
        panels.require_columns(df, ["dataset", "dice"], "subjects")


def test_figure_datasets_anatomy_order() -> None:
    df = pd.DataFrame({"dataset": [SPINE, HIP, "Knee_Site_Manifest", SPINE, KNEE]})
    # knee (a catalog dataset and a manifest name starting with "Knee"), then hip, then spine
    assert panels.figure_datasets(df) == ["Knee_Site_Manifest", KNEE, HIP, SPINE]
    assert panels.figure_datasets(df.iloc[:0]) == []
