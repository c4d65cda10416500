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
