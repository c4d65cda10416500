"""Finetuning figure (figure 4 a-d), its numbers (``finetuning.figure4``) and training curves on
a small hand-made ablation grid.

Expected values are recomputed here from the synthetic subject table with plain pandas, so a
summarised or drawn point or bar is checked against the mean over subjects it should show.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mskseg_lib.finetuning import figure4 as f4  # noqa: E402
from mskseg_lib.plots import finetune as ft  # noqa: E402
from mskseg_lib.plots.style import apply_style  # noqa: E402

DESS = "Knee_3D_DESS_Research_Anatomical_86"
CUBE = "Knee_3D_CUBE_Research_Anatomical_300"
CUBE_US = "Knee_3D_CUBE_Undersampled_Research_Anatomical_50"
THIGH = "Thigh_2D_T1ax_Clinical_Anatomical_50"
SPINE = "Spine_2D_T1ax_Clinical_Anatomical_59"
N_SUBJECTS = {DESS: 4, CUBE: 3, CUBE_US: 2, THIGH: 3, SPINE: 2}
N_ALL = {DESS: 60, CUBE: 200, THIGH: 35, SPINE: 40}
STRATEGIES = [("frozen", 0), ("frozen", 20), ("trained", 0), ("trained", 20)]
LABELS = ["frozen encoder · shift 0 px", "frozen encoder · shift 20 px",
          "trained encoder · shift 0 px", "trained encoder · shift 20 px"]


def _exp(task: str, groups: str, train: list[str], evals: list[str], n: str = "all",
         encoder: str = "frozen", shift: int = 0, mix_kind: str = "single", run: int = 1,
         status: str = "finished") -> dict:
    eid = f"{task}/lite_medsam-{encoder}-shift{shift}-n{n}/Run_{run}"
    return {"experiment_id": eid, "task": task, "mix_kind": mix_kind, "groups": groups,
            "model_key": "lite_medsam", "model": "LiteMedSAM",
            "strategy": "partial" if encoder == "frozen" else "full", "encoder": encoder,
            "box_shift_grid_px": shift, "train_subjects": n,
            "n_train_subjects_max": N_ALL.get(task, 50) if n == "all" else int(n),
            "train_datasets": ",".join(train), "eval_datasets": ",".join(evals),
            "n_train_samples": 100, "status": status, "epochs_run": 5, "best_epoch": 3,
            "stop_reason": "max epochs", "train_seconds": 60.0, "seconds_per_epoch": 12.0,
            "run_dir": f"runs/{eid}"}


def _add(runs: dict[str, dict], exp: dict) -> None:
    """Add a run; a run asked for by a second group gets that group added (as the engine does)."""
    if exp["experiment_id"] in runs:
        runs[exp["experiment_id"]]["groups"] += "," + exp["groups"]
    else:
        runs[exp["experiment_id"]] = exp


def make_experiments() -> pd.DataFrame:
    runs: dict[str, dict] = {}
    for d in (DESS, THIGH):  # sizes deliberately out of order; "10" < "5" as strings
        _add(runs, _exp(d, "size", [d], [d], n="10"))
        _add(runs, _exp(d, "size", [d], [d] + ([CUBE_US] if d == DESS else [])))  # + a held-out set
        _add(runs, _exp(d, "size", [d], [d], n="5"))
        _add(runs, _exp(d, "size", [d], [d], n="5", run=2))
        for e, s in STRATEGIES:
            _add(runs, _exp(d, "strategy", [d], [d], encoder=e, shift=s))
        _add(runs, _exp(d, "mixing", [d], [d]))
    for d in (DESS, CUBE, THIGH):  # a thigh run in the knee group must not get a knee panel
        for n in ("5", "all"):
            for e, s in STRATEGIES:
                _add(runs, _exp(d, "knee", [d], [d], n=n, encoder=e, shift=s))
    _add(runs, _exp("knee", "mixing", [DESS, CUBE], [DESS], mix_kind="anatomy"))
    _add(runs, _exp("spine", "mixing", [SPINE], [SPINE], mix_kind="anatomy"))
    _add(runs, _exp("muscle", "mixing", [THIGH, SPINE], [THIGH], mix_kind="muscle"))
    _add(runs, _exp("all_msk", "mixing", [DESS, THIGH, SPINE], [DESS, THIGH, CUBE_US], mix_kind="all_msk"))
    return pd.DataFrame(list(runs.values()))


def make_subjects(exps: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    arms = [(e, d) for e, ds in zip(exps["experiment_id"], exps["eval_datasets"]) for d in ds.split(",")]
    arms += [("zero_shot:lite_medsam", d) for d in N_SUBJECTS]
    for eid, d in arms:
        for k in range(N_SUBJECTS[d]):
            for condition, value in (("gt_box", rng.uniform(0.3, 0.95)), ("shift_20px", 0.0)):
                rows.append({"experiment_id": eid, "model_key": "lite_medsam", "condition": condition,
                             "dataset": d, "subject_id": f"s{k}", "dice_mean_slice": value,
                             "iou_mean_slice": value / 2, "dice_3d": value, "n_slices": 6})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _close_figures():
    apply_style()
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    exps = make_experiments()
    return make_subjects(exps), exps


def _expected(subjects: pd.DataFrame, experiment_ids: list[str], dataset: str) -> tuple[float, float]:
    """Mean and SD over subjects (each subject's runs averaged first), gt_box only."""
    s = subjects[subjects["experiment_id"].isin(experiment_ids) & (subjects["dataset"] == dataset)
                 & (subjects["condition"] == "gt_box")]
    per_subject = s.groupby("subject_id")["dice_mean_slice"].mean()
    return per_subject.mean(), per_subject.std(ddof=1)


def _ids(exps: pd.DataFrame, **match) -> list[str]:
    sel = np.ones(len(exps), bool)
    for col, value in match.items():
        sel &= exps[col].astype(str).to_numpy() == str(value)
    return exps.loc[sel, "experiment_id"].tolist()


def _by_gid(artists, gid: str):
    found = [a for a in artists if a.get_gid() == gid]
    assert len(found) == 1, (gid, [a.get_gid() for a in artists])
    return found[0]


def _gids(artists, prefix: str) -> set[str]:
    return {a.get_gid() for a in artists if (a.get_gid() or "").startswith(prefix)}


def summary(subjects: pd.DataFrame, exps: pd.DataFrame, group: str, **kw) -> f4.AblationSummary:
    return f4.ablation_summary(subjects, exps, group, **kw)


def _placeholder(fig: Figure, group: str) -> str:
    texts = [t for ax in fig.axes for t in ax.texts if t.get_gid() == f"placeholder:{group}"]
    assert len(texts) == 1
    return texts[0].get_text()


# ------------------------------------------------------------------------------ helpers
def test_size_order_and_labels():
    assert ft.size_order(["all", "10", "5", 20, "10"]) == ["5", "10", "20", "all"]
    assert ft.size_tick_labels(["5", "all"], 60.0) == ["5", "all (n=60)"]
    assert ft.size_tick_labels(["5", "all"], np.nan) == ["5", "all"]
    assert ft.strategy_label("frozen", 20) == "frozen encoder · shift 20 px"


# --------------------------------------------------------------------------- (a) size
def test_size_curve_points_are_subject_means(tables):
    subjects, exps = tables
    fig = ft.plot_size_curve(summary(subjects, exps, "size"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "10", "all (n=60)"]
    line = _by_gid(ax.lines, "size:Knee DESS 86")
    x = np.asarray(line.get_xdata(), dtype=float)
    assert np.allclose(np.diff(x), 1.0) and np.allclose(np.round(x), [0, 1, 2])  # dodged a little
    expected = [_expected(subjects, _ids(exps, task=DESS, train_subjects=n, encoder="frozen",
                                         box_shift_grid_px=0), DESS) for n in ("5", "10", "all")]
    assert np.allclose(line.get_ydata(), [m for m, _ in expected])
    # SD bars span mean ± SD over subjects (the two runs of n=5 averaged per subject first)
    bars = _by_gid(ax.collections, "sd:Knee DESS 86").get_segments()
    assert np.allclose([s[1, 1] - s[0, 1] for s in bars], [2 * sd for _, sd in expected])
    zs = _by_gid(ax.lines, "zero_shot:Knee DESS 86")
    assert zs.get_ydata()[0] == pytest.approx(_expected(subjects, ["zero_shot:lite_medsam"], DESS)[0])
    assert zs.get_color() == line.get_color() and zs.get_linestyle() == "--"
    # the held-out set scored by one size run is not a training-size result
    assert _gids(ax.lines, "size:") == {"size:Knee DESS 86", "size:Thigh T1ax 50"}


def test_size_summary_is_the_subject_mean_and_sd_of_in_domain_runs(tables):
    subjects, exps = tables
    s = summary(subjects, exps, "size")
    assert s.group == "size" and s.defined and not s.empty
    ft_rows = s.finetuned.set_index(["dataset", "size"])
    for n in ("5", "10", "all"):
        ids = _ids(exps, task=THIGH, train_subjects=n, encoder="frozen", box_shift_grid_px=0)
        mean, sd = _expected(subjects, ids, THIGH)
        assert ft_rows.loc[(THIGH, n), "mean"] == pytest.approx(mean)
        assert ft_rows.loc[(THIGH, n), "sd"] == pytest.approx(sd)
        assert ft_rows.loc[(THIGH, n), "n_subjects"] == N_SUBJECTS[THIGH]
    assert CUBE_US not in set(s.finetuned["dataset"])  # scored, but never trained on
    zs = s.zero_shot.set_index("dataset")
    assert zs.loc[DESS, "mean"] == pytest.approx(_expected(subjects, ["zero_shot:lite_medsam"], DESS)[0])
    assert set(zs.index) == {DESS, THIGH}
    assert s.n_train_all == {DESS: 60.0, THIGH: 35.0}


def test_size_curve_on_given_axes(tables):
    fig, (a, b) = plt.subplots(1, 2)
    assert ft.plot_size_curve(summary(*tables, "size"), ax=b) is fig
    assert not a.lines and b.lines


# --------------------------------------------------------------------- (b) strategies
def test_strategy_bars(tables):
    subjects, exps = tables
    ax = ft.plot_strategies(summary(subjects, exps, "strategy")).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Knee DESS 86", "Thigh T1ax 50"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero-shot", *LABELS]
    bars = _gids(ax.patches, "bar:")
    assert bars == {f"bar:{d}:{h}" for d in (DESS, THIGH) for h in ["zero-shot", *LABELS]}
    strat = exps[exps["groups"].str.contains("strategy")]
    for (encoder, shift), label in zip(STRATEGIES, LABELS):
        bar = _by_gid(ax.patches, f"bar:{THIGH}:{label}")
        ids = _ids(strat, task=THIGH, encoder=encoder, box_shift_grid_px=shift)
        assert bar.get_height() == pytest.approx(_expected(subjects, ids, THIGH)[0])
    zero = _by_gid(ax.patches, f"bar:{DESS}:zero-shot")
    assert zero.get_height() == pytest.approx(_expected(subjects, ["zero_shot:lite_medsam"], DESS)[0])


# ----------------------------------------------------------------------- (c) knee grid
def test_knee_grid_panels_and_lines(tables):
    subjects, exps = tables
    fig = ft.plot_knee_grid(summary(subjects, exps, "knee"))
    assert isinstance(fig, Figure)
    panels = {ax.get_gid(): ax for ax in fig.axes if ax.get_gid()}
    assert set(panels) == {f"knee:{DESS}", f"knee:{CUBE}"}  # the thigh run is not a knee panel
    cube = panels[f"knee:{CUBE}"]
    assert _gids(cube.lines, "knee:") == {f"knee:{h}" for h in LABELS}
    assert [t.get_text() for t in cube.get_xticklabels()] == ["5", "all (n=200)"]
    line = _by_gid(cube.lines, f"knee:{LABELS[3]}")
    ids = [_ids(exps, task=CUBE, train_subjects=n, encoder="trained", box_shift_grid_px=20)
           for n in ("5", "all")]
    assert np.allclose(line.get_ydata(), [_expected(subjects, i, CUBE)[0] for i in ids])
    zs = _by_gid(cube.lines, f"zero_shot:{CUBE}:lite_medsam")
    assert zs.get_ydata()[0] == pytest.approx(_expected(subjects, ["zero_shot:lite_medsam"], CUBE)[0])


def test_knee_grid_replaces_given_axes(tables):
    fig, (a, b) = plt.subplots(1, 2, layout="constrained")
    assert ft.plot_knee_grid(summary(*tables, "knee"), ax=b) is fig
    assert b not in fig.axes and a in fig.axes
    assert len([ax for ax in fig.axes if (ax.get_gid() or "").startswith("knee:")]) == 2


# -------------------------------------------------------------------------- (d) mixing
def test_mixing_bars_in_domain_only(tables):
    subjects, exps = tables
    ax = ft.plot_mixing(summary(subjects, exps, "mixing")).axes[0]
    # spine (only its anatomy mix) and the held-out CUBE (never trained on) are not groups
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Knee DESS 86", "Thigh T1ax 50"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "zero-shot", "single dataset", "anatomy-mixed", "muscle-mixed", "all MSK"]
    assert _gids(ax.patches, "bar:") == {
        f"bar:{DESS}:{h}" for h in ("zero-shot", "single dataset", "anatomy-mixed", "all MSK")} | {
        f"bar:{THIGH}:{h}" for h in ("zero-shot", "single dataset", "muscle-mixed", "all MSK")}
    assert _gids(ax.texts, "na:") == {f"na:{DESS}:muscle-mixed", f"na:{THIGH}:anatomy-mixed"}
    knee_mix = _by_gid(ax.patches, f"bar:{DESS}:anatomy-mixed")
    assert knee_mix.get_height() == pytest.approx(_expected(subjects, _ids(exps, task="knee"), DESS)[0])
    single = _by_gid(ax.patches, f"bar:{THIGH}:single dataset")
    ids = _ids(exps, task=THIGH, train_subjects="all", encoder="frozen", box_shift_grid_px=0)
    assert single.get_height() == pytest.approx(_expected(subjects, ids, THIGH)[0])


def test_mixing_explicit_datasets(tables):
    ax = ft.plot_mixing(summary(*tables, "mixing", datasets=[SPINE])).axes[0]
    assert _gids(ax.patches, "bar:") == {f"bar:{SPINE}:zero-shot", f"bar:{SPINE}:anatomy-mixed"}


# ------------------------------------------------------------------- empty and composite
@pytest.mark.parametrize("group, plot", [("size", ft.plot_size_curve), ("strategy", ft.plot_strategies),
                                         ("knee", ft.plot_knee_grid), ("mixing", ft.plot_mixing)])
def test_empty_group_draws_placeholder(tables, group, plot):
    subjects, exps = tables
    other = exps[~exps["groups"].str.contains(group)]
    assert _placeholder(plot(summary(subjects, other, group)), group) == \
        f'no experiments of group "{group}" in this profile'
    pending = exps.assign(status="pending")
    assert _placeholder(plot(summary(subjects, pending, group)), group) == f'no results of group "{group}" yet'
    assert _placeholder(plot(summary(pd.DataFrame(), pd.DataFrame(), group)), group).startswith("no experiments")


def test_figure4_composite(tables):
    fig = ft.plot_figure4(f4.figure4_summaries(*tables))
    letters = sorted(ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left"))
    assert letters == ["a", "b", "c", "d"]
    assert len([ax for ax in fig.axes if (ax.get_gid() or "").startswith("knee:")]) == 2
    empty = ft.plot_figure4(f4.figure4_summaries(pd.DataFrame(), pd.DataFrame()))
    for group in ("size", "strategy", "knee", "mixing"):
        assert _placeholder(empty, group)


# -------------------------------------------------------------------- training curves
def _history() -> pd.DataFrame:
    rows = [{"experiment_id": eid, "epoch": e, "train_loss": 1.0 / e + k, "val_loss": 1.2 / e + k,
             "val_dice": 0.5 + 0.05 * e - 0.1 * k, "lr": 1e-4, "seconds": 10.0}
            for k, eid in enumerate(("A/x/Run_1", "B/y/Run_1")) for e in (3, 1, 2)]
    return pd.DataFrame(rows)


def test_training_curves():
    exps = pd.DataFrame({"experiment_id": ["A/x/Run_1", "B/y/Run_1"], "best_epoch": [2, np.nan]})
    fig = ft.plot_training_curves(_history(), ["B/y/Run_1", "A/x/Run_1", "C/z/Run_1"], experiments=exps)
    lines = [line for ax in fig.axes for line in ax.lines]
    dice = _by_gid(lines, "val_dice:A/x/Run_1")
    assert list(dice.get_xdata()) == [1, 2, 3]  # sorted by epoch
    assert np.allclose(dice.get_ydata(), [0.55, 0.60, 0.65])
    assert np.allclose(_by_gid(lines, "train_loss:B/y/Run_1").get_ydata(), [2.0, 1.5, 1 + 1 / 3])
    assert len([ln for ln in lines if ln.get_gid() == "best:A/x/Run_1"]) == 2
    assert not _gids(lines, "best:B/")  # unknown best epoch: no marker
    assert _gids([t for ax in fig.axes for t in ax.texts], "placeholder:") == {"placeholder:C/z/Run_1"}
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6  # three experiments x (loss, Dice)
    empty = ft.plot_training_curves(pd.DataFrame())
    assert _gids(empty.axes[0].texts, "placeholder:") == {"placeholder:history"}


def test_notebook_03_names_the_study_results():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    path = root / "notebooks" / "03_finetune_ablations.ipynb"
    text = path.read_text()
    for name in ("fig4a_training_set_size", "fig4b_finetuning_strategies", "fig4c_knee_size_and_strategy",
                 "fig4d_dataset_mixing", "figX03a_training_curves", "table1a_zero_shot_vs_finetuned_datasets",
                 "table1b_zero_shot_vs_finetuned_tissues", "table1c_zero_shot_vs_finetuned_labels",
                 "tableS6_experiments", "tableS7_finetune_configuration", "tableS8_tissue_dice_finetuned",
                 "tableS9_initial_weights"):
        assert name in text, name
    # no study number with another meaning (training curves are not the study's S6)
    for old in ("figS6_", "tableS7plus", "class_level_{i - 6"):
        assert old not in text, old
