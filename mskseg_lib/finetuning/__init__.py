"""Finetuning: the ablation grid, the (DDP-capable) training engine, and scoring finetuned models.

``grid`` expands the profile into experiments, ``samples`` turns prepared slices into training
samples (one slice, one randomly drawn label, on the mask grid), ``network`` wraps a zoo segmenter for training, ``engine``
trains one run, ``distributed`` is the torchrun plumbing, ``evaluate`` scores finetuned models
with the zero-shot engine, ``report`` builds Table 1 and the S6+ tables.
"""
