"""Every check of a profile that needs no data work: what ``mskseg validate-profile`` runs.

Loading a profile (:func:`mskseg_lib.config.load_profile`) checks its keys and types. The values
are checked by the code that reads them: the prompt conditions, the finetuning grid, each
stage's settings dataclass, the dataset cards of ``datasets`` (:mod:`mskseg_lib.data.cards`), and
the site manifests of ``sources`` (columns, dataset names,
formats, files that exist, duplicate subjects: :func:`mskseg_lib.data.sources.read_manifest`).
``profile_problems(cfg)`` builds all of them through :mod:`mskseg_lib.from_profile` and returns
every problem, one line each, prefixed by the profile section it belongs to, instead of stopping
at the first. Nothing is generated, prepared, trained or loaded, and no folder is created; a
manifest or real spine folder that is absent on this machine is no problem (``prepare`` leaves
it out with a note), it is only logged.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

from mskseg_lib.autolabel.postprocess import label_kernels
from mskseg_lib.data.catalog import get_dataset, known_datasets, select_datasets
from mskseg_lib.data.cohort import subject_counts
from mskseg_lib.data.sources import read_manifest
from mskseg_lib.errors import UserError
from mskseg_lib.evaluation.prompting import parse_conditions
from mskseg_lib.from_profile import autolabel as fp_autolabel
from mskseg_lib.from_profile import biomarkers as fp_biomarkers
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile import finetune as fp_finetune
from mskseg_lib.from_profile import models as fp_models
from mskseg_lib.from_profile import stats as fp_stats
from mskseg_lib.from_profile import video3d as fp_video3d
from mskseg_lib.from_profile import zero_shot as fp_zero_shot

__all__ = ["profile_problems"]

log = logging.getLogger(__name__)


def _lines(section: str, err: UserError) -> list[str]:
    """``err``'s message as lines prefixed by ``section`` (unless a line already names it).

    A manifest's message is a header then one line per bad row; the header ("N bad row(s),
    nothing prepared:") is dropped so each row's problem is one line.
    """
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    return [ln if ln.startswith(section) else f"{section}: {ln}" for ln in lines]


def _check(problems: list[str], section: str, build: Callable[[], Any]) -> Any:
    """Run ``build``; a ``UserError`` becomes problem lines of ``section`` (None is returned)."""
    try:
        return build()
    except UserError as err:
        problems.extend(_lines(section, err))
        return None


def _known_datasets(problems: list[str], section: str, selection: Any) -> None:
    """Each name of a dataset selection (``"all"`` or a list) must be a known dataset."""
    if isinstance(selection, str):
        selection = [] if selection == "all" else [selection]
    for name in selection:
        _check(problems, section, lambda name=name: get_dataset(str(name)))


def _source_problems(cfg: Mapping[str, Any], problems: list[str]) -> None:
    """``sources[i]``: the entry's path, then (manifests) every row check of ``read_manifest``."""
    for i, src in enumerate(cfg["sources"]):
        section = f"sources[{i}]"
        if not isinstance(src, Mapping):
            problems.append(f"{section}: expected {{type: manifest, path: ...}} or {{type: real_spine, root: ...}}, "
                            f"got {src!r}")
            continue
        raw = _check(problems, section, lambda src=src: fp_data.raw_sources({**cfg, "sources": [src]}))
        if not raw:
            continue
        source = raw[0]
        path = Path(source.path)
        if not path.exists():
            log.info("%s: %s is not on this machine; prepare would leave it out with a note", section, path)
            continue
        if source.kind == "manifest":
            _check(problems, section, lambda path=path: read_manifest(path, on_bad_input="raise"))


def _condition_names(cfg: Mapping[str, Any]) -> set[str]:
    return {str(c.get("name")) for c in cfg["zero_shot"]["conditions"] if isinstance(c, Mapping)}


