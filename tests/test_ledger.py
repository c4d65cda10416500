"""The run's encoder ledger counts encoder calls and unique slices per notebook and model."""
from __future__ import annotations

import numpy as np
import torch

from mskseg_lib.ledger import LEDGER_ENV, NOTEBOOK_ENV, model_identity, summarise
from mskseg_lib.models.encoding import encode_in_batches


class _Stub:
    name = "stub"
    zoo_name = "stub"
    checkpoint = {"sha256": "ab" * 32}
    normalisation = "unit"

    def encode(self, images, hw):
        return [{"image_embed": torch.zeros(1)} for _ in images]


def _slices(values):
    return np.stack([np.full((8, 8), v, np.uint8) for v in values])


def test_ledger_counts_calls_and_unique_slices(tmp_path, monkeypatch):
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(LEDGER_ENV, str(path))
    model = _Stub()
    monkeypatch.setenv(NOTEBOOK_ENV, "02_zero_shot")
    encode_in_batches(model, _slices([1, 2, 3]), [(8, 8)] * 3, batch_size=2)
    monkeypatch.setenv(NOTEBOOK_ENV, "05_biomarkers")
    encode_in_batches(model, _slices([3, 4]), [(8, 8)] * 2, batch_size=4)  # slice 3 again: encoded twice
    other = _Stub()
    other.checkpoint = {"sha256": "cd" * 32}  # a finetuned encoder is another model
    encode_in_batches(other, _slices([1]), [(8, 8)], batch_size=1)
    s = summarise(path)
    key = model_identity(model)
    assert key == "stub@" + "ab" * 6 + "/unit"
    assert s["notebooks"]["02_zero_shot"][key]["encoder_calls"] == 3
    assert s["notebooks"]["05_biomarkers"][key] == {"encoder_calls": 2, "unique_slices": 2,
                                                    "encode_seconds": s["notebooks"]["05_biomarkers"][key][
                                                        "encode_seconds"]}
    assert s["run"][key] == {"encoder_calls": 5, "unique_slices": 4, "ratio": 1.25}
    assert s["run"][model_identity(other)]["ratio"] == 1.0


def test_nothing_is_recorded_outside_a_run(tmp_path, monkeypatch):
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    encode_in_batches(_Stub(), _slices([1]), [(8, 8)], batch_size=1)
    assert list(tmp_path.iterdir()) == []
    assert summarise(tmp_path / "absent.jsonl") == {"notebooks": {}, "run": {}}
