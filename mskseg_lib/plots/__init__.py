"""Figures of the study: shared style (``style``) and one module per figure (``dataset_overview``, ...)."""