def profile_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Every problem of a loaded profile that shows without data work, one line each.

    Parameters
    ----------
    cfg : mapping
        A profile as :func:`mskseg_lib.config.load_profile` returns it (keys and types checked).

    Returns
    -------
    list of str
        Empty when every stage's settings build; else one line per problem, prefixed by its
        section: ``datasets`` (each problem of the profile's dataset cards: the file and key),
        ``sources[i]`` (each bad manifest row), ``cohort``, ``prepare``, ``models``,
        ``zero_shot.conditions``, ``zero_shot.datasets``, ``finetune.training``,
        ``finetune.evaluation``, ``finetune.experiments`` (the grid over every known dataset),
        ``mixed_effects``, ``biomarkers``, ``autolabel``, ``video3d``.
    """
    problems: list[str] = []
    # the profile's own dataset cards first: every later name check must know them
    _check(problems, "datasets", lambda: fp_data.register_profile_cards(cfg))
    _source_problems(cfg, problems)
    if cfg["cohort"]["enabled"]:
        settings = _check(problems, "cohort", lambda: fp_data.cohort_settings(cfg))
        _check(problems, "cohort.datasets", lambda: select_datasets(cfg["cohort"]["datasets"]))
        if settings is not None:
            _check(problems, "cohort", lambda: subject_counts(settings))
    _check(problems, "prepare", lambda: fp_data.prepare_settings(cfg))
    _check(problems, "models", lambda: fp_models.model_settings(cfg))

    z = cfg["zero_shot"]
    _check(problems, "zero_shot.conditions", lambda: parse_conditions(list(z["conditions"]), z["mask_grid_px"]))
    _known_datasets(problems, "zero_shot.datasets", z["datasets"])
    _check(problems, "zero_shot", lambda: fp_zero_shot.slice_selection(cfg))

    f = cfg["finetune"]
    _check(problems, "finetune.training", lambda: fp_finetune.train_settings(cfg))
    _check(problems, "finetune.evaluation", lambda: fp_finetune.evaluation_settings(cfg))
    _check(problems, "finetune.evaluation.conditions",
           lambda: parse_conditions(list(f["evaluation"]["conditions"]), z["mask_grid_px"],
                                    source="finetune.evaluation.conditions"))
    known = [s.name for s in known_datasets()]  # which are prepared is known only after prepare
    _check(problems, "finetune.experiments", lambda: fp_finetune.grid_experiments(cfg, prepared=known))

    _check(problems, "mixed_effects", lambda: fp_stats.mixed_effects_settings(cfg))
    condition = str(cfg["mixed_effects"]["condition"])
    if condition not in _condition_names(cfg):
        problems.append(f"mixed_effects.condition: {condition!r} is not a zero_shot.conditions name "
                        f"(have {sorted(_condition_names(cfg))})")

    _known_datasets(problems, "biomarkers.datasets", cfg["biomarkers"]["datasets"])
    _check(problems, "biomarkers", lambda: fp_biomarkers.biomarker_selection(cfg))
    _check(problems, "biomarkers", lambda: fp_biomarkers.agreement_settings(cfg))

    _known_datasets(problems, "autolabel.datasets", cfg["autolabel"]["datasets"])
    _check(problems, "autolabel", lambda: fp_autolabel.detector_settings(cfg))
    post = _check(problems, "autolabel.postprocess", lambda: fp_autolabel.postprocess_settings(cfg))
    if post is not None and cfg["autolabel"]["postprocess"]["enabled"]:
        for name in cfg["autolabel"]["datasets"]:  # a card's own tissue class needs its kernel
            _check(problems, "autolabel.postprocess",
                   lambda name=name: label_kernels(get_dataset(str(name)), post))
    _check(problems, "autolabel", lambda: fp_autolabel.study_settings(cfg))

    _known_datasets(problems, "video3d.datasets", cfg["video3d"]["datasets"])
    _check(problems, "video3d", lambda: fp_video3d.video3d_settings(cfg))
    return list(dict.fromkeys(problems))  # a shared setting (prepare) can fail in several stages
