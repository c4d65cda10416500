"""Data: the study's datasets, the synthetic cohort, raw-data ingest and model-ready slices.

* ``cards``: a dataset declared in YAML (labels, tissue classes, biomarkers, preparation
  overrides), checked line by line; the study's twelve ship as cards in ``cards/``;
* ``catalog``: every known dataset (the shipped cards and a site's registered ones,
  ``register_cards``) and the naming and order of datasets every table and figure uses;
* ``anatomy``, ``mr_physics``, ``grids``, ``cohort``: the synthetic cohort (analytic anatomy, MR
  signal and noise, raw exports in every format; ``CohortSettings``, ``generate_cohort``);
* ``raw_io``, ``dicom_io``, ``volume``, ``errors``: reading and validating raw files (one
  ``DataError`` naming the file), canonical RAS volumes;
* ``sources``: the raw manifest (cohort, site manifests, the real spine fixture);
* ``preprocess``, ``boxes``, ``splits``: clipping to uint8, resizing, display slices, boxes,
  stratified subject splits;
* ``prepare``, ``slice_store``, ``tables``, ``yolo_export``, ``summary``: ``prepare_all`` with
  ``PrepareSettings`` (the study's by default), the memory-mapped slice stacks, the subject and
  slice tables, the YOLO export, the dataset summary and tables S0-S2.

Every function takes folders, tables and settings objects, never a profile
(:mod:`mskseg_lib.from_profile.data` unpacks one).
"""
