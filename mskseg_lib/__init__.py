"""mskseg: segment-anything foundation models on musculoskeletal MRI.

The library holds every step of the study; the numbered notebooks only call it.
Sub-packages follow the pipeline: ``data`` (cohort, ingest, prepare), ``models`` (the
promptable segmenters), ``evaluation`` (zero-shot engine), ``stats`` (model comparisons),
``plots``, ``reference`` (published numbers), and later ``finetuning``, ``biomarkers``,
``autolabel``.
"""
from mskseg_lib.settings import configure_environment

__version__ = "0.1.0"

configure_environment()
