"""Tables and figures with captions, the registry, and the HTML index."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mskseg_lib import reporting


def _cfg(tmp_path: Path) -> dict:
    return {"profile": "t", "paths": {"tables_dir": str(tmp_path / "tables" / "t"),
                                      "figures_dir": str(tmp_path / "figures" / "t")}}


def test_tables_figures_registry_and_index(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = _cfg(tmp_path)
    df = pd.DataFrame({"dataset": ["knee", "hip"], "dice": [0.91, 0.88]})
    t = reporting.save_table(df, cfg, "dice", "Dice <by> dataset", notebook="01")
    reporting.save_table(df.head(1), cfg, "dice.csv", "Dice, rerun", notebook="01")  # replaces
    fig, ax = plt.subplots()
    ax.bar([0, 1], [1, 2])
    f = reporting.save_figure(fig, cfg, "bars", "Bars", notebook="02")
    plt.close(fig)

    assert t == tmp_path / "tables/t/dice.csv" and f == tmp_path / "figures/t/bars.png"
    reg = json.loads((t.parent / "_registry.json").read_text())
    assert list(reg) == ["dice.csv"] and reg["dice.csv"]["caption"] == "Dice, rerun"
    assert reg["dice.csv"]["rows"] == 1 and reg["dice.csv"]["notebook"] == "01"

    html = reporting.write_index(cfg).read_text()
    assert "Dice, rerun" in html and "1 rows" in html and "<table" in html
    assert "src='../../figures/t/bars.png'" in html and "Bars" in html


def test_data_source_column_and_caption_per_dataset(tmp_path: Path) -> None:
    """Cohort datasets are synthetic, the real spine is real: rows and caption say which."""
    prepared = tmp_path / "data" / "prepared"
    prepared.mkdir(parents=True)
    pd.DataFrame({"dataset": ["Knee_A", "Knee_A", "Spine_real", "Both", "Both"],
                  "source": ["synthetic", "synthetic", "real", "synthetic", "manifest"]}
                 ).to_parquet(prepared / "subjects.parquet")
    cfg = {**_cfg(tmp_path), "cohort": {"enabled": True, "datasets": "all"}, "sources": []}
    cfg["paths"]["data_root"] = str(tmp_path / "data")
    assert reporting.dataset_sources(cfg) == {"Knee_A": "synthetic", "Spine_real": "real", "Both": "mixed"}

    only_synthetic = pd.DataFrame({"dataset": ["Knee_A"], "dice": [0.9]})
    t = reporting.save_table(only_synthetic, cfg, "a", "Dice per dataset.")
    assert pd.read_csv(t)["data_source"].tolist() == ["synthetic"]
    reg = json.loads((t.parent / "_registry.json").read_text())
    assert reg["a.csv"]["caption"] == "Synthetic data. Dice per dataset." and reg["a.csv"]["data_source"] == "synthetic"

    both = pd.DataFrame({"dataset": ["Knee_A", "Spine_real"], "dice": [0.9, 0.8]})
    t = reporting.save_table(both, cfg, "b", "Dice.")
    assert pd.read_csv(t)["data_source"].tolist() == ["synthetic", "real"]
    assert json.loads((t.parent / "_registry.json").read_text())["b.csv"]["caption"].startswith("Synthetic and real")

    real = reporting.save_table(both.iloc[1:], cfg, "c", "Vertebral volumes.")
    assert json.loads((real.parent / "_registry.json").read_text())["c.csv"]["caption"] == "Vertebral volumes."

    # an explicit source wins; a caption that already says synthetic is not prefixed twice
    t = reporting.save_table(pd.DataFrame({"x": [1]}), cfg, "d", "A synthetic check.", data_source="synthetic")
    assert json.loads((t.parent / "_registry.json").read_text())["d.csv"]["caption"] == "A synthetic check."
    try:
        reporting.save_table(pd.DataFrame({"x": [1]}), cfg, "e", "x", data_source="made-up")
    except ValueError as exc:
        assert "data_source" in str(exc)
    else:
        raise AssertionError("an unknown data_source was accepted")


def test_figure_caption_from_drawn_datasets(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = {**_cfg(tmp_path), "cohort": {"enabled": True, "datasets": ["Knee_3D_DESS_Research_Anatomical_86"]},
           "sources": [{"type": "real_spine", "root": "x"}]}
    fig, ax = plt.subplots()
    f = reporting.save_figure(fig, cfg, "k", "Knee Dice.", datasets=["Knee_3D_DESS_Research_Anatomical_86"])
    plt.close(fig)
    reg = json.loads((f.parent / "_registry.json").read_text())
    assert reg["k.png"]["caption"] == "Synthetic data. Knee Dice." and reg["k.png"]["data_source"] == "synthetic"
    assert reporting.profile_data_source(cfg) == "mixed"


def test_every_figure_also_has_a_vector_pdf_with_embedded_truetype_fonts(tmp_path: Path) -> None:
    """Publishers want vector figures with their fonts: the PDF beside each PNG embeds TrueType
    font programs (FontFile2), has no Type 3 bitmap fonts, and is byte-identical when the same
    figure is saved again (no creation date)."""
    from matplotlib.figure import Figure

    cfg = _cfg(tmp_path)
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [0.8, 0.9, 0.85], marker="o")
    ax.set_title("Dice per dataset")
    ax.set_xlabel("dataset")
    png = reporting.save_figure(fig, cfg, "vector", "A figure", notebook="02")
    pdf = png.with_suffix(".pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and b"/FontFile2" in data and b"/Subtype /Type3" not in data
    assert b"/CreationDate" not in data
    reporting.save_figure(fig, cfg, "vector", "A figure", notebook="02")
    assert pdf.read_bytes() == data
    reg = json.loads((pdf.parent / "_registry.json").read_text())
    assert reg["vector.png"]["pdf"] == "vector.pdf"
    assert "href='../../figures/t/vector.pdf'>PDF</a>" in reporting.write_index(cfg).read_text()
