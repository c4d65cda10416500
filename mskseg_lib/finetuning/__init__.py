"""Finetuning: the ablation grid, the (DDP-capable) training engine, scoring and the study's tables.

* ``settings``: :class:`TrainSettings` (the study's training values by default) and
  :class:`EvaluationSettings`, small frozen dataclasses;
* ``grid``: experiments (``make_experiment`` for one, ``expand_grid`` for a grid of ablation
  entries), ``samples`` turns prepared slices into training samples (one slice, one randomly
  drawn label, on the mask grid), ``network`` wraps a zoo segmenter for training;
* ``engine``: ``train_run`` trains one run in its folder, resumably, in one process or under
  torchrun (one process per GPU; plumbing in :mod:`mskseg_lib.distributed`);
  ``embeddings`` precomputes frozen-encoder embeddings, ``run_folder`` is the run folder
  (fingerprint, weight files), ``run_log`` its curves and optional W&B logging;
* ``evaluate`` scores finetuned models and their zero-shot baselines with the zero-shot engine;
  ``runner`` trains and scores a whole grid (``run_grid``; ``torchrun_job`` is what each torchrun
  process runs) and gathers its tables; ``benchmark`` times training steps;
* ``report`` builds Table 1 (tiers 1-3; the paired tests of tier 1 are in
  :mod:`mskseg_lib.stats.finetune_tests`) and S6-S33; ``figure4`` computes figure 4's numbers,
  which :mod:`mskseg_lib.plots.finetune` draws.

Every function takes explicit arguments (folders, experiments, settings);
:mod:`mskseg_lib.from_profile.finetune` turns a profile into them.
"""
