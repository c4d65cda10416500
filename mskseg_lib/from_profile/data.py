"""A profile's data section as the data layer's arguments: folders, cohort and prepare settings.

``prepare(cfg)`` is what notebooks and ``mskseg prepare`` run: generate (or complete) the
synthetic cohort when the profile enables it, collect the raw sources, prepare everything into
``prepared_dir(cfg)``. Without a profile the same is::

    from mskseg_lib.data.cohort import CohortSettings, generate_cohort
    from mskseg_lib.data.prepare import PrepareSettings, prepare_all
    from mskseg_lib.data.sources import collect_sources
    manifest = generate_cohort(Path("data/cohort"), CohortSettings(subjects_per_dataset=4))
    prepare_all(collect_sources(manifest), Path("data/prepared"), PrepareSettings(slice_sizes_px=(256,)))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mskseg_lib.config import resolve_path
from mskseg_lib.data.cards import CardError, DatasetSpec, parse_card, read_card_file
from mskseg_lib.data.catalog import clear_registered_cards, register_cards
from mskseg_lib.data.cohort import CohortSettings, generate_cohort
from mskseg_lib.data.errors import SettingsError
from mskseg_lib.data.prepare import Prepared, PrepareSettings, prepare_all
from mskseg_lib.data.sources import RawSource, collect_sources
from mskseg_lib.settings import project_root

__all__ = ["dataset_cards", "register_profile_cards",
           "data_root", "prepared_dir", "cohort_dir", "cohort_settings", "prepare_settings", "raw_sources",
           "generate", "prepare", "clip_percentiles", "resize_mode"]


def dataset_cards(cfg: Mapping[str, Any]) -> list[DatasetSpec]:
    """The profile's ``datasets:`` entries as cards: card files (relative paths from the project
    root) and inline cards.

    Raises
    ------
    CardError
        Every problem of every entry, one line each naming the file (or the profile entry) and key.
    """
    name = cfg.get("profile", "profile")
    specs: list[DatasetSpec] = []
    bad: list[str] = []
    for i, entry in enumerate(cfg.get("datasets") or []):
        where = f"profile {name}: datasets[{i}]"
        if isinstance(entry, str):
            path = Path(entry).expanduser()
            path = path if path.is_absolute() else project_root() / path
            try:
                specs += read_card_file(path)
            except CardError as err:
                bad += [f"{where}: {ln}" if ln.startswith(f"{path}: no such") else ln for ln in str(err).splitlines()]
        else:
            spec, problems = parse_card(entry, where, source=where)
            bad += problems
            if spec is not None:
                specs.append(spec)
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name in seen:
            bad.append(f"{spec.source}: dataset {spec.name!r} is declared twice (also in {seen[spec.name]})")
        seen.setdefault(spec.name, spec.source)
    if bad:
        raise CardError("\n".join(bad))
    return specs


def register_profile_cards(cfg: Mapping[str, Any]) -> list[DatasetSpec]:
    """Make the profile's dataset cards known to every stage (this process and its children);
    they replace cards registered before (a notebook switching profiles)."""
    specs = dataset_cards(cfg)
    clear_registered_cards()
    return register_cards(specs)


def data_root(cfg: Mapping[str, Any]) -> Path:
    """``paths.data_root`` as an absolute path."""
    return resolve_path(cfg, "data_root")


def prepared_dir(cfg: Mapping[str, Any]) -> Path:
    """Where ``prepare`` writes: ``<data_root>/prepared``."""
    return data_root(cfg) / "prepared"


def cohort_dir(cfg: Mapping[str, Any]) -> Path:
    """Where the synthetic cohort lives: ``<data_root>/cohort``."""
    return data_root(cfg) / "cohort"


def cohort_settings(cfg: Mapping[str, Any]) -> CohortSettings | None:
    """The profile's ``cohort`` section (and seed) as settings; None when the cohort is disabled."""
    c = cfg["cohort"]
    if not c["enabled"]:
        return None
    datasets = c["datasets"] if isinstance(c["datasets"], str) else tuple(c["datasets"])
    return CohortSettings(seed=cfg["seed"], datasets=datasets, subjects_per_dataset=c["subjects_per_dataset"],
                          subjects_override=dict(c["subjects_override"] or {}), matrix_scale=c["matrix_scale"],
                          slice_scale=c["slice_scale"], supersample=c["supersample"])


def prepare_settings(cfg: Mapping[str, Any]) -> PrepareSettings:
    """The profile's ``prepare`` section (and seed) as settings.

    Values are passed as the profile writes them (``[1, 99]`` stays integers) so prepared
    subjects keep their fingerprints.
    """
    p = cfg["prepare"]
    try:
        return PrepareSettings(
            slice_sizes_px=tuple(int(s) for s in p["slice_sizes_px"]), clip_percentiles=tuple(p["clip_percentiles"]),
            resize_mode=str(p["resize"]), min_component_px=int(p["min_component_px"]),
            min_component_voxels=int(p["min_component_voxels"]),
            drop_labels={k: tuple(v or ()) for k, v in (p["drop_labels"] or {}).items()},
            per_dataset={k: dict(v or {}) for k, v in (p["per_dataset"] or {}).items()},
            split_fractions=tuple(p["split_fractions"]), stratify_by=tuple(p["stratify_by"]), seed=cfg["seed"],
            on_bad_input=str(p["on_bad_input"]), yolo_export=bool(p["yolo_export"]),
            yolo_image_size_px=int(p["yolo_image_size_px"]))
    except SettingsError as err:
        raise SettingsError(f"{cfg.get('profile', 'profile')}: prepare.{err}") from None


def clip_percentiles(cfg: Mapping[str, Any], dataset: str) -> tuple[float, float]:
    """The intensity clipping ``prepare`` uses for ``dataset`` under this profile."""
    return prepare_settings(cfg).clip_percentiles_for(dataset)


def resize_mode(cfg: Mapping[str, Any]) -> str:
    """``prepare.resize`` of the profile: ``"stretch"`` (the study's) or ``"pad"``."""
    return prepare_settings(cfg).resize_mode


def raw_sources(cfg: Mapping[str, Any]) -> list[RawSource]:
    """The profile's ``sources`` (real spine folders, site manifests) with absolute paths
    (relative ones are taken from the project root)."""
    out = []
    for src in cfg["sources"]:
        kind = src.get("type")
        where = src.get("root") if kind == "real_spine" else src.get("path")
        if where is None:
            raise SettingsError(f"{cfg.get('profile', 'profile')}: sources entry {dict(src)} needs "
                                f"{'root' if kind == 'real_spine' else 'path'}")
        path = Path(where).expanduser()
        out.append(RawSource(kind, path if path.is_absolute() else project_root() / path))
    return out


def generate(cfg: Mapping[str, Any], progress: bool = True) -> Path | None:
    """Generate (or complete) the profile's synthetic cohort; its manifest, or None when disabled."""
    settings = cohort_settings(cfg)
    return None if settings is None else generate_cohort(cohort_dir(cfg), settings, progress=progress)


def prepare(cfg: Mapping[str, Any], progress: bool = True) -> Prepared:
    """Cohort (if enabled) + the profile's sources -> ``prepare_all`` into ``prepared_dir(cfg)``."""
    notes: list = []
    settings = prepare_settings(cfg)
    sources = collect_sources(generate(cfg, progress=progress), raw_sources(cfg), notes, settings.on_bad_input)
    return prepare_all(sources, prepared_dir(cfg), settings, notes=notes, progress=progress)
