"""A profile's ``biomarkers`` section as notebook 05's arguments.

``biomarker_inputs(cfg)`` gives the prepared and cohort folders, which subjects are measured
(:class:`~mskseg_lib.biomarkers.study.BiomarkerSelection`), how agreement is computed
(:class:`~mskseg_lib.stats.agreement.AgreementSettings`, the profile's seed), and which zero-shot
model and run folder tag predict the whole volumes.
"""
from __future__ import annotations

from typing import Any, Mapping

from mskseg_lib.biomarkers.study import BiomarkerSelection
from mskseg_lib.config import resolve_path
from mskseg_lib.from_profile.data import cohort_dir, prepared_dir
from mskseg_lib.stats.agreement import AgreementSettings

__all__ = ["biomarker_selection", "agreement_settings", "biomarker_inputs"]


def _as_tuple(value: Any) -> str | tuple[str, ...]:
    """``"all"`` / ``"test"`` stay strings, lists become tuples."""
    return value if isinstance(value, str) else tuple(value)


def biomarker_selection(cfg: Mapping[str, Any]) -> BiomarkerSelection:
    """``biomarkers.datasets / split / max_subjects_per_dataset``."""
    b = cfg["biomarkers"]
    return BiomarkerSelection(datasets=_as_tuple(b["datasets"]), split=_as_tuple(b["split"]),
                              max_subjects_per_dataset=int(b["max_subjects_per_dataset"]))


def agreement_settings(cfg: Mapping[str, Any]) -> AgreementSettings:
    """``biomarkers.n_boot / mixedlm_check_resamples / normality_on_differences`` and the seed."""
    b = cfg["biomarkers"]
    return AgreementSettings(n_boot=int(b["n_boot"]), seed=int(cfg["seed"]),
                             check_resamples=int(b["mixedlm_check_resamples"]),
                             test_differences=bool(b["normality_on_differences"]))


def biomarker_inputs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 05's arguments: ``prepared_dir``, ``cohort_dir`` (None without a synthetic
    cohort), ``selection``, ``agreement``, ``zero_shot_model``, ``tag`` (whole-volume zero-shot
    run folder), ``run_dir`` (``<runs_dir>/biomarkers/<tag>``: the measurements' ``skipped.csv``),
    ``real_spine`` (analyse the real fixture) and ``max_real_subjects`` (its first N volumes; 0 = all)."""
    b = cfg["biomarkers"]
    return {"prepared_dir": prepared_dir(cfg), "cohort_dir": cohort_dir(cfg) if cfg["cohort"]["enabled"] else None,
            "selection": biomarker_selection(cfg), "agreement": agreement_settings(cfg),
            "zero_shot_model": str(b["zero_shot_model"]), "tag": str(b["tag"]),
            "run_dir": resolve_path(cfg, "runs_dir") / "biomarkers" / str(b["tag"]), "real_spine": bool(b["real_spine"]),
            "max_real_subjects": int(b.get("max_real_subjects", 0))}
