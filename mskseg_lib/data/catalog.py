"""Which datasets exist: the shipped dataset cards, any a site declares, and their naming and order.

Every dataset is a card (:mod:`mskseg_lib.data.cards`). The study's twelve MSK MRI datasets
(``cards/study.yaml``; names as the study's, the trailing number its subject count, kept so that
regenerated tables line up with the published ones), the real spine fixture
(``cards/real_spine.yaml``) and an example OAI-ZIB card (``cards/oai_zib.yaml``) ship with the
package; those files are the one definition of them. A site's own cards are registered with
:func:`register_cards` (a profile's ``datasets:`` section does this through
:mod:`mskseg_lib.from_profile`); from then on :func:`get_dataset` and every stage know them, in
this process and in the processes it starts (notebook kernels, torchrun ranks), which read the
registered cards from the ``MSKSEG_DATASET_CARDS`` environment variable.

``DATASETS`` holds the study's twelve (what ``"all"`` selects for the synthetic cohort and the
study's tables). Naming and order of datasets, shared by every table and figure: ``anatomy_of``
(a dataset's anatomy, also for names no card declares), ``dataset_order`` / ``datasets_in_order``
(anatomy groups in ``ANATOMY_ORDER``, then first appearance) and ``short_dataset_name`` (axis
labels).
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from mskseg_lib.data.cards import (
    PLANE_AXIS,
    TISSUE_CLASSES,
    CardError,
    DatasetSpec,
    Label,
    Protocol,
    parse_cards,
    read_card_file,
)
from mskseg_lib.errors import UserError

__all__ = ["TISSUE_CLASSES", "ANATOMY_ORDER", "PLANE_AXIS", "Label", "Protocol", "DatasetSpec", "CardError",
           "DATASETS", "REAL_SPINE", "EXAMPLE_CARDS", "CARDS_ENV", "UnknownDatasetError", "get_dataset",
           "register_cards", "registered_cards", "clear_registered_cards", "known_datasets", "datasets_table",
           "select_datasets", "labels_table", "anatomy_of", "dataset_order", "datasets_in_order",
           "short_dataset_name", "labels_for_datasets"]

log = logging.getLogger(__name__)
ANATOMY_ORDER: tuple[str, ...] = ("knee", "hip", "spine", "thigh", "shoulder")  # figures and tables group by it
CARDS_DIR = Path(__file__).with_name("cards")
CARDS_ENV = "MSKSEG_DATASET_CARDS"  # JSON list of {"source", "card"}: cards registered by a parent process

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in read_card_file(CARDS_DIR / "study.yaml")}
REAL_SPINE: DatasetSpec = read_card_file(CARDS_DIR / "real_spine.yaml")[0]
EXAMPLE_CARDS: dict[str, DatasetSpec] = {s.name: s for s in read_card_file(CARDS_DIR / "oai_zib.yaml")}
_SHIPPED: dict[str, DatasetSpec] = {**DATASETS, REAL_SPINE.name: REAL_SPINE, **EXAMPLE_CARDS}
_REGISTERED: dict[str, DatasetSpec] = {}
_ENV_READ: list[str] = []  # the CARDS_ENV value already registered from


class UnknownDatasetError(UserError, KeyError):
    """A dataset name no card declares (a ``KeyError`` that reads as one plain line)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown dataset"


def _export_env() -> None:
    # the card as written plus the tissue classes its file declared for it (file-level tissue_classes)
    payload = [{"source": s.source, "card": s.card, "tissue_classes": list(s.tissue_classes)}
               for s in _REGISTERED.values()]
    if payload:
        os.environ[CARDS_ENV] = json.dumps(payload)
    else:
        os.environ.pop(CARDS_ENV, None)
    _ENV_READ[:] = [os.environ.get(CARDS_ENV, "")]


def _read_env() -> None:
    """Register the cards a parent process registered (once per value of ``CARDS_ENV``)."""
    value = os.environ.get(CARDS_ENV, "")
    if not value or (_ENV_READ and _ENV_READ[0] == value):
        return
    _ENV_READ[:] = [value]
    try:
        entries = json.loads(value)
    except json.JSONDecodeError:
        raise CardError(f"environment variable {CARDS_ENV}: not the JSON list of cards this package writes") from None
    for entry in entries:
        document = {"tissue_classes": list(entry.get("tissue_classes") or []), "datasets": [entry["card"]]}
        for spec in parse_cards(document, str(entry.get("source") or CARDS_ENV)):
            _REGISTERED.setdefault(spec.name, spec)


