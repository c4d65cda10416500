"""Unpack a profile into each stage's explicit, typed arguments.

The library's stage functions (prepare, zero-shot, finetuning, biomarkers, AutoLabel, video3d)
take paths, model keys, dataset names and small frozen settings dataclasses; they never read the
profile dict. This package is the one place that knows the profile's layout: one module per
stage, each with plain functions such as ``zero_shot_settings(cfg)``. The notebooks and
``mskseg_lib.cli`` call these; no stage imports this package (it sits at the edge, like the CLI).
A researcher working without a profile skips it and calls the stage functions directly.
"""
