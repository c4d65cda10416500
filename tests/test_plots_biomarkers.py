"""Figure 5b and the truth-error panel: drawn points, lines and annotations checked against the
agreement results they show; empty input gives a placeholder panel."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mskseg_lib.plots import biomarkers as bm  # noqa: E402
from mskseg_lib.plots.style import apply_style  # noqa: E402
from mskseg_lib.stats.agreement import AgreementSettings, agreement, agreement_or_reason  # noqa: E402

N_BOOT = 100


@pytest.fixture(autouse=True)
def _close_figures():
    apply_style()
    yield
    plt.close("all")


def pairs(n: int = 25, seed: int = 0, skewed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    manual = rng.normal(30, 4, n)
    noise = rng.exponential(1.0, n) ** 2 if skewed else rng.normal(0.5, 0.8, n)
    return manual, manual + noise


@pytest.fixture(scope="module")
def parametric():
    res = agreement(*pairs(), n_boot=N_BOOT)
    assert res.parametric
    return res


@pytest.fixture(scope="module")
def nonparametric():
    res = agreement(*pairs(40, seed=1, skewed=True), n_boot=N_BOOT)
    assert not res.parametric
    return res


def _gid(ax, gid: str) -> list:
    return [a for a in [*ax.collections, *ax.lines, *ax.texts, *ax.patches] if a.get_gid() == gid]


def _one(ax, gid: str):
    found = _gid(ax, gid)
    assert len(found) == 1, f"{gid}: {len(found)} artists"
    return found[0]


def _hline_y(line) -> float:
    y = np.unique(np.asarray(line.get_ydata(), float))
    assert len(y) == 1
    return float(y[0])


# ----------------------------------------------------------------------------- Bland-Altman
def test_bland_altman_parametric_points_and_lines(parametric):
    fig = bm.plot_bland_altman(parametric, title="volume", unit="cm³")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    points = _one(ax, "ba_points").get_offsets()
    assert len(points) == parametric.n_pairs
    np.testing.assert_allclose(points[:, 0], parametric.data["mean"])
    np.testing.assert_allclose(points[:, 1], parametric.data["predicted"] - parametric.data["manual"])
    ba = parametric.bland_altman
    assert _hline_y(_one(ax, "ba_bias")) == pytest.approx(ba.bias)
    assert _hline_y(_one(ax, "ba_loa_lower")) == pytest.approx(ba.bias - 1.96 * ba.sd)
    assert _hline_y(_one(ax, "ba_loa_upper")) == pytest.approx(ba.bias + 1.96 * ba.sd)
    assert "+1.96 SD" in _one(ax, "ba_label_loa_upper").get_text()
    assert _gid(ax, "ba_bias_ci")  # the CI band of the bias
    assert "cm³" in ax.get_ylabel() and "predicted − manual" in ax.get_ylabel()
    assert ax.get_title() == "volume"


def test_bland_altman_nonparametric_uses_percentiles(nonparametric):
    ax = bm.plot_bland_altman(nonparametric).axes[0]
    d = nonparametric.data["difference"]
    assert _hline_y(_one(ax, "ba_bias")) == pytest.approx(np.median(d))
    assert _hline_y(_one(ax, "ba_loa_lower")) == pytest.approx(np.percentile(d, 2.5))
    assert _hline_y(_one(ax, "ba_loa_upper")) == pytest.approx(np.percentile(d, 97.5))
    assert "median" in _one(ax, "ba_label_bias").get_text()
    assert "97.5th" in _one(ax, "ba_label_loa_upper").get_text()


# ----------------------------------------------------------------------------- regression
def test_regression_linear(parametric):
    """Figure 5b as the study draws it: automated (predicted-mask) values on x, manual on y; the
    line is the regression of manual on automated; ICC(3,1) with ICC(A,1) beside it."""
    ax = bm.plot_regression(parametric, unit="mm").axes[0]
    points = _one(ax, "reg_points").get_offsets()
    np.testing.assert_allclose(points[:, 0], parametric.data["predicted"])
    np.testing.assert_allclose(points[:, 1], parametric.data["manual"])
    slope, intercept = np.polyfit(parametric.data["predicted"], parametric.data["manual"], 1)
    fit_line = _one(ax, "reg_fit")
    np.testing.assert_allclose(fit_line.get_ydata(), intercept + slope * np.asarray(fit_line.get_xdata()))
    assert "automated" in ax.get_xlabel() and "manual" in ax.get_ylabel()
    assert f"ICC(A,1) = {parametric.icc_a1.icc:.2f}" in _one(ax, "reg_annotation").get_text()
    identity = _one(ax, "identity")
    assert identity.get_linestyle() == "--"
    np.testing.assert_allclose(identity.get_xdata(), identity.get_ydata())
    fit = _one(ax, "reg_fit")
    reg = parametric.regression
    np.testing.assert_allclose(fit.get_ydata(), reg.intercept + reg.slope * np.asarray(fit.get_xdata()))
    assert not _gid(ax, "reg_band")
    text = _one(ax, "reg_annotation").get_text()
    assert f"ICC(3,1) = {parametric.icc.icc:.2f}" in text
    assert f"R² = {reg.r2:.2f}" in text and "p" in text


def test_regression_gp_band_and_rho(nonparametric):
    ax = bm.plot_regression(nonparametric).axes[0]
    assert len(_one(ax, "reg_points").get_offsets()) == nonparametric.n_pairs
    assert len(_gid(ax, "reg_band")) == 1
    np.testing.assert_allclose(_one(ax, "reg_fit").get_ydata(), nonparametric.regression.fit_y)
    text = _one(ax, "reg_annotation").get_text()
    assert f"ICC (LMM, bootstrap median) = {nonparametric.icc.icc:.2f}" in text
    assert f"ρ = {nonparametric.spearman.rho:.2f}" in text and "GP R²" in text


def test_panels_draw_results_of_pairs_on_existing_axes():
    """The statistics come from stats.agreement (the panels compute nothing): a table of pairs is
    analysed there and its result drawn on the given axes."""
    manual, predicted = pairs(12, seed=3)
    fig, axes = plt.subplots(1, 2)
    res = agreement_or_reason(pd.DataFrame({"manual": manual, "predicted": predicted}),
                              settings=AgreementSettings(n_boot=N_BOOT))
    assert bm.plot_bland_altman(res, ax=axes[0]) is fig
    assert bm.plot_regression(res, ax=axes[1]) is fig
    assert len(_one(axes[0], "ba_points").get_offsets()) == 12
    assert len(_one(axes[1], "reg_points").get_offsets()) == 12
    assert _hline_y(_one(axes[0], "ba_bias")) == pytest.approx(res.bland_altman.bias)
    with pytest.raises(TypeError, match="AgreementResult"):
        bm.plot_bland_altman(pd.DataFrame({"manual": manual, "predicted": predicted}))


@pytest.mark.parametrize("empty", [None, pd.DataFrame(columns=["manual", "predicted"]),
                                   pd.DataFrame({"manual": [1.0, 2.0], "predicted": [1.0, np.nan]})])
def test_empty_input_gives_placeholder(empty):
    reason = agreement_or_reason(empty, settings=AgreementSettings(n_boot=N_BOOT))
    assert isinstance(reason, str)
    for plot in (bm.plot_bland_altman, bm.plot_regression):
        ax = plot(reason, title="x").axes[0]
        assert _gid(ax, "placeholder") and not _gid(ax, "ba_points") and not _gid(ax, "reg_points")
        assert reason.splitlines()[0] in " ".join(t.get_text() for t in _gid(ax, "placeholder"))


# ----------------------------------------------------------------------------- figures
def test_figure5b_layout(parametric, nonparametric):
    results = {"volume_cm3": parametric, ("thickness_mm", "femoral"): nonparametric}
    fig = bm.plot_figure5b(results, units={"volume_cm3": "cm³", "thickness_mm": "mm"})
    assert len(fig.axes) == 4
    (ba0, reg0), (ba1, reg1) = np.reshape(fig.axes, (2, 2))
    assert "volume_cm3" in ba0.get_title() and "(parametric)" in ba0.get_title()
    assert "thickness_mm · femoral" in ba1.get_title() and "mm" in reg1.get_xlabel()
    assert reg1.get_title() == "manual vs automated"
    assert _gid(ba0, "ba_points") and _gid(reg0, "identity") and _gid(reg1, "reg_band")
    assert "cm³" in ba0.get_ylabel()
    empty = bm.plot_figure5b({}, units={})
    assert len(empty.axes) == 1 and _gid(empty.axes[0], "placeholder")


def test_truth_error_panels():
    rng = np.random.default_rng(4)
    rows = []
    for biomarker, n in (("volume_cm3", 10), ("thickness_mm", 8)):
        true = rng.uniform(1, 5, n)
        rows += [{"biomarker": biomarker, "true": t, "manual": t + 0.1, "predicted": t - 0.3} for t in true]
    df = pd.DataFrame(rows)
    df.loc[0, "predicted"] = np.nan  # left out of the predicted arm only
    fig = bm.plot_truth_error(df, units={"volume_cm3": "cm³"})
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 2
    vol = visible[0]
    manual = _one(vol, "truth_manual").get_offsets()
    predicted = _one(vol, "truth_predicted").get_offsets()
    assert len(manual) == 10 and len(predicted) == 9
    np.testing.assert_allclose(manual[:, 1], 0.1)
    np.testing.assert_allclose(predicted[:, 1], -0.3)
    assert _hline_y(_one(vol, "truth_zero")) == 0.0
    assert vol.get_title() == "volume_cm3" and "cm³" in vol.get_xlabel()
    empty = bm.plot_truth_error(pd.DataFrame())
    assert _gid(empty.axes[0], "placeholder")
    with pytest.raises(ValueError, match="missing column"):
        bm.plot_truth_error(df.drop(columns="true"))
