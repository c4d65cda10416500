"""Boxes from known rectangles; split proportions, stratification and determinism."""
import numpy as np
import pandas as pd

from mskseg_lib.data.boxes import instance_boxes, jitter_box, mask_box, shift_box_outward, slice_boxes
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


def test_study_shift_moves_each_side_outward_by_an_integer_0_to_n_and_clips_at_the_border():
    """The study's shift on a 256 grid: every side moves out by an integer 0..20 (both ends drawn,
    nothing outside), the shifted box contains the original, and sides near the border stop at
    0 / 255 (the last pixel index; the study's code allows 256)."""
    exact = [100, 80, 150, 120]
    moves = []
    for seed in range(400):
        b = shift_box_outward(exact, 20, np.random.default_rng(seed), (255, 255))
        d = np.array([exact[0] - b[0], exact[1] - b[1], b[2] - exact[2], b[3] - exact[3]])
        assert np.array_equal(d, np.round(d)) and d.min() >= 0 and d.max() <= 20
        moves.append(d)
    moves = np.array(moves)
    assert (moves.min(axis=0) == 0).all() and (moves.max(axis=0) == 20).all()
    assert len({tuple(m) for m in moves}) > 300  # the four sides are drawn independently
    assert shift_box_outward(exact, 0, np.random.default_rng(0), (255, 255)) == exact
    near = [3, 10, 250, 240]  # 3 px from the left edge, 5 from the right
    for seed in range(200):
        b = shift_box_outward(near, 20, np.random.default_rng(seed), (255, 255))
        assert 0 <= b[0] <= 3 and 250 <= b[2] <= 255 and b[1] <= 10 and b[3] >= 240
    # on the original slice the moves are whole grid pixels times the pixels one grid pixel spans
    b = shift_box_outward([40, 30, 60, 50], 20, np.random.default_rng(5), (119, 99), step_xy=(120 / 256, 100 / 256))
    d = np.array([40 - b[0], b[2] - 60]) / (120 / 256)
    assert np.allclose(d, np.round(d)) and 0 <= d.min() and d.max() <= 20


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