def register_cards(specs: Iterable[DatasetSpec]) -> list[DatasetSpec]:
    """Make site datasets known to :func:`get_dataset` here and in child processes.

    Parameters
    ----------
    specs : iterable of DatasetSpec
        Parsed cards (:func:`mskseg_lib.data.cards.read_card_file` / ``parse_cards``).

    Returns
    -------
    list of DatasetSpec
        The cards registered.

    Raises
    ------
    CardError
        A card reuses the name of a shipped card (a study dataset, the real spine, an example), or
        of another registered card from a different source with different content.
    """
    specs = list(specs)
    _read_env()
    bad = []
    for spec in specs:
        shipped = _SHIPPED.get(spec.name)
        if shipped is not None:
            bad.append(f"{spec.source}: dataset {spec.name!r} is already a shipped card ({shipped.source}); "
                       "give your card another name")
            continue
        have = _REGISTERED.get(spec.name)
        if have is not None and have.card != spec.card:
            bad.append(f"{spec.source}: dataset {spec.name!r} is also declared, differently, in {have.source}")
    if bad:
        raise CardError("\n".join(bad))
    for spec in specs:
        _REGISTERED[spec.name] = spec
    _export_env()
    return specs


def registered_cards() -> list[DatasetSpec]:
    """The site cards registered so far (this process and its parent's)."""
    _read_env()
    return list(_REGISTERED.values())


def clear_registered_cards() -> None:
    """Forget every registered site card (tests; a notebook switching profiles)."""
    _REGISTERED.clear()
    _export_env()


def known_datasets() -> list[DatasetSpec]:
    """Every dataset a name can refer to: the study's, the real spine, the examples, the registered."""
    _read_env()
    return [*_SHIPPED.values(), *_REGISTERED.values()]


def get_dataset(name: str) -> DatasetSpec:
    """The card of a dataset by name, with a clear error pointing at ``mskseg datasets``."""
    spec = _SHIPPED.get(name)
    if spec is not None:
        return spec
    _read_env()
    spec = _REGISTERED.get(name)
    if spec is not None:
        return spec
    names = [s.name for s in known_datasets()]
    shown = ", ".join(names[:3])
    raise UnknownDatasetError(f"unknown dataset {name!r}: no dataset card declares it (known: {shown}, ... "
                              f"{len(names)} in all; `mskseg datasets` lists them; declare your own under the "
                              "profile's datasets:)")


def datasets_table(specs: Sequence[DatasetSpec] | None = None) -> pd.DataFrame:
    """One row per dataset: what ``mskseg datasets`` prints.

    Parameters
    ----------
    specs : sequence of DatasetSpec, optional
        Default: every known card (the study's datasets, the real spine fixture, the examples,
        the registered site cards).

    Returns
    -------
    DataFrame
        Columns ``dataset, anatomy, plane, acquisition, sequence, protocol_type, task, n_labels,
        tissue_classes`` (comma-separated, in label order), ``labels`` (``"1 femur; 2 tibia; ..."``),
        ``biomarkers`` (beyond volume) and ``card`` (the file that declares it).
    """
    specs = known_datasets() if specs is None else list(specs)
    rows = []
    for s in specs:
        tissues = list(dict.fromkeys(lab.tissue_class for lab in s.labels))
        rows.append({"dataset": s.name, "anatomy": s.anatomy, "plane": s.plane, "acquisition": s.acquisition,
                     "sequence": s.sequence_name, "protocol_type": s.protocol_type, "task": s.task,
                     "n_labels": len(s.labels), "tissue_classes": ", ".join(tissues),
                     "labels": "; ".join(f"{lab.value} {lab.name}" for lab in s.labels),
                     "biomarkers": ", ".join(k for k, v in s.biomarkers.items() if v),
                     "card": _short_source(s.source)})
    return pd.DataFrame(rows)


def _short_source(source: str) -> str:
    """A shipped card's file relative to the package, any other as given."""
    try:
        return str(Path(source).resolve().relative_to(CARDS_DIR.parent.parent.parent))
    except ValueError:
        return source


