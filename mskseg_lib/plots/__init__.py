"""Figures of the study, one module per figure family. Every function is pure (tables or
arrays in, a matplotlib Figure or a table out); statistical tests and models are computed in
:mod:`mskseg_lib.stats` and only drawn here.

* ``style``: the shared theme (:func:`~mskseg_lib.plots.style.apply_style`) and fixed anatomy,
  tissue, sex and split colours.
* ``panels``: the figure helpers every module uses: new figure or caller's axes, panel grids,
  empty panels that say why, category and dataset axes, legends, label colours, p-value text,
  column checks, datasets in figure order.
* ``dataset_overview`` (figure 2, QC montage, tables S0-S2), ``zero_shot`` (figure 3),
  ``finetune`` (figure 4, training curves), ``mixed_effects`` (figure 5a), ``biomarkers``
  (figure 5b, error against the truth), ``autolabel`` (figure 6), ``video3d`` (notebook 07).
"""
