"""Cohort generation, raw-data ingest and preparation of model-ready slices."""