def select_datasets(selection: str | list[str]) -> list[DatasetSpec]:
    """``"all"`` (the study's twelve) or a list of names (any card) -> specs."""
    if selection == "all":
        return list(DATASETS.values())
    if isinstance(selection, str):
        selection = [selection]
    return [get_dataset(n) for n in selection]


def labels_table(specs: list[DatasetSpec] | None = None) -> pd.DataFrame:
    """One row per (dataset, label): anatomy, label value and name, tissue class (table S0 input)."""
    specs = list(DATASETS.values()) if specs is None else specs
    rows = [
        {"dataset": s.name, "anatomy": s.anatomy, "label_value": lab.value,
         "label_name": lab.name, "tissue_class": lab.tissue_class, "multi_instance": lab.multi_instance}
        for s in specs for lab in s.labels
    ]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- naming and order
_DROP_TOKENS = {"2D", "3D", "Research", "Clinical", "Anatomical", "Compositional"}
_ABBREVIATIONS = {"Undersampled": "US", "MyoSegmenTUM": "MyoSeg"}


def anatomy_of(dataset: str) -> str:
    """Anatomy of a dataset from the catalog; an unknown name falls back to its first word
    (``"Knee_x"`` -> ``"knee"``), so results of a manifest source still group sensibly."""
    try:
        return get_dataset(str(dataset)).anatomy
    except KeyError:
        return str(dataset).split("_")[0].lower()


def dataset_order(table: pd.DataFrame) -> list[str]:
    """Datasets of a table with ``dataset`` and ``anatomy`` columns, grouped by anatomy
    (``ANATOMY_ORDER`` first, other anatomies after them in order of appearance), in order of
    first appearance within an anatomy."""
    first = table.drop_duplicates("dataset")[["dataset", "anatomy"]]
    seen = list(dict.fromkeys(a for a in table["anatomy"].tolist() if a is not None and a == a))
    anatomies = [a for a in ANATOMY_ORDER if a in seen] + [a for a in seen if a not in ANATOMY_ORDER]
    rank = {a: i for i, a in enumerate(anatomies)}
    first = first.assign(_r=first["anatomy"].map(rank), _i=range(len(first)))
    return first.sort_values(["_r", "_i"])["dataset"].tolist()


def datasets_in_order(datasets: Iterable[str]) -> list[str]:
    """Distinct dataset names in figure order (anatomy groups, then first appearance), the
    anatomy taken from the catalog (:func:`anatomy_of`); missing names (None, NaN) are left out."""
    names = list(dict.fromkeys(str(d) for d in datasets if d is not None and d == d))
    if not names:
        return []
    return dataset_order(pd.DataFrame({"dataset": names, "anatomy": [anatomy_of(d) for d in names]}))


def short_dataset_name(name: str) -> str:
    """Short label for a dataset name, for axes and titles.

    Drops the acquisition dimension, protocol type and task words and an ``-echoN`` suffix:
    ``"Knee_3D_DESS_Research_Anatomical_86"`` -> ``"Knee DESS 86"``,
    ``"Knee_2D_MAPSS-echo1_Research_Compositional_22"`` -> ``"Knee MAPSS 22"``,
    ``"Knee_3D_CUBE_Undersampled_Research_Anatomical_50"`` -> ``"Knee CUBE US 50"``.
    The trailing subject count is kept, so the twelve study names stay distinct.
    """
    tokens = [t for t in str(name).split("_") if t and t not in _DROP_TOKENS]
    tokens = [_ABBREVIATIONS.get(re.sub(r"-echo\d+$", "", t), re.sub(r"-echo\d+$", "", t))
              for t in tokens]
    return " ".join(tokens) if tokens else str(name)


def labels_for_datasets(datasets: Iterable[str]) -> pd.DataFrame:
    """``catalog.labels_table`` of the given datasets (the real spine included); names that the
    catalog does not know (e.g. a manifest source) are skipped."""
    specs = []
    for name in dict.fromkeys(datasets):
        try:
            specs.append(get_dataset(name))
        except KeyError:
            continue
    table = labels_table(specs)
    if table.empty:
        table = pd.DataFrame(columns=["dataset", "anatomy", "label_value", "label_name",
                                      "tissue_class"])
    return table
