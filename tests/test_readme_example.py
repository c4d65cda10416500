"""The README's "use the library from your own notebook" block runs as written, without a profile.

A small synthetic cohort stands in for "your site": its manifest is the CSV format a site
writes, its dataset renamed to one the study never had, declared by a card in
``my_site/cards.yaml`` (the thigh's labels); the block registers the card, prepares the data and
runs zero-shot LiteMedSAM with ground-truth boxes. Known
answers: every selected slice is scored once per label present in its ground truth, and the
boxes of the true structures give LiteMedSAM a clearly non-trivial Dice (a broken prompt or
mask mapping gives about 0).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mskseg_lib.data.catalog import get_dataset
from mskseg_lib.data.cohort import CohortSettings, generate_cohort

README = Path(__file__).resolve().parents[1] / "README.md"
STUDY_DATASET = "Thigh_2D_T1ax_Clinical_Anatomical_50"
DATASET = "MyThigh_2D_T1ax_Clinical_Anatomical_2"


def readme_example() -> str:
    text = README.read_text()
    m = re.search(r"<!-- readme-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lost its readme-example block"
    return m.group(1)


@pytest.mark.slow
def test_readme_example_runs_without_a_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = generate_cohort(tmp_path / "my_site", CohortSettings(datasets=[STUDY_DATASET], subjects_per_dataset=2,
                                                                    slice_scale=0.15), progress=False)
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    rows["dataset"] = DATASET
    rows.to_csv(manifest, index=False)
    labels = [{"value": lab.value, "name": lab.name, "tissue": lab.tissue_class} for lab in get_dataset(STUDY_DATASET).labels]
    card = {"name": DATASET, "anatomy": "thigh", "plane": "axial", "acquisition": "2D", "sequence": "T1",
            "protocol_type": "Clinical", "task": "Anatomical", "labels": labels}
    (tmp_path / "my_site" / "cards.yaml").write_text(yaml.safe_dump({"datasets": [card]}, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), str(README), "exec"), scope)  # noqa: S102 - the README's own code
    run = scope["run"]
    assert (tmp_path / "data/mine/prepared/subjects.parquet").exists()
    assert run.run_dir == Path("runs/mine/zero_shot") and (tmp_path / "runs/mine/zero_shot").is_dir()

    from mskseg_lib.data.tables import load_tables

    subjects, slices = load_tables(tmp_path / "data/mine/prepared")
    assert sorted(subjects["subject_id"]) == sorted(run.slices["subject_id"].unique()) and len(subjects) == 2
    scored = run.slices.groupby(["subject_id", "slice_index"])["label_value"].apply(sorted)
    chosen = slices.set_index(["subject_id", "slice_index"]).loc[scored.index, "labels_present"]
    assert [sorted(json.loads(s)) for s in chosen] == list(scored)  # each present label once, nothing else
    assert scored.groupby(level=0).size().max() <= 8
    assert run.slices["dice"].between(0, 1).all() and run.slices["dice"].mean() > 0.3
    assert DATASET in printed.getvalue()
