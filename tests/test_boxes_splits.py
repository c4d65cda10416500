"""Boxes from known rectangles; split proportions, stratification and determinism."""
import numpy as np
import pandas as pd

from mskseg_lib.data.boxes import instance_boxes, jitter_box, mask_box, slice_boxes
from mskseg_lib.data.splits import split_counts, stratified_split


def test_rectangle_gives_its_box():
    m = np.zeros((50, 60), bool)
    m[10:20, 30:45] = True  # rows 10..19, cols 30..44
    assert mask_box(m) == [30, 10, 44, 19]
    assert mask_box(np.zeros((5, 5), bool)) is None


def test_instances_largest_first_and_slice_summary():
    lab = np.zeros((40, 40), np.int16)
    lab[2:5, 2:5] = 1  # 9 px
    lab[20:30, 20:35] = 1  # 150 px
    lab[10:12, 30:32] = 2
    boxes, inst, counts = slice_boxes(lab)
    assert boxes[1] == [2, 2, 34, 29]
    assert inst[1] == [[20, 20, 34, 29], [2, 2, 4, 4]]
    assert counts == {1: 159, 2: 4}
    assert instance_boxes(lab == 2) == [[30, 10, 31, 11]]


def test_jitter_stays_within_shift_and_image():
    rng = np.random.default_rng(0)
    for _ in range(100):
        b = jitter_box([10, 10, 30, 40], 5, rng, (50, 50))
        assert all(abs(x - y) <= 5 for x, y in zip(b, [10, 10, 30, 40]))
        assert 0 <= b[0] < b[2] <= 49 and 0 <= b[1] < b[3] <= 49


def test_split_counts():
    assert split_counts(100, (0.7, 0.15, 0.15)) == [70, 15, 15]
    assert split_counts(3, (0.7, 0.15, 0.15)) == [1, 1, 1]
    assert sum(split_counts(17, (0.7, 0.15, 0.15))) == 17


def _subjects(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"subject_id": [f"s{i:03d}" for i in range(n)],
                         "sex": rng.choice(["F", "M"], n, p=[0.3, 0.7])})


def test_split_proportions_and_stratification():
    df = _subjects(200)
    s = stratified_split(df, seed=7)
    assert s.value_counts().to_dict() == {"train": 140, "val": 30, "test": 30}
    for sex, g in s.groupby(df["sex"]):
        share = g.value_counts(normalize=True)
        assert abs(share["train"] - 0.7) < 0.03 and abs(share["test"] - 0.15) < 0.03, sex


def test_split_deterministic_and_order_independent():
    df = _subjects(60)
    a = stratified_split(df, seed=3)
    b = stratified_split(df.sample(frac=1.0, random_state=1), seed=3).reindex(df.index)
    assert a.equals(b)
    assert not a.equals(stratified_split(df, seed=4))


def test_missing_strata_and_tiny_sets():
    df = pd.DataFrame({"subject_id": ["a", "b", "c", "d"], "sex": ["F", None, "M", "M"]})
    s = stratified_split(df, seed=1)
    assert sorted(s.value_counts().to_dict().items()) == [("test", 1), ("train", 2), ("val", 1)]
